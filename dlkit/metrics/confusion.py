"""Confusion counts and the ratios of them: Keras' ``TruePositives`` & co., ``Precision``, ``Recall``.

At each threshold ``t`` (a prediction ``p`` is positive when ``p > t``):

    precision(t) = TP(t) / (TP(t) + FP(t))        recall(t) = TP(t) / (TP(t) + FN(t))

(0 where the denominator is 0, as Keras' ``divide_no_nan``). The state is the counts
at every threshold, summed over batches, so the epoch's precision is computed from
the epoch's counts, not averaged over batches.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax.numpy as jnp

from dlkit.metrics import thresholds as thresholds_lib
from dlkit.metrics.base import Metric
from dlkit.metrics.thresholds import divide_no_nan
from dlkit.metrics.weighting import row_weights


class ThresholdMetric(Metric):
    """Base of the metrics whose state is confusion counts at a tuple of thresholds (Keras'
    ``update_confusion_matrix_variables`` users).

    Subclasses set ``counts`` (which of ``"tp", "fp", "tn", "fn"`` they keep) and, as
    fields, ``thresholds`` and optionally ``top_k`` and ``class_id``.

    Args:
      thresholds: (subclass field) ``None``, a float or a sequence of floats in ``[0, 1]``.

    Returns (``result``):
      What the subclass computes from the counts.
    """

    counts: tuple = thresholds_lib.COUNTS
    thresholds: Any = None
    top_k: Optional[int] = None
    class_id: Optional[int] = None
    dtype: Any = None

    def __post_init__(self):
        super().__post_init__()
        if "thresholds" in {field.name for field in dataclasses.fields(self)}:
            object.__setattr__(self, "thresholds", thresholds_lib.as_tuple(self.thresholds))
        self.threshold_values()  # validate

    def evenly(self) -> Optional[bool]:
        """Whether the thresholds are evenly spaced (Keras' fast bucketing); ``None``: check."""
        return None

    def threshold_values(self) -> tuple:
        """The thresholds counted at.

        Returns:
          The given thresholds as a tuple, or ``(0.5,)`` (``(-1e10,)`` with ``top_k``, so that
          exactly each row's ``top_k`` scores are positive).

        Raises:
          ValueError: for a threshold outside ``[0, 1]``.
        """
        default = 0.5 if self.top_k is None else thresholds_lib.NEG_INF
        return thresholds_lib.parse_thresholds(self.thresholds, default)

    def init(self):
        shape = (len(self.threshold_values()),)
        return {name: jnp.zeros(shape, self.dtype or jnp.float32) for name in self.counts}

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None):
        y_pred = jnp.asarray(y_pred)
        found = thresholds_lib.confusion_at_thresholds(
            y_true, y_pred, row_weights(y_pred.shape[0], sample_weight, mask), self.threshold_values(),
            self.evenly(), top_k=self.top_k, class_id=self.class_id, name=type(self).__name__)
        return {name: state[name] + found[name].astype(state[name].dtype) for name in self.counts}

    def _per_threshold(self, value):
        """A scalar for one threshold, else one value per threshold (as Keras)."""
        return value[0] if value.shape[0] == 1 else value


class _Count(ThresholdMetric):
    def compute(self, state):
        return self._per_threshold(state[self.counts[0]])


@dataclasses.dataclass(frozen=True)
class TruePositives(_Count):
    """Keras' ``TruePositives``: the weighted count of positives predicted positive, ``TP(t)``.

    Args:
      thresholds: ``None`` (0.5), a float or a sequence of floats in ``[0, 1]``; ``p > t`` is positive.
      name: the log name (default ``"true_positives"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      A scalar for one threshold, else one count per threshold.
    """

    thresholds: Any = None
    name: Optional[str] = None
    dtype: Any = None
    counts = ("tp",)


@dataclasses.dataclass(frozen=True)
class FalsePositives(_Count):
    """Keras' ``FalsePositives``: the weighted count of negatives predicted positive, ``FP(t)``.

    Args:
      thresholds: ``None`` (0.5), a float or a sequence of floats in ``[0, 1]``.
      name: the log name (default ``"false_positives"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      A scalar for one threshold, else one count per threshold.
    """

    thresholds: Any = None
    name: Optional[str] = None
    dtype: Any = None
    counts = ("fp",)


@dataclasses.dataclass(frozen=True)
class TrueNegatives(_Count):
    """Keras' ``TrueNegatives``: the weighted count of negatives predicted negative, ``TN(t)``.

    Args:
      thresholds: ``None`` (0.5), a float or a sequence of floats in ``[0, 1]``.
      name: the log name (default ``"true_negatives"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      A scalar for one threshold, else one count per threshold.
    """

    thresholds: Any = None
    name: Optional[str] = None
    dtype: Any = None
    counts = ("tn",)


@dataclasses.dataclass(frozen=True)
class FalseNegatives(_Count):
    """Keras' ``FalseNegatives``: the weighted count of positives predicted negative, ``FN(t)``.

    Args:
      thresholds: ``None`` (0.5), a float or a sequence of floats in ``[0, 1]``.
      name: the log name (default ``"false_negatives"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      A scalar for one threshold, else one count per threshold.
    """

    thresholds: Any = None
    name: Optional[str] = None
    dtype: Any = None
    counts = ("fn",)


@dataclasses.dataclass(frozen=True)
class Precision(ThresholdMetric):
    """Keras' ``Precision``: ``TP / (TP + FP)`` over the epoch, at each threshold.

    With ``top_k`` only each row's ``top_k`` largest scores can be positive (and the
    default threshold becomes -1e10, so exactly those are); with ``class_id`` only that
    column of the last axis is counted. Other outputs (several columns, time steps) are
    flattened: every element is one binary prediction.

    Args:
      thresholds: ``None`` (0.5), a float or a sequence of floats in ``[0, 1]``.
      top_k: ``None`` or the number of top scores per row that are candidates.
      class_id: ``None`` or the column to measure.
      name: the log name (default ``"precision"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      A scalar for one threshold, else one precision per threshold.
    """

    thresholds: Any = None
    top_k: Optional[int] = None
    class_id: Optional[int] = None
    name: Optional[str] = None
    dtype: Any = None
    counts = ("tp", "fp")

    def compute(self, state):
        return self._per_threshold(divide_no_nan(state["tp"], state["tp"] + state["fp"]))


@dataclasses.dataclass(frozen=True)
class Recall(ThresholdMetric):
    """Keras' ``Recall``: ``TP / (TP + FN)`` over the epoch, at each threshold.

    Args:
      thresholds: ``None`` (0.5), a float or a sequence of floats in ``[0, 1]``.
      top_k: ``None`` or the number of top scores per row that are candidates.
      class_id: ``None`` or the column to measure.
      name: the log name (default ``"recall"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      A scalar for one threshold, else one recall per threshold.
    """

    thresholds: Any = None
    top_k: Optional[int] = None
    class_id: Optional[int] = None
    name: Optional[str] = None
    dtype: Any = None
    counts = ("tp", "fn")

    def compute(self, state):
        return self._per_threshold(divide_no_nan(state["tp"], state["tp"] + state["fn"]))
