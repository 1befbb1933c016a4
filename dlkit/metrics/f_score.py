"""F-scores with Keras' names: ``FBetaScore`` and ``F1Score``, per class or averaged.

From the epoch's per-class counts (``eps = 1e-7``, as Keras):

    precision = TP / (TP + FP + eps)        recall = TP / (TP + FN + eps)
    F_beta = (1 + beta^2) * precision * recall / (beta^2 * precision + recall + eps)

``average=None`` gives one score per class; ``'macro'`` their mean; ``'weighted'`` their
mean weighted by each class's (weighted) number of true samples; ``'micro'`` the score of
the counts summed over classes. Predictions are the columns at each row's maximum
(``threshold=None``, single-label), or the columns above ``threshold`` (multi-label,
binary with a ``(batch, 1)`` output).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax.numpy as jnp

from dlkit.metrics.base import Metric
from dlkit.metrics.weighting import row_weights, weighted

EPSILON = 1e-7
_AVERAGES = (None, "micro", "macro", "weighted")
_SUMS = ("true_positives", "false_positives", "false_negatives", "intermediate_weights")


class _FScore(Metric):
    """The shared state and formula of ``FBetaScore`` and ``F1Score``."""

    beta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if self.average not in _AVERAGES:
            raise ValueError(f"Invalid `average` argument value. Expected one of: {{None, 'micro', 'macro', "
                             f"'weighted'}}. Received: average={self.average}")
        if not self.beta > 0.0:
            raise ValueError(f"Invalid `beta` argument value. It should be > 0. Received: beta={self.beta}")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"Invalid `threshold` argument value. It should verify 0 < threshold <= 1. "
                             f"Received: threshold={self.threshold}")

    def init(self):
        """Zero counts: a scalar each for ``'micro'``, else one per class (one broadcasting
        column before the first batch shows the number of classes).

        Returns:
          The initial state.
        """
        shape = () if self.average == "micro" else (1,)
        return {name: jnp.zeros(shape, self.dtype or jnp.float32) for name in _SUMS}

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None):
        y_true, y_pred = jnp.asarray(y_true, jnp.float32), jnp.asarray(y_pred, jnp.float32)
        if y_true.ndim == 1 and y_pred.shape[1:] == (1,):  # (batch,) targets of a (batch, 1) output, as losses take
            y_true = y_true[:, None]
        if y_pred.ndim != 2 or y_true.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects 2D inputs with shape (batch_size, output_dim). "
                             f"Received input shapes: y_pred.shape={y_pred.shape} and y_true.shape={y_true.shape}.")
        if self.threshold is None:
            # each row's top column(s), but never a row of zeros
            predicted = (y_pred >= jnp.max(y_pred, axis=-1, keepdims=True)) & (jnp.abs(y_pred) > 1e-9)
        else:
            predicted = y_pred > self.threshold
        predicted = predicted.astype(jnp.float32)
        weight = row_weights(y_pred.shape[0], sample_weight, mask)
        axis = None if self.average == "micro" else 0
        found = {"true_positives": predicted * y_true, "false_positives": predicted * (1.0 - y_true),
                 "false_negatives": (1.0 - predicted) * y_true, "intermediate_weights": y_true}
        return {name: state[name] + jnp.sum(weighted(found[name], weight), axis=axis).astype(state[name].dtype)
                for name in _SUMS}

    def compute(self, state):
        tp, fp, fn = state["true_positives"], state["false_positives"], state["false_negatives"]
        precision = tp / (tp + fp + EPSILON)
        recall = tp / (tp + fn + EPSILON)
        beta2 = self.beta ** 2
        score = (1.0 + beta2) * precision * recall / (beta2 * precision + recall + EPSILON)
        if self.average == "weighted":
            weights = state["intermediate_weights"] / (jnp.sum(state["intermediate_weights"]) + EPSILON)
            return jnp.sum(score * weights)
        if self.average is not None:
            return jnp.mean(score)
        return score


@dataclasses.dataclass(frozen=True)
class FBetaScore(_FScore):
    """Keras' ``FBetaScore``: ``(1 + b^2) P R / (b^2 P + R)`` from the epoch's counts (module docstring).

    Args:
      average: ``None`` (one score per class), ``'micro'``, ``'macro'`` or ``'weighted'``.
      beta: the weight of recall (> 0); ``beta = 1`` is F1.
      threshold: ``None`` (each row's top class is predicted) or a threshold in ``(0, 1]``
        (``p > threshold`` is predicted).
      name: the log name.
      dtype: the dtype of the counts.

    Returns (``result``):
      One score per class (``average=None``), else a scalar.
    """

    average: Optional[str] = None
    beta: float = 1.0
    threshold: Optional[float] = None
    name: str = "fbeta_score"
    dtype: Any = None


@dataclasses.dataclass(frozen=True)
class F1Score(_FScore):
    """Keras' ``F1Score``: ``2 P R / (P + R)`` from the epoch's counts, ``FBetaScore`` with ``beta=1``.

    Args:
      average: ``None`` (one score per class), ``'micro'``, ``'macro'`` or ``'weighted'``.
      threshold: ``None`` (each row's top class is predicted) or a threshold in ``(0, 1]``.
      name: the log name.
      dtype: the dtype of the counts.

    Returns (``result``):
      One score per class (``average=None``), else a scalar.
    """

    average: Optional[str] = None
    threshold: Optional[float] = None
    name: str = "f1_score"
    dtype: Any = None
