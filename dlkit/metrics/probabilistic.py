"""Probabilistic metrics with Keras' names: weighted means over samples of

* ``binary_crossentropy``, ``categorical_crossentropy``, ``sparse_categorical_crossentropy``
  (``dlkit.losses``' functions: probabilities clipped to ``[1e-7, 1 - 1e-7]``, or logits)
* ``kl_divergence = sum(y log(y / p), -1)`` with ``y, p`` clipped to ``[1e-7, 1]``
* ``poisson = mean(p - y log(p + 1e-7), -1)``
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax.numpy as jnp

from dlkit import losses
from dlkit.metrics.base import PerSampleMean
from dlkit.metrics.weighting import add_to_mean, broadcast_rows, row_weights

EPSILON = 1e-7

def binary_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0):
    """Keras' ``binary_crossentropy``: ``mean(-(y log p + (1 - y) log(1 - p)), axis=-1)``
    (``dlkit.losses.binary_crossentropy``).

    Args:
      y_true: 0/1 (or soft) targets.
      y_pred: probabilities, or logits with ``from_logits=True``.
      from_logits: whether ``y_pred`` holds logits.
      label_smoothing: targets become ``y (1 - s) + s / 2``.

    Returns:
      One value per sample.
    """
    return losses.binary_crossentropy(jnp.asarray(y_true), jnp.asarray(y_pred), from_logits, label_smoothing)


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0):
    """Keras' ``categorical_crossentropy``: ``-sum(y log p, axis=-1)`` (``dlkit.losses.categorical_crossentropy``).

    Args:
      y_true: one-hot (or soft) targets.
      y_pred: probabilities (renormalised), or logits with ``from_logits=True``.
      from_logits: whether ``y_pred`` holds logits.
      label_smoothing: targets become ``y (1 - s) + s / classes``.

    Returns:
      One value per sample.
    """
    return losses.categorical_crossentropy(jnp.asarray(y_true), jnp.asarray(y_pred), from_logits, label_smoothing)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False):
    """Keras' ``sparse_categorical_crossentropy``: ``-log p[y]`` for integer targets
    (``dlkit.losses.sparse_categorical_crossentropy``).

    Args:
      y_true: class indices, ``(batch,)`` or ``(batch, 1)``.
      y_pred: probabilities (renormalised), or logits with ``from_logits=True``.
      from_logits: whether ``y_pred`` holds logits.

    Returns:
      One value per sample.
    """
    return losses.sparse_categorical_crossentropy(jnp.asarray(y_true), jnp.asarray(y_pred), from_logits)


def kl_divergence(y_true, y_pred):
    """Keras' ``kl_divergence``: ``sum(y log(y / p), axis=-1)``, both clipped to ``[1e-7, 1]``.

    Args:
      y_true: target distributions.
      y_pred: predicted distributions.

    Returns:
      One value per sample.
    """
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred), "kl_divergence")
    y_true, y_pred = jnp.clip(y_true, EPSILON, 1.0), jnp.clip(y_pred, EPSILON, 1.0)
    return jnp.sum(y_true * jnp.log(y_true / y_pred), axis=-1)


def poisson(y_true, y_pred):
    """Keras' ``poisson``: ``mean(p - y log(p + 1e-7), axis=-1)`` (predicted rates ``p``).

    Args:
      y_true: observed counts.
      y_pred: predicted rates.

    Returns:
      One value per sample.
    """
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred), "poisson")
    return jnp.mean(y_pred - y_true * jnp.log(y_pred + EPSILON), axis=-1)


def _class_axis_last(y, axis: int, ndim: int):
    return y if axis in (-1, ndim - 1) else jnp.moveaxis(y, axis, -1)


@dataclasses.dataclass(frozen=True)
class BinaryCrossentropy(PerSampleMean):
    """Keras' ``BinaryCrossentropy`` metric: the weighted mean of
    ``mean(-(y log p + (1 - y) log(1 - p)), -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.
      from_logits: whether predictions are logits.
      label_smoothing: targets become ``y (1 - s) + s / 2``.

    Returns (``result``):
      The weighted mean cross-entropy, a scalar.
    """

    name: str = "binary_crossentropy"
    dtype: Any = None
    from_logits: bool = False
    label_smoothing: float = 0.0

    def values(self, y_true, y_pred):
        return binary_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)


@dataclasses.dataclass(frozen=True)
class CategoricalCrossentropy(PerSampleMean):
    """Keras' ``CategoricalCrossentropy`` metric: the weighted mean of ``-sum(y log p, axis)`` (one-hot
    or soft targets).

    Args:
      name: the log name.
      dtype: the dtype of the totals.
      from_logits: whether predictions are logits.
      label_smoothing: targets become ``y (1 - s) + s / classes``.
      axis: the class axis.

    Returns (``result``):
      The weighted mean cross-entropy, a scalar.
    """

    name: str = "categorical_crossentropy"
    dtype: Any = None
    from_logits: bool = False
    label_smoothing: float = 0.0
    axis: int = -1

    def values(self, y_true, y_pred):
        ndim = jnp.ndim(y_pred)
        return categorical_crossentropy(_class_axis_last(y_true, self.axis, ndim),
                                        _class_axis_last(y_pred, self.axis, ndim),
                                        self.from_logits, self.label_smoothing)


@dataclasses.dataclass(frozen=True)
class SparseCategoricalCrossentropy(PerSampleMean):
    """Keras' ``SparseCategoricalCrossentropy`` metric: the weighted mean of ``-log p[y]`` (integer targets).

    Args:
      name: the log name.
      dtype: the dtype of the totals.
      from_logits: whether predictions are logits.
      ignore_class: ``None`` or a label whose targets are left out of the mean (segmentation's
        "void" class). Keras leaves them out only when a ``sample_weight`` is given and
        otherwise averages their zeros in; here they are always left out.
      axis: the class axis of ``y_pred``.

    Returns (``result``):
      The weighted mean cross-entropy, a scalar.
    """

    name: str = "sparse_categorical_crossentropy"
    dtype: Any = None
    from_logits: bool = False
    ignore_class: Optional[int] = None
    axis: int = -1

    def values(self, y_true, y_pred):
        y_pred = _class_axis_last(y_pred, self.axis, jnp.ndim(y_pred))
        if self.ignore_class is not None:
            y_true = jnp.where(y_true == self.ignore_class, 0, y_true)
        return sparse_categorical_crossentropy(y_true, y_pred, self.from_logits)

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None):
        y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
        values = self.values(y_true, y_pred)
        weight = broadcast_rows(row_weights(values.shape[0], sample_weight, mask), values.shape)
        if self.ignore_class is not None:
            labels = y_true.reshape(values.shape)
            weight = jnp.where(labels == self.ignore_class, 0.0, weight)
        return add_to_mean(state, values, weight)


@dataclasses.dataclass(frozen=True)
class KLDivergence(PerSampleMean):
    """Keras' ``KLDivergence``: the weighted mean of ``sum(y log(y / p), -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean divergence, a scalar.
    """

    name: str = "kl_divergence"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return kl_divergence(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class Poisson(PerSampleMean):
    """Keras' ``Poisson``: the weighted mean of ``mean(p - y log(p + 1e-7), -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean, a scalar.
    """

    name: str = "poisson"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return poisson(y_true, y_pred)
