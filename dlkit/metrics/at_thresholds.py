"""The best value of one rate under a constraint on another: Keras' ``PrecisionAtRecall``,
``RecallAtPrecision``, ``SensitivityAtSpecificity``, ``SpecificityAtSensitivity``.

The counts are kept at ``num_thresholds`` evenly spaced thresholds ``0, 1/(T-1), ..., 1``
(only ``0.5`` when ``T = 1``). With

    sensitivity = recall = TP / (TP + FN)      specificity = TN / (TN + FP)
    precision = TP / (TP + FP)

``PrecisionAtRecall(r)`` is ``max {precision(t) : recall(t) >= r}`` over the thresholds
(0 when no threshold qualifies), and likewise for the other three.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax.numpy as jnp

from dlkit.metrics.confusion import ThresholdMetric
from dlkit.metrics.thresholds import divide_no_nan


def _rates(state) -> dict:
    tp, fp, tn, fn = state["tp"], state["fp"], state["tn"], state["fn"]
    return {"recall": divide_no_nan(tp, tp + fn), "precision": divide_no_nan(tp, tp + fp),
            "specificity": divide_no_nan(tn, tn + fp)}


class _AtThreshold(ThresholdMetric):
    """``max(dependent)`` over the thresholds where ``constrained >= value``."""

    constrained = "recall"
    dependent = "precision"

    def __post_init__(self):
        super().__post_init__()
        if self.value is None:
            raise ValueError(f"{type(self).__name__} needs `{self.constrained_argument}`.")
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"Argument `{self.constrained_argument}` must be in the range [0, 1]. "
                             f"Received: {self.constrained_argument}={self.value}")
        if self.num_thresholds <= 0:
            raise ValueError(f"Argument `num_thresholds` must be an integer > 0. "
                             f"Received: num_thresholds={self.num_thresholds}")

    @property
    def constrained_argument(self) -> str:
        """The name of the constraint's argument (``recall``, ``precision``, ...), the first field."""
        return dataclasses.fields(self)[0].name

    @property
    def value(self) -> float:
        """The constraint's value, the least rate a threshold must reach."""
        return getattr(self, self.constrained_argument)

    def threshold_values(self) -> tuple:
        """The thresholds counted at.

        Returns:
          ``num_thresholds`` evenly spaced thresholds ``0, 1/(T-1), ..., 1`` (``(0.5,)`` for ``T = 1``).
        """
        count = self.num_thresholds
        if count == 1:
            return (0.5,)
        return tuple([0.0] + [(i + 1) * 1.0 / (count - 1) for i in range(count - 2)] + [1.0])

    def evenly(self) -> bool:
        """Whether the thresholds are evenly spaced (Keras' fast bucketing).

        Returns:
          True unless there is a single threshold.
        """
        return self.num_thresholds > 1

    def compute(self, state):
        rates = _rates(state)
        feasible = rates[self.constrained] >= self.value
        return jnp.max(jnp.where(feasible, rates[self.dependent], 0.0), initial=0.0)


@dataclasses.dataclass(frozen=True)
class PrecisionAtRecall(_AtThreshold):
    """Keras' ``PrecisionAtRecall``: the best precision at a recall of at least ``recall``.

    Args:
      recall: the least recall, in ``[0, 1]``.
      num_thresholds: the number of evenly spaced thresholds tried (200).
      class_id: ``None`` or the column of the last axis to measure.
      name: the log name (default ``"precision_at_recall"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      ``max {TP/(TP+FP) : TP/(TP+FN) >= recall}`` over the thresholds, a scalar.
    """

    recall: float = None
    num_thresholds: int = 200
    class_id: Optional[int] = None
    name: Optional[str] = None
    dtype: Any = None
    constrained, dependent = "recall", "precision"


@dataclasses.dataclass(frozen=True)
class RecallAtPrecision(_AtThreshold):
    """Keras' ``RecallAtPrecision``: the best recall at a precision of at least ``precision``.

    Args:
      precision: the least precision, in ``[0, 1]``.
      num_thresholds: the number of evenly spaced thresholds tried (200).
      class_id: ``None`` or the column of the last axis to measure.
      name: the log name (default ``"recall_at_precision"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      ``max {TP/(TP+FN) : TP/(TP+FP) >= precision}`` over the thresholds, a scalar.
    """

    precision: float = None
    num_thresholds: int = 200
    class_id: Optional[int] = None
    name: Optional[str] = None
    dtype: Any = None
    constrained, dependent = "precision", "recall"


@dataclasses.dataclass(frozen=True)
class SensitivityAtSpecificity(_AtThreshold):
    """Keras' ``SensitivityAtSpecificity``: the best sensitivity (recall) at a specificity of at
    least ``specificity``.

    Args:
      specificity: the least specificity ``TN / (TN + FP)``, in ``[0, 1]``.
      num_thresholds: the number of evenly spaced thresholds tried (200).
      class_id: ``None`` or the column of the last axis to measure.
      name: the log name (default ``"sensitivity_at_specificity"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      ``max {TP/(TP+FN) : TN/(TN+FP) >= specificity}`` over the thresholds, a scalar.
    """

    specificity: float = None
    num_thresholds: int = 200
    class_id: Optional[int] = None
    name: Optional[str] = None
    dtype: Any = None
    constrained, dependent = "specificity", "recall"


@dataclasses.dataclass(frozen=True)
class SpecificityAtSensitivity(_AtThreshold):
    """Keras' ``SpecificityAtSensitivity``: the best specificity at a sensitivity (recall) of at
    least ``sensitivity``.

    Args:
      sensitivity: the least sensitivity ``TP / (TP + FN)``, in ``[0, 1]``.
      num_thresholds: the number of evenly spaced thresholds tried (200).
      class_id: ``None`` or the column of the last axis to measure.
      name: the log name (default ``"specificity_at_sensitivity"``).
      dtype: the dtype of the counts.

    Returns (``result``):
      ``max {TN/(TN+FP) : TP/(TP+FN) >= sensitivity}`` over the thresholds, a scalar.
    """

    sensitivity: float = None
    num_thresholds: int = 200
    class_id: Optional[int] = None
    name: Optional[str] = None
    dtype: Any = None
    constrained, dependent = "recall", "specificity"
