"""Area under the ROC or precision-recall curve, binned at thresholds: Keras' ``AUC``, and
``MeanAveragePrecision`` (the PR-AUC of each label, averaged).

The state is TP, FP, TN, FN at ``T`` thresholds (by default ``-eps, 1/(T-1), ...,
(T-2)/(T-1), 1 + eps``), summed over batches. From them, at each threshold,
``recall = TP/(TP+FN)``, ``fpr = FP/(FP+TN)``, ``precision = TP/(TP+FP)``, and the area is a
Riemann sum over the ``T - 1`` intervals between consecutive thresholds ``i, i+1``:

    area = sum_i (x_i - x_{i+1}) * h_i

with ``(x, y) = (fpr, recall)`` for ROC and ``(recall, precision)`` for PR, and ``h_i`` the
mean of ``y_i, y_{i+1}`` (``'interpolation'``), their minimum (``'minoring'``) or maximum
(``'majoring'``). For PR with ``'interpolation'`` the area of each interval is integrated
exactly under a linear interpolation of TP and FP (not of precision) between the two
thresholds, as in Davis & Goadrich, "The relationship between precision-recall and ROC
curves" (ICML 2006), which Keras follows:

    area_i = slope_i * (dTP_i + b_i * log(P_i / P_{i+1})) / (TP_{i+1} + FN_{i+1})

with ``P = TP + FP``, ``slope_i = dTP_i / dP_i`` and ``b_i = TP_{i+1} - slope_i * P_{i+1}``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp

from dlkit.metrics import thresholds as thresholds_lib
from dlkit.metrics.base import Metric
from dlkit.metrics.thresholds import divide_no_nan
from dlkit.metrics.weighting import row_weights

_CURVES = {"roc": "ROC", "pr": "PR", "prgain": "PRGAIN"}
_SUMMATIONS = ("interpolation", "minoring", "majoring")


def _interpolated_pr_area(tp, fp, fn):
    """The per-interval PR areas of Davis & Goadrich's interpolation (Keras' ``interpolate_pr_auc``)."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = divide_no_nan(dtp, jnp.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    ratio = jnp.where((p[:-1] > 0) & (p[1:] > 0), divide_no_nan(p[:-1], jnp.maximum(p[1:], 0)), 1.0)
    return divide_no_nan(slope * (dtp + intercept * jnp.log(ratio)), jnp.maximum(tp[1:] + fn[1:], 0))


def _curve(curve: str, tp, fp, tn, fn):
    """The ``(x, y)`` points of ``curve`` at each threshold."""
    recall = divide_no_nan(tp, tp + fn)
    if curve == "ROC":
        return divide_no_nan(fp, fp + tn), recall
    if curve == "PR":
        return recall, divide_no_nan(tp, tp + fp)
    # PRGAIN (Flach & Kull 2015), with Keras' fixes for TP = 0 and recall below the base rate.
    scale = divide_no_nan(tp + fn, tn + fp)
    recall_gain = jnp.where(tp == 0, 0.0, 1.0 - scale * divide_no_nan(fn, tp))
    precision_gain = jnp.where(tp == 0, 1.0, 1.0 - scale * divide_no_nan(fp, tp))
    return jnp.maximum(recall_gain, 0.0), precision_gain


@dataclasses.dataclass(frozen=True)
class AUC(Metric):
    """Keras' ``AUC``: the area under the ROC or PR curve, from confusion counts at thresholds.

    Predictions are probabilities (or logits with ``from_logits=True``, passed through a
    sigmoid). Several columns are flattened into one binary problem unless
    ``multi_label=True``, which computes one area per column and averages them (weighted
    by ``label_weights`` if given). See the module docstring for the summation rules.

    Args:
      num_thresholds: the number of thresholds (> 1) when ``thresholds`` is ``None``.
      curve: ``'ROC'``, ``'PR'`` or ``'PRGAIN'``.
      summation_method: ``'interpolation'``, ``'minoring'`` or ``'majoring'``.
      name: the log name (default ``"auc"``).
      dtype: the dtype of the counts.
      thresholds: ``None`` or a sequence of thresholds in ``[0, 1]``; ``-eps`` and ``1 + eps``
        are added as endpoints.
      multi_label: one curve per column of a ``(batch, labels)`` output, averaged.
      num_labels: the number of labels with ``multi_label`` (``None``: taken from the first
        batch; the initial state then has one label column, which broadcasts).
      label_weights: ``None`` or one non-negative weight per label: the weights of the
        average with ``multi_label``, else of each column's counts.
      from_logits: whether predictions are logits.

    Returns (``result``):
      The area, a scalar.
    """

    num_thresholds: int = 200
    curve: str = "ROC"
    summation_method: str = "interpolation"
    name: Optional[str] = None
    dtype: Any = None
    thresholds: Any = None
    multi_label: bool = False
    num_labels: Optional[int] = None
    label_weights: Any = None
    from_logits: bool = False

    def __post_init__(self):
        super().__post_init__()
        curve = _CURVES.get(str(self.curve).lower())
        if curve is None:
            raise ValueError(f'Invalid AUC curve value: "{self.curve}". Expected values are ["PR", "ROC", "PRGAIN"]')
        summation = str(self.summation_method).lower()
        if summation not in _SUMMATIONS:
            raise ValueError(f'Invalid AUC summation method value: "{self.summation_method}". '
                             f'Expected values are {list(_SUMMATIONS)}')
        if self.thresholds is None and self.num_thresholds <= 1:
            raise ValueError(f"Argument `num_thresholds` must be an integer > 1. "
                             f"Received: num_thresholds={self.num_thresholds}")
        if self.num_labels and not self.multi_label:
            raise ValueError("`num_labels` is needed only when `multi_label` is True.")
        object.__setattr__(self, "curve", curve)
        object.__setattr__(self, "summation_method", summation)
        object.__setattr__(self, "thresholds", thresholds_lib.as_tuple(self.thresholds))
        object.__setattr__(self, "label_weights", thresholds_lib.as_tuple(self.label_weights))
        if self.thresholds is not None:
            thresholds_lib.parse_thresholds(self.thresholds)  # validate

    def threshold_values(self) -> tuple:
        """All thresholds counted at (Keras' ``thresholds``).

        Returns:
          The sorted thresholds, endpoints ``-eps`` and ``1 + eps`` included.
        """
        if self.thresholds is None:
            return thresholds_lib.evenly_spaced_with_epsilon(self.num_thresholds)
        inner = sorted(self.thresholds)
        return tuple([0.0 - thresholds_lib.EPSILON] + inner + [1.0 + thresholds_lib.EPSILON])

    def _evenly(self) -> bool:
        if self.thresholds is None:
            return True
        return thresholds_lib.evenly_spaced([0.0] + sorted(self.thresholds) + [1.0])

    def init(self):
        shape = (len(self.threshold_values()),)
        if self.multi_label:
            shape += (self.num_labels or 1,)
        return {name: jnp.zeros(shape, self.dtype or jnp.float32) for name in thresholds_lib.COUNTS}

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None):
        y_pred = jnp.asarray(y_pred, jnp.float32)
        if self.from_logits:
            y_pred = jax.nn.sigmoid(y_pred)
        found = thresholds_lib.confusion_at_thresholds(
            y_true, y_pred, row_weights(y_pred.shape[0], sample_weight, mask), self.threshold_values(),
            self._evenly(), multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights, name=type(self).__name__)
        return {name: state[name] + found[name].astype(state[name].dtype) for name in thresholds_lib.COUNTS}

    def compute(self, state):
        tp, fp, tn, fn = (state[name] for name in thresholds_lib.COUNTS)
        if self.curve == "PR" and self.summation_method == "interpolation":
            areas = _interpolated_pr_area(tp, fp, fn)
        else:
            x, y = _curve(self.curve, tp, fp, tn, fn)
            if self.summation_method == "interpolation":
                heights = (y[:-1] + y[1:]) / 2.0
            elif self.summation_method == "minoring":
                heights = jnp.minimum(y[:-1], y[1:])
            else:
                heights = jnp.maximum(y[:-1], y[1:])
            areas = (x[:-1] - x[1:]) * heights
        if not self.multi_label:
            return jnp.sum(areas)
        per_label = jnp.sum(areas, axis=0)
        if self.label_weights is None:
            return jnp.mean(per_label)
        weights = jnp.asarray(self.label_weights, jnp.float32)
        return divide_no_nan(jnp.sum(per_label * weights), jnp.sum(weights))


@dataclasses.dataclass(frozen=True)
class MeanAveragePrecision(Metric):
    """Mean average precision of a multi-label output: the binned, interpolated area under
    each label's precision-recall curve, averaged over the labels (macro average).

    Exactly Keras' ``AUC(curve='PR', multi_label=True)`` (Davis & Goadrich 2006
    interpolation at ``num_thresholds`` thresholds), under the name users look for; it
    estimates scikit-learn's ``average_precision_score(y, p, average='macro')``, which is
    the unbinned step-function sum ``sum_n (R_n - R_{n-1}) P_n``, to about 1e-2.

    Args:
      num_thresholds: the number of thresholds (200).
      name: the log name (default ``"mean_average_precision"``).
      dtype: the dtype of the counts.
      num_labels: ``None`` (from the first batch) or the number of labels.
      from_logits: whether predictions are logits.

    Returns (``result``):
      The mean over labels of each label's PR-AUC, a scalar.
    """

    num_thresholds: int = 200
    name: Optional[str] = None
    dtype: Any = None
    num_labels: Optional[int] = None
    from_logits: bool = False

    @property
    def auc(self) -> AUC:
        """The Keras ``AUC`` that this metric is."""
        return AUC(self.num_thresholds, "PR", "interpolation", self.name, self.dtype, multi_label=True,
                   num_labels=self.num_labels, from_logits=self.from_logits)

    def init(self):
        return self.auc.init()

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None):
        return self.auc.update(state, y_true, y_pred, sample_weight, mask)

    def compute(self, state):
        return self.auc.compute(state)
