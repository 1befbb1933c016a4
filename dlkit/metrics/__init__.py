"""Streaming metrics with Keras' names, as pure functions of a state that merges by addition.

``metric.init()``, ``metric.update(state, y_true, y_pred, sample_weight, mask)``,
``metric.merge(a, b)`` and ``metric.result(state)`` (see ``dlkit.metrics.base``);
Keras' eager ``update_state`` / ``result()`` / ``reset_state`` / ``metric(y_true, y_pred)`` too.

* accuracies: ``Accuracy``, ``BinaryAccuracy``, ``CategoricalAccuracy``, ``SparseCategoricalAccuracy``,
  ``TopKCategoricalAccuracy``, ``SparseTopKCategoricalAccuracy`` (``dlkit.metrics.accuracy``)
* regression: ``MeanSquaredError``, ``RootMeanSquaredError``, ``MeanAbsoluteError``,
  ``MeanAbsolutePercentageError``, ``MeanSquaredLogarithmicError``, ``CosineSimilarity``,
  ``LogCoshError``, ``R2Score`` (``regression``)
* probabilistic: ``BinaryCrossentropy``, ``CategoricalCrossentropy``, ``SparseCategoricalCrossentropy``,
  ``KLDivergence``, ``Poisson`` (``probabilistic``); ``Hinge``, ``SquaredHinge``, ``CategoricalHinge`` (``hinge``)
* confusion counts at thresholds: ``TruePositives``, ``FalsePositives``, ``TrueNegatives``,
  ``FalseNegatives``, ``Precision``, ``Recall`` (``confusion``); ``PrecisionAtRecall``,
  ``RecallAtPrecision``, ``SensitivityAtSpecificity``, ``SpecificityAtSensitivity``
  (``at_thresholds``); ``AUC``, ``MeanAveragePrecision`` (``auc``)
* ``FBetaScore``, ``F1Score`` (``f_score``); ``IoU``, ``MeanIoU``, ``BinaryIoU``, ``OneHotIoU``,
  ``OneHotMeanIoU`` (``iou``)

``get`` resolves what ``compile(metrics=[...])`` accepts, as Keras 3 does.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Optional

from dlkit import losses
from dlkit._registry import lookup
from dlkit.metrics.accuracy import (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    accuracy,
    binary_accuracy,
    categorical_accuracy,
    sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)
from dlkit.metrics.at_thresholds import (
    PrecisionAtRecall,
    RecallAtPrecision,
    SensitivityAtSpecificity,
    SpecificityAtSensitivity,
)
from dlkit.metrics.auc import AUC, MeanAveragePrecision
from dlkit.metrics.base import (
    Mean,
    MeanMetricWrapper,
    Metric,
    MetricState,
    PerSampleMean,
    Sum,
    mean_of,
    per_row,
    snake_case,
)
from dlkit.metrics.confusion import (
    FalseNegatives,
    FalsePositives,
    Precision,
    Recall,
    TrueNegatives,
    TruePositives,
)
from dlkit.metrics.f_score import F1Score, FBetaScore
from dlkit.metrics.hinge import (
    CategoricalHinge,
    Hinge,
    SquaredHinge,
    categorical_hinge,
    hinge,
    squared_hinge,
)
from dlkit.metrics.iou import BinaryIoU, IoU, MeanIoU, OneHotIoU, OneHotMeanIoU
from dlkit.metrics.probabilistic import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    KLDivergence,
    Poisson,
    SparseCategoricalCrossentropy,
    binary_crossentropy,
    categorical_crossentropy,
    kl_divergence,
    poisson,
    sparse_categorical_crossentropy,
)
from dlkit.metrics.regression import (
    CosineSimilarity,
    LogCoshError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    R2Score,
    RootMeanSquaredError,
    cosine_similarity,
    log_cosh,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    mean_squared_logarithmic_error,
)
from dlkit.metrics.weighting import row_weights

_CLASSES = (
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    MeanSquaredError, RootMeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, CosineSimilarity, LogCoshError, R2Score,
    BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy, KLDivergence, Poisson,
    Hinge, SquaredHinge, CategoricalHinge,
    TruePositives, FalsePositives, TrueNegatives, FalseNegatives, Precision, Recall,
    PrecisionAtRecall, RecallAtPrecision, SensitivityAtSpecificity, SpecificityAtSensitivity,
    AUC, MeanAveragePrecision, FBetaScore, F1Score,
    IoU, MeanIoU, BinaryIoU, OneHotIoU, OneHotMeanIoU,
)

# Keras 3's metrics.get table: class names, their snake_case, and its aliases.
_NAMES = {**{cls.__name__: cls for cls in _CLASSES}, **{snake_case(cls.__name__): cls for cls in _CLASSES}}
_NAMES.update({"bce": BinaryCrossentropy, "BCE": BinaryCrossentropy, "mse": MeanSquaredError,
               "MSE": MeanSquaredError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
               "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
               "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError})
_RESOLVED = ("accuracy", "acc", "crossentropy", "ce")  # resolved from the loss and the shapes
_NEED_ARGUMENTS = {IoU: "num_classes, target_class_ids", MeanIoU: "num_classes",
                   OneHotIoU: "num_classes, target_class_ids", OneHotMeanIoU: "num_classes",
                   PrecisionAtRecall: "recall", RecallAtPrecision: "precision",
                   SensitivityAtSpecificity: "specificity", SpecificityAtSensitivity: "sensitivity"}


class _Names(Mapping):
    """The names ``get`` accepts, as Keras spells them, matched without regard to case."""

    def __init__(self, table: dict):
        self._table = table
        self._folded = {key.lower(): value for key, value in table.items()}

    def __getitem__(self, key):
        return self._folded[key.lower()]

    def __contains__(self, key):
        return isinstance(key, str) and key.lower() in self._folded

    def __iter__(self):
        return iter(self._table)

    def __len__(self):
        return len(self._table)


_TABLE = _Names({**_NAMES, **{name: None for name in _RESOLVED}})


def _kind(loss, y_true_shape, y_pred_shape, what: str) -> str:
    """``'binary'``, ``'sparse'`` or ``'categorical'``: from the loss if it says, else Keras'
    shape rule (a 1-D or ``(..., 1)`` output is binary; integer targets have one axis fewer
    than the outputs, or a last axis of 1)."""
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        return "sparse"
    if isinstance(loss, losses.CategoricalCrossentropy):
        return "categorical"
    if isinstance(loss, losses.BinaryCrossentropy):
        return "binary"
    if y_true_shape is None or y_pred_shape is None:
        raise ValueError(f"Metric {what!r} is resolved from the loss and the shapes of the targets and outputs; "
                         f"pass them (get({what!r}, loss, y_true_shape, y_pred_shape)) or name the metric, "
                         f"e.g. 'binary_accuracy' or 'sparse_categorical_accuracy'.")
    y_true_shape, y_pred_shape = tuple(y_true_shape), tuple(y_pred_shape)
    if len(y_pred_shape) <= 1 or y_pred_shape[-1] == 1:
        return "binary"
    if len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1:] == (1,) and y_pred_shape[-1] > 1):
        return "sparse"
    return "categorical"


def _resolved(identifier: str, loss, y_true_shape, y_pred_shape) -> Metric:
    """Keras' ``'accuracy'``/``'acc'`` and ``'crossentropy'``/``'ce'``, named as written."""
    kind = _kind(loss, y_true_shape, y_pred_shape, identifier)
    from_logits = bool(getattr(loss, "from_logits", False))
    if identifier.lower() in ("accuracy", "acc"):
        if kind == "binary":
            # A from-logits binary loss means the outputs are logits: p > 0.5 <=> z > 0.
            threshold = 0.0 if isinstance(loss, losses.BinaryCrossentropy) and from_logits else 0.5
            return BinaryAccuracy(name=identifier, threshold=threshold)
        return (SparseCategoricalAccuracy if kind == "sparse" else CategoricalAccuracy)(name=identifier)
    cls = {"binary": BinaryCrossentropy, "sparse": SparseCategoricalCrossentropy,
           "categorical": CategoricalCrossentropy}[kind]
    return cls(name=identifier, from_logits=from_logits)


def get(identifier: Any, loss: Optional[losses.Loss] = None, y_true_shape: Optional[tuple] = None,
        y_pred_shape: Optional[tuple] = None) -> Metric:
    """Resolve a metric as Keras 3's ``compile(metrics=[...])`` does.

    * a ``Metric`` passes through unchanged; a ``Metric`` class is instantiated;
    * ``'accuracy'``/``'acc'`` become ``BinaryAccuracy`` (threshold 0 after a from-logits
      ``BinaryCrossentropy``), ``SparseCategoricalAccuracy`` or ``CategoricalAccuracy``, and
      ``'crossentropy'``/``'ce'`` the matching cross-entropy, from the loss, else the shapes;
    * other strings are Keras' class names or their snake_case (``'AUC'``, ``'auc'``,
      ``'F1Score'``, ``'f1_score'``, ``'top_k_categorical_accuracy'``) or aliases (``'mse'``,
      ``'mae'``, ``'mape'``, ``'msle'``, ``'bce'``), case aside;
    * a ``dlkit.losses.Loss`` or a function ``fn(y_true, y_pred)`` becomes a
      ``MeanMetricWrapper`` of its per-sample values.

    A string's metric is logged under the string as written (``metrics=['AUC', 'recall']``
    logs ``AUC`` and ``recall``), as in Keras 3.

    Args:
      identifier: a name, a ``Metric``, a ``Loss`` or a function.
      loss: the output's loss (for ``'accuracy'`` and ``'crossentropy'``).
      y_true_shape: the targets' shape (batch axis first).
      y_pred_shape: the outputs' shape.

    Returns:
      A ``Metric``.

    Raises:
      ValueError: for an unknown name (the message lists the valid ones), or a name whose
        metric needs arguments (``'MeanIoU'``: ``num_classes``).
    """
    if identifier is None:
        raise ValueError("Expected metric, received `None`.")
    if isinstance(identifier, Metric):
        return identifier
    if inspect.isclass(identifier) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, losses.Loss):
        return MeanMetricWrapper(identifier.per_row, name=identifier.name)
    found = lookup("metric", identifier, _TABLE)
    if not isinstance(identifier, str):
        return MeanMetricWrapper(found)
    if found is None:
        return _resolved(identifier, loss, y_true_shape, y_pred_shape)
    if found in _NEED_ARGUMENTS:
        raise ValueError(f"Metric {identifier!r} needs arguments ({_NEED_ARGUMENTS[found]}): pass "
                         f"dlkit.metrics.{found.__name__}(...) instead of a name.")
    return found(name=identifier)


__all__ = [
    "get", "Metric", "MetricState", "Mean", "Sum", "MeanMetricWrapper", "PerSampleMean", "mean_of", "per_row",
    "row_weights", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "MeanSquaredError", "RootMeanSquaredError",
    "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "CosineSimilarity",
    "LogCoshError", "R2Score", "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
    "KLDivergence", "Poisson", "Hinge", "SquaredHinge", "CategoricalHinge", "TruePositives", "FalsePositives",
    "TrueNegatives", "FalseNegatives", "Precision", "Recall", "PrecisionAtRecall", "RecallAtPrecision",
    "SensitivityAtSpecificity", "SpecificityAtSensitivity", "AUC", "MeanAveragePrecision", "FBetaScore", "F1Score",
    "IoU", "MeanIoU", "BinaryIoU", "OneHotIoU", "OneHotMeanIoU", "accuracy", "binary_accuracy",
    "categorical_accuracy", "sparse_categorical_accuracy", "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy", "mean_squared_error", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_logarithmic_error", "log_cosh", "cosine_similarity",
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence", "poisson",
    "hinge", "squared_hinge", "categorical_hinge",
]
