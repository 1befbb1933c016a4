"""Intersection over union with Keras' names: ``IoU``, ``MeanIoU``, ``BinaryIoU``, ``OneHotIoU``,
``OneHotMeanIoU``.

The state is the epoch's (weighted) confusion matrix ``C`` (rows: true class, columns:
predicted class) over every element (pixel) of every sample. For class ``c``

    IoU_c = C_cc / (sum_j C_cj + sum_i C_ic - C_cc) = TP / (TP + FP + FN)

and the result is the mean of ``IoU_c`` over the target classes whose denominator is
positive (classes never seen nor predicted are left out). Class ids outside
``[0, num_classes)`` and targets equal to ``ignore_class`` are not counted.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp

from dlkit.metrics.base import Metric
from dlkit.metrics.weighting import broadcast_rows, row_weights

EPSILON = 1e-7


class _ConfusionIoU(Metric):
    """The confusion-matrix state and the IoU formula; subclasses hold Keras' arguments."""

    ignore_class: Optional[int] = None
    sparse_y_true: bool = True
    sparse_y_pred: bool = True
    axis: int = -1

    def __post_init__(self):
        super().__post_init__()
        for argument in ("num_classes", "target_class_ids"):
            if argument in {field.name for field in dataclasses.fields(self)} and getattr(self, argument) is None:
                raise ValueError(f"{type(self).__name__} needs `{argument}`.")
        ids = tuple(int(i) for i in self.class_ids())
        if max(ids) >= self.num_classes:
            raise ValueError(f"Target class id {max(ids)} is out of range, which is [0, {self.num_classes}).")
        if "target_class_ids" in {field.name for field in dataclasses.fields(self)}:
            object.__setattr__(self, "target_class_ids", ids)

    def class_ids(self) -> tuple:
        """The classes averaged over.

        Returns:
          ``target_class_ids`` where the class has them, else every class ``0 .. num_classes - 1``.
        """
        return tuple(range(self.num_classes))

    def classes(self, y_true, y_pred):
        """Class ids of the targets and the predictions, one per element.

        Args:
          y_true: class ids, or scores / one-hot rows (argmax over ``axis``) unless ``sparse_y_true``.
          y_pred: class ids, or scores (argmax over ``axis``) unless ``sparse_y_pred``; ``BinaryIoU``
            thresholds probabilities (``p >= threshold`` is class 1).

        Returns:
          ``(true ids, predicted ids)``, int32, batch axis first.
        """
        y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
        if not self.sparse_y_true:
            y_true = jnp.argmax(y_true, axis=self.axis)
        if not self.sparse_y_pred:
            y_pred = jnp.argmax(y_pred, axis=self.axis)
        return y_true.astype(jnp.int32), y_pred.astype(jnp.int32)

    def init(self):
        return jnp.zeros((self.num_classes, self.num_classes), self.dtype or jnp.float32)

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None):
        batch = jnp.shape(y_true)[0]
        y_true, y_pred = self.classes(y_true, y_pred)
        if y_true.size != y_pred.size:
            raise ValueError(f"{type(self).__name__}: targets of shape {y_true.shape} and predictions of shape "
                             f"{y_pred.shape} hold different numbers of class ids.")
        y_true = y_true.reshape(batch, -1)
        y_pred = y_pred.reshape(batch, -1)
        weight = broadcast_rows(row_weights(batch, sample_weight, mask), y_true.shape)
        count = self.num_classes
        valid = (y_true >= 0) & (y_true < count) & (y_pred >= 0) & (y_pred < count)
        if self.ignore_class is not None:
            valid = valid & (y_true != self.ignore_class)
        cell = jnp.where(valid, y_true * count + y_pred, 0)
        weight = jnp.where(valid, weight, 0.0)
        found = jax.ops.segment_sum(weight.reshape(-1), cell.reshape(-1), num_segments=count * count)
        return state + found.reshape(count, count).astype(state.dtype)

    def compute(self, state):
        state = state.astype(jnp.float32)
        true_positives = jnp.diagonal(state)
        denominator = jnp.sum(state, axis=0) + jnp.sum(state, axis=1) - true_positives
        ids = jnp.asarray(self.class_ids(), jnp.int32)
        true_positives, denominator = true_positives[ids], denominator[ids]
        valid = denominator > 1e-9
        iou = jnp.where(valid, true_positives / (denominator + EPSILON), 0.0)
        return jnp.sum(iou) / (jnp.sum(valid.astype(jnp.float32)) + EPSILON)


@dataclasses.dataclass(frozen=True)
class IoU(_ConfusionIoU):
    """Keras' ``IoU``: the mean of ``TP / (TP + FP + FN)`` over ``target_class_ids``.

    Args:
      num_classes: the number of classes.
      target_class_ids: the classes averaged over (a tuple).
      name: the log name (default ``"io_u"``, Keras' snake_case of the class).
      dtype: the dtype of the confusion matrix (float32: exact counts up to 2**24 per cell).
      ignore_class: ``None`` or a target class left out (a "void" label).
      sparse_y_true: whether targets are class ids (else scores: argmax over ``axis``).
      sparse_y_pred: whether predictions are class ids (else scores: argmax over ``axis``).
      axis: the class axis of non-sparse inputs.

    Returns (``result``):
      The mean IoU, a scalar.
    """

    num_classes: int = None
    target_class_ids: Any = None
    name: Optional[str] = None
    dtype: Any = None
    ignore_class: Optional[int] = None
    sparse_y_true: bool = True
    sparse_y_pred: bool = True
    axis: int = -1

    def class_ids(self):
        return tuple(self.target_class_ids)


@dataclasses.dataclass(frozen=True)
class MeanIoU(_ConfusionIoU):
    """Keras' ``MeanIoU``: the mean over all classes of ``TP / (TP + FP + FN)``.

    Args:
      num_classes: the number of classes.
      name: the log name (default ``"mean_io_u"``, Keras' snake_case of the class).
      dtype: the dtype of the confusion matrix.
      ignore_class: ``None`` or a target class left out.
      sparse_y_true: whether targets are class ids (else scores: argmax over ``axis``).
      sparse_y_pred: whether predictions are class ids (else scores: argmax over ``axis``).
      axis: the class axis of non-sparse inputs.

    Returns (``result``):
      The mean IoU, a scalar.
    """

    num_classes: int = None
    name: Optional[str] = None
    dtype: Any = None
    ignore_class: Optional[int] = None
    sparse_y_true: bool = True
    sparse_y_pred: bool = True
    axis: int = -1


@dataclasses.dataclass(frozen=True)
class BinaryIoU(_ConfusionIoU):
    """Keras' ``BinaryIoU``: IoU of a binary output, the prediction being ``p >= threshold``.

    Args:
      target_class_ids: the classes averaged over, from ``(0, 1)``.
      threshold: the decision threshold (``p >= threshold`` is class 1).
      name: the log name (default ``"binary_io_u"``).
      dtype: the dtype of the confusion matrix.

    Returns (``result``):
      The mean IoU over ``target_class_ids``, a scalar.
    """

    target_class_ids: Any = (0, 1)
    threshold: float = 0.5
    name: Optional[str] = None
    dtype: Any = None
    num_classes = 2

    def class_ids(self):
        return tuple(self.target_class_ids)

    def classes(self, y_true, y_pred):
        return (jnp.asarray(y_true).astype(jnp.int32),
                (jnp.asarray(y_pred, jnp.float32) >= self.threshold).astype(jnp.int32))


@dataclasses.dataclass(frozen=True)
class OneHotIoU(_ConfusionIoU):
    """Keras' ``OneHotIoU``: ``IoU`` with one-hot targets (and, by default, score predictions).

    Args:
      num_classes: the number of classes.
      target_class_ids: the classes averaged over.
      name: the log name (default ``"one_hot_io_u"``).
      dtype: the dtype of the confusion matrix.
      ignore_class: ``None`` or a target class left out.
      sparse_y_pred: whether predictions are class ids (default: scores, argmax over ``axis``).
      axis: the class axis.

    Returns (``result``):
      The mean IoU over ``target_class_ids``, a scalar.
    """

    num_classes: int = None
    target_class_ids: Any = None
    name: Optional[str] = None
    dtype: Any = None
    ignore_class: Optional[int] = None
    sparse_y_pred: bool = False
    axis: int = -1
    sparse_y_true = False

    def class_ids(self):
        return tuple(self.target_class_ids)


@dataclasses.dataclass(frozen=True)
class OneHotMeanIoU(_ConfusionIoU):
    """Keras' ``OneHotMeanIoU``: ``MeanIoU`` with one-hot targets (and, by default, score predictions).

    Args:
      num_classes: the number of classes.
      name: the log name (default ``"one_hot_mean_io_u"``).
      dtype: the dtype of the confusion matrix.
      ignore_class: ``None`` or a target class left out.
      sparse_y_pred: whether predictions are class ids (default: scores, argmax over ``axis``).
      axis: the class axis.

    Returns (``result``):
      The mean IoU, a scalar.
    """

    num_classes: int = None
    name: Optional[str] = None
    dtype: Any = None
    ignore_class: Optional[int] = None
    sparse_y_pred: bool = False
    axis: int = -1
    sparse_y_true = False
