"""Hinge metrics with Keras' names: weighted means over samples of

* ``hinge = mean(max(1 - y p, 0), -1)``
* ``squared_hinge = mean(max(1 - y p, 0)^2, -1)``
* ``categorical_hinge = max(max((1 - y) p) - sum(y p) + 1, 0)`` (one-hot targets)

with targets ``y`` in ``{-1, 1}``; as in Keras, targets that are all 0 or 1 are first
mapped to ``2y - 1``. The classes decide that on the batch's real rows only, so rows
padding a short last batch cannot change it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax.numpy as jnp

from dlkit import losses
from dlkit.metrics.base import PerSampleMean
from dlkit.metrics.weighting import add_to_mean, row_weights


def _signed(y_true, rows: Optional[jnp.ndarray] = None):
    """Keras' ``convert_binary_labels_to_hinge``: ``2y - 1`` if every target (of ``rows``) is 0 or 1."""
    binary = (y_true == 0) | (y_true == 1)
    if rows is not None:
        binary = binary | ~rows.reshape(rows.shape + (1,) * (y_true.ndim - rows.ndim))
    return jnp.where(jnp.all(binary), 2.0 * y_true - 1.0, y_true)


def _margins(y_true, y_pred, rows=None):
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred, jnp.float32), "hinge")
    return jnp.maximum(1.0 - _signed(y_true, rows) * y_pred, 0.0)


def hinge(y_true, y_pred):
    """Keras' ``hinge``: ``mean(max(1 - y p, 0), axis=-1)``, 0/1 targets mapped to -1/1.

    Args:
      y_true: targets in ``{-1, 1}`` (or all in ``{0, 1}``).
      y_pred: scores.

    Returns:
      One value per sample.
    """
    return jnp.mean(_margins(y_true, y_pred), axis=-1)


def squared_hinge(y_true, y_pred):
    """Keras' ``squared_hinge``: ``mean(max(1 - y p, 0)^2, axis=-1)``, 0/1 targets mapped to -1/1.

    Args:
      y_true: targets in ``{-1, 1}`` (or all in ``{0, 1}``).
      y_pred: scores.

    Returns:
      One value per sample.
    """
    return jnp.mean(jnp.square(_margins(y_true, y_pred)), axis=-1)


def categorical_hinge(y_true, y_pred):
    """Keras' ``categorical_hinge``: ``max(neg - pos + 1, 0)`` with ``pos = sum(y p)`` and
    ``neg = max((1 - y) p)``.

    Args:
      y_true: one-hot targets, ``(batch, classes)``.
      y_pred: scores, ``(batch, classes)``.

    Returns:
      One value per sample.
    """
    y_pred = jnp.asarray(y_pred, jnp.float32)
    y_true = jnp.asarray(y_true, y_pred.dtype)
    positive = jnp.sum(y_true * y_pred, axis=-1)
    negative = jnp.max((1.0 - y_true) * y_pred, axis=-1)
    return jnp.maximum(negative - positive + 1.0, 0.0)


class _Hinge(PerSampleMean):
    squared = False

    def values(self, y_true, y_pred, rows=None):
        """The per-element terms, ``max(1 - y p, 0)`` (squared for ``SquaredHinge``).

        Args:
          y_true: targets in ``{-1, 1}`` (or all in ``{0, 1}``), batch axis first.
          y_pred: scores, batch axis first.
          rows: ``None`` or one bool per row, the real rows, which alone decide the 0/1 -> -1/1 mapping.

        Returns:
          One term per element, batch axis first.
        """
        margins = _margins(y_true, y_pred, rows)
        return jnp.square(margins) if self.squared else margins

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None):
        batch = jnp.shape(y_pred)[0]
        rows = row_weights(batch, None, mask) != 0
        return add_to_mean(state, self.values(y_true, y_pred, rows), row_weights(batch, sample_weight, mask))


@dataclasses.dataclass(frozen=True)
class Hinge(_Hinge):
    """Keras' ``Hinge``: the weighted mean of ``mean(max(1 - y p, 0), -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean hinge, a scalar.
    """

    name: str = "hinge"
    dtype: Any = None


@dataclasses.dataclass(frozen=True)
class SquaredHinge(_Hinge):
    """Keras' ``SquaredHinge``: the weighted mean of ``mean(max(1 - y p, 0)^2, -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean squared hinge, a scalar.
    """

    name: str = "squared_hinge"
    dtype: Any = None
    squared = True


@dataclasses.dataclass(frozen=True)
class CategoricalHinge(PerSampleMean):
    """Keras' ``CategoricalHinge``: the weighted mean of ``max(max((1 - y) p) - sum(y p) + 1, 0)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean categorical hinge, a scalar.
    """

    name: str = "categorical_hinge"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return categorical_hinge(y_true, y_pred)
