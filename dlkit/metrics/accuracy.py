"""Accuracy metrics with Keras' names: the fraction of (weighted) samples predicted right.

* ``accuracy = [y_true == y_pred]``
* ``binary_accuracy = mean([y_true > 0.5] == [y_pred > threshold], axis=-1)``
* ``categorical_accuracy = [argmax(y_true) == argmax(y_pred)]`` (one-hot targets)
* ``sparse_categorical_accuracy = [y_true == argmax(y_pred)]`` (integer targets)
* ``top_k_categorical_accuracy = [rank of y_pred at argmax(y_true) <= k]``
* ``sparse_top_k_categorical_accuracy = [rank of y_pred at y_true <= k]``

The functions return one value per sample, as ``keras.metrics.binary_accuracy`` & co.;
the classes are their weighted means over an epoch. The classes sum the 0/1 matches of
every element, so their totals are integers and an epoch's accuracy does not depend on
how it was batched.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from dlkit import losses
from dlkit.metrics.base import PerSampleMean


def _matches(equal) -> jnp.ndarray:
    return equal.astype(jnp.float32)


def _binary_matches(y_true, y_pred, threshold: float = 0.5):
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred), "binary_accuracy")
    return _matches((y_true > 0.5) == (y_pred > threshold))


def _sparse_labels(y_true, y_pred):
    """Integer labels of shape ``y_pred.shape[:-1]``: a trailing axis of size 1 is dropped."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    return y_true.astype(jnp.int32)


def _in_top_k(labels, y_pred, k: int):
    """Keras' ``in_top_k``: the label's score has fewer than ``k`` scores strictly above it (ties
    count in the label's favour; a NaN score is never in the top k)."""
    y_pred = jnp.asarray(y_pred, jnp.float32)
    at_label = jnp.take_along_axis(y_pred, labels[..., None], axis=-1)
    at_label = jnp.where(jnp.isnan(at_label), -jnp.inf, at_label)
    return jnp.sum(y_pred > at_label, axis=-1) < k


def accuracy(y_true, y_pred):
    """Keras' ``accuracy``: whether each target equals the prediction, element by element.

    Args:
      y_true: the targets.
      y_pred: the predictions (same shape, or Keras' rank rule).

    Returns:
      A float32 array of 0s and 1s with the shape of the targets.
    """
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred), "accuracy")
    return _matches(y_true == y_pred)


def binary_accuracy(y_true, y_pred, threshold: float = 0.5):
    """Keras' ``binary_accuracy``: the fraction of labels right, ``mean([y > 0.5] == [p > threshold], -1)``.

    A prediction equal to the threshold is negative (``p > threshold``, as Keras).

    Args:
      y_true: 0/1 targets, ``(batch,)`` or ``(batch, labels)``.
      y_pred: probabilities (or logits with ``threshold=0``), same shape or ``(batch, 1)``.
      threshold: the decision threshold.

    Returns:
      One value per sample, shape ``(batch,)`` (or the leading axes before the labels).
    """
    return jnp.mean(_binary_matches(y_true, y_pred, threshold), axis=-1)


def categorical_accuracy(y_true, y_pred):
    """Keras' ``categorical_accuracy``: ``argmax(y_true) == argmax(y_pred)`` (one-hot targets).

    Args:
      y_true: one-hot targets, ``(batch, classes)``.
      y_pred: scores, ``(batch, classes)``.

    Returns:
      One 0/1 value per sample, shape ``(batch,)``.
    """
    return _matches(jnp.argmax(jnp.asarray(y_true), axis=-1) == jnp.argmax(jnp.asarray(y_pred), axis=-1))


def sparse_categorical_accuracy(y_true, y_pred):
    """Keras' ``sparse_categorical_accuracy``: ``y_true == argmax(y_pred)`` (integer targets).

    Args:
      y_true: class indices, ``(batch,)`` or ``(batch, 1)``.
      y_pred: scores, ``(batch, classes)``.

    Returns:
      One 0/1 value per sample, shape ``(batch,)``.
    """
    return _matches(_sparse_labels(y_true, y_pred) == jnp.argmax(jnp.asarray(y_pred), axis=-1))


def top_k_categorical_accuracy(y_true, y_pred, k: int = 5):
    """Keras' ``top_k_categorical_accuracy``: whether the target class is among the ``k`` highest scores.

    Args:
      y_true: one-hot targets, ``(batch, classes)``.
      y_pred: scores, ``(batch, classes)``.
      k: how many top scores count.

    Returns:
      One 0/1 value per sample, shape ``(batch,)``.
    """
    labels = jnp.argmax(jnp.asarray(y_true), axis=-1).astype(jnp.int32)
    return _matches(_in_top_k(labels, y_pred, k))


def sparse_top_k_categorical_accuracy(y_true, y_pred, k: int = 5, from_sorted_ids: bool = False):
    """Keras' ``sparse_top_k_categorical_accuracy``: whether the target class is among the ``k`` best.

    Args:
      y_true: class indices, ``(batch,)`` or ``(batch, 1)``.
      y_pred: scores ``(batch, classes)``; or, with ``from_sorted_ids=True``, class ids sorted by
        decreasing score, ``(batch, m)`` with ``m >= k``.
      k: how many top scores count.
      from_sorted_ids: whether ``y_pred`` holds sorted class ids instead of scores.

    Returns:
      One 0/1 value per sample, shape ``(batch,)``.
    """
    y_pred = jnp.asarray(y_pred)
    labels = _sparse_labels(y_true, y_pred)
    if from_sorted_ids:
        return _matches(jnp.any(labels[..., None] == y_pred[..., :k].astype(jnp.int32), axis=-1))
    return _matches(_in_top_k(labels, y_pred, k))


@dataclasses.dataclass(frozen=True)
class Accuracy(PerSampleMean):
    """Keras' ``Accuracy``: how often predictions equal the targets, ``mean(y_true == y_pred)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted fraction of elements equal, a scalar.
    """

    name: str = "accuracy"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return accuracy(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class BinaryAccuracy(PerSampleMean):
    """Keras' ``BinaryAccuracy``: the weighted mean of ``[y_true > 0.5] == [y_pred > threshold]``
    over every label of every sample.

    Args:
      name: the log name.
      dtype: the dtype of the totals.
      threshold: the decision threshold (0 for logits).

    Returns (``result``):
      The weighted fraction of labels right, a scalar.
    """

    name: str = "binary_accuracy"
    dtype: Any = None
    threshold: float = 0.5

    def values(self, y_true, y_pred):
        return _binary_matches(y_true, y_pred, self.threshold)


@dataclasses.dataclass(frozen=True)
class CategoricalAccuracy(PerSampleMean):
    """Keras' ``CategoricalAccuracy``: the weighted mean of ``argmax(y_true) == argmax(y_pred)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted fraction of samples right, a scalar.
    """

    name: str = "categorical_accuracy"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return categorical_accuracy(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class SparseCategoricalAccuracy(PerSampleMean):
    """Keras' ``SparseCategoricalAccuracy``: the weighted mean of ``y_true == argmax(y_pred)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted fraction of samples right, a scalar.
    """

    name: str = "sparse_categorical_accuracy"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return sparse_categorical_accuracy(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class TopKCategoricalAccuracy(PerSampleMean):
    """Keras' ``TopKCategoricalAccuracy``: how often the one-hot target is among the ``k`` top scores.

    Args:
      k: how many top scores count.
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted fraction of samples whose class is in the top ``k``, a scalar.
    """

    k: int = 5
    name: str = "top_k_categorical_accuracy"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return top_k_categorical_accuracy(y_true, y_pred, self.k)


@dataclasses.dataclass(frozen=True)
class SparseTopKCategoricalAccuracy(PerSampleMean):
    """Keras' ``SparseTopKCategoricalAccuracy``: how often the integer target is among the ``k`` top scores.

    Args:
      k: how many top scores count.
      name: the log name.
      dtype: the dtype of the totals.
      from_sorted_ids: whether ``y_pred`` holds class ids sorted by decreasing score.

    Returns (``result``):
      The weighted fraction of samples whose class is in the top ``k``, a scalar.
    """

    k: int = 5
    name: str = "sparse_top_k_categorical_accuracy"
    dtype: Any = None
    from_sorted_ids: bool = False

    def values(self, y_true, y_pred):
        return sparse_top_k_categorical_accuracy(y_true, y_pred, self.k, self.from_sorted_ids)
