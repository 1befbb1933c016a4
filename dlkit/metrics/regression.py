"""Regression metrics with Keras' names, weighted means over samples unless said otherwise.

* ``mean_squared_error = mean((y - p)^2, -1)``, ``mean_absolute_error = mean(|y - p|, -1)``
  (``dlkit.losses``' functions)
* ``mean_absolute_percentage_error = 100 mean(|y - p| / max(|y|, eps), -1)``
* ``mean_squared_logarithmic_error = mean((log(max(p, eps) + 1) - log(max(y, eps) + 1))^2, -1)``
* ``log_cosh = mean(log(cosh(p - y)), -1)``
* ``cosine_similarity = sum(y/|y| * p/|p|, axis)``
* ``RootMeanSquaredError = sqrt(epoch mean of (y - p)^2)`` (not a mean of per-batch roots)
* ``R2Score = 1 - SS_res / SS_tot`` per output, from sums over the epoch.

``eps`` is Keras' ``1e-7``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp

from dlkit import losses
from dlkit.metrics.base import Metric, PerSampleMean
from dlkit.metrics.weighting import broadcast_rows, row_weights, weighted

EPSILON = 1e-7

def mean_squared_error(y_true, y_pred):
    """Keras' ``mean_squared_error``: ``mean((y - p)^2, axis=-1)`` (``dlkit.losses.mean_squared_error``).

    Args:
      y_true: the targets.
      y_pred: the predictions.

    Returns:
      One value per sample.
    """
    return losses.mean_squared_error(jnp.asarray(y_true), jnp.asarray(y_pred))


def mean_absolute_error(y_true, y_pred):
    """Keras' ``mean_absolute_error``: ``mean(|y - p|, axis=-1)`` (``dlkit.losses.mean_absolute_error``).

    Args:
      y_true: the targets.
      y_pred: the predictions.

    Returns:
      One value per sample.
    """
    return losses.mean_absolute_error(jnp.asarray(y_true), jnp.asarray(y_pred))


def mean_absolute_percentage_error(y_true, y_pred):
    """Keras' ``mean_absolute_percentage_error``: ``100 mean(|y - p| / max(|y|, 1e-7), axis=-1)``.

    Args:
      y_true: the targets.
      y_pred: the predictions.

    Returns:
      One value per sample.
    """
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred), "mean_absolute_percentage_error")
    return 100.0 * jnp.mean(jnp.abs((y_true - y_pred) / jnp.maximum(jnp.abs(y_true), EPSILON)), axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    """Keras' ``mean_squared_logarithmic_error``: ``mean((log1p(max(p, eps)) - log1p(max(y, eps)))^2, -1)``.

    Args:
      y_true: the targets.
      y_pred: the predictions.

    Returns:
      One value per sample.
    """
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred), "mean_squared_logarithmic_error")
    first = jnp.log(jnp.maximum(y_pred, EPSILON) + 1.0)
    second = jnp.log(jnp.maximum(y_true, EPSILON) + 1.0)
    return jnp.mean(jnp.square(first - second), axis=-1)


def log_cosh(y_true, y_pred):
    """Keras' ``log_cosh``: ``mean(log(cosh(p - y)), -1)``, as ``x + softplus(-2x) - log 2`` (no overflow).

    Args:
      y_true: the targets.
      y_pred: the predictions.

    Returns:
      One value per sample.
    """
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred), "log_cosh")
    x = y_pred - y_true
    return jnp.mean(x + jax.nn.softplus(-2.0 * x) - jnp.log(2.0), axis=-1)


def _l2_normalize(x, axis):
    return x * jnp.minimum(jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True)), 1.0 / EPSILON)


def cosine_similarity(y_true, y_pred, axis: int = -1):
    """Keras' ``cosine_similarity``: ``sum(y/|y| * p/|p|, axis)`` (norms floored at 1e-7).

    Args:
      y_true: the targets.
      y_pred: the predictions.
      axis: the axis of the vectors.

    Returns:
      One value per sample (per vector).
    """
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred), "cosine_similarity")
    return jnp.sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), axis=axis)


@dataclasses.dataclass(frozen=True)
class MeanSquaredError(PerSampleMean):
    """Keras' ``MeanSquaredError``: the weighted mean of ``mean((y - p)^2, -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean, a scalar.
    """

    name: str = "mean_squared_error"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return mean_squared_error(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class MeanAbsoluteError(PerSampleMean):
    """Keras' ``MeanAbsoluteError``: the weighted mean of ``mean(|y - p|, -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean, a scalar.
    """

    name: str = "mean_absolute_error"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return mean_absolute_error(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class MeanAbsolutePercentageError(PerSampleMean):
    """Keras' ``MeanAbsolutePercentageError``: the weighted mean of ``100 mean(|y - p| / |y|, -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean, in percent, a scalar.
    """

    name: str = "mean_absolute_percentage_error"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return mean_absolute_percentage_error(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class MeanSquaredLogarithmicError(PerSampleMean):
    """Keras' ``MeanSquaredLogarithmicError``: the weighted mean of ``mean((log1p p - log1p y)^2, -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean, a scalar.
    """

    name: str = "mean_squared_logarithmic_error"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return mean_squared_logarithmic_error(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class RootMeanSquaredError(MeanSquaredError):
    """Keras' ``RootMeanSquaredError``: ``sqrt(sum_i w_i e_i / sum_i w_i)``, ``e_i`` each sample's mean
    squared error; the root of the epoch's mean, not a mean of per-batch roots.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The root of the weighted mean, a scalar.
    """

    name: str = "root_mean_squared_error"
    dtype: Any = None

    def compute(self, state):
        return jnp.sqrt(super().compute(state))


@dataclasses.dataclass(frozen=True)
class CosineSimilarity(PerSampleMean):
    """Keras' ``CosineSimilarity``: the weighted mean of ``sum(y/|y| * p/|p|, axis)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.
      axis: the axis of the vectors.

    Returns (``result``):
      The weighted mean cosine similarity, a scalar.
    """

    name: str = "cosine_similarity"
    dtype: Any = None
    axis: int = -1

    def values(self, y_true, y_pred):
        return cosine_similarity(y_true, y_pred, self.axis)


@dataclasses.dataclass(frozen=True)
class LogCoshError(PerSampleMean):
    """Keras' ``LogCoshError``: the weighted mean of ``mean(log(cosh(p - y)), -1)``.

    Args:
      name: the log name.
      dtype: the dtype of the totals.

    Returns (``result``):
      The weighted mean, a scalar.
    """

    name: str = "logcosh"
    dtype: Any = None

    def values(self, y_true, y_pred):
        return log_cosh(y_true, y_pred)


_AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")


@dataclasses.dataclass(frozen=True)
class R2Score(Metric):
    """Keras' ``R2Score``: the coefficient of determination of each output, from sums over the epoch.

    With per-output weighted sums ``S = sum w y``, ``Q = sum w y^2``, ``R = sum w (y - p)^2`` and
    ``n = sum w``:

        SS_tot = Q - S^2 / n        R2 = 1 - R / SS_tot

    (0 where that is infinite, as Keras). ``'uniform_average'`` averages the outputs' R2,
    ``'variance_weighted_average'`` weights them by ``SS_tot``, ``None`` returns one per output.
    With ``num_regressors = k > 0`` it is the adjusted ``1 - (1 - R2)(N - 1) / (N - k - 1)``,
    ``N`` the number of target values seen (rows times outputs, as Keras; padding rows
    excluded), unless ``k >= N - 1``.

    Args:
      class_aggregation: ``'uniform_average'``, ``'variance_weighted_average'`` or ``None``.
      num_regressors: the number of independent regressors ``k`` (0: plain R2).
      name: the log name.
      dtype: the dtype of the sums.

    Returns (``result``):
      A scalar, or one R2 per output with ``class_aggregation=None``.
    """

    class_aggregation: Optional[str] = "uniform_average"
    num_regressors: int = 0
    name: str = "r2_score"
    dtype: Any = None

    def __post_init__(self):
        super().__post_init__()
        if self.class_aggregation not in _AGGREGATIONS:
            raise ValueError(f"Invalid value for argument `class_aggregation`. Expected one of {_AGGREGATIONS}. "
                             f"Received: class_aggregation={self.class_aggregation}")
        if self.num_regressors < 0:
            raise ValueError(f"Invalid value for argument `num_regressors`. Expected a value >= 0. "
                             f"Received: num_regressors={self.num_regressors}")

    def init(self):
        """The sums, one per output; before the first batch one broadcasting column.

        Returns:
          ``{"sum", "squared_sum", "residual", "count"}`` of shape ``(1,)`` and a scalar ``"num_samples"``.
        """
        zeros = jnp.zeros((1,), self.dtype or jnp.float32)
        return {"sum": zeros, "squared_sum": zeros, "residual": zeros, "count": zeros,
                "num_samples": jnp.zeros((), self.dtype or jnp.float32)}

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None):
        y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), jnp.asarray(y_pred, jnp.float32), "R2Score")
        if y_pred.ndim != 2:
            raise ValueError(f"R2Score expects 2D inputs with shape (batch_size, output_dim). Received input "
                             f"shapes: y_pred.shape={y_pred.shape} and y_true.shape={y_true.shape}.")
        weight = row_weights(y_pred.shape[0], sample_weight, mask)
        real = broadcast_rows(row_weights(y_pred.shape[0], None, mask), y_pred.shape)
        found = {"sum": weighted(y_true, weight), "squared_sum": weighted(y_true * y_true, weight),
                 "residual": weighted(jnp.square(y_true - y_pred), weight),
                 "count": broadcast_rows(weight, y_pred.shape)}
        new = {k: state[k] + jnp.sum(v, axis=0).astype(state[k].dtype) for k, v in found.items()}
        new["num_samples"] = state["num_samples"] + jnp.sum(real).astype(state["num_samples"].dtype)
        return new

    def compute(self, state):
        mean = state["sum"] / state["count"]
        total = state["squared_sum"] - state["sum"] * mean
        scores = 1.0 - state["residual"] / total
        scores = jnp.where(jnp.isinf(scores), 0.0, scores)
        if self.class_aggregation == "uniform_average":
            score = jnp.mean(scores)
        elif self.class_aggregation == "variance_weighted_average":
            score = jnp.sum(total * scores) / jnp.sum(total)
        else:
            score = scores
        if self.num_regressors:
            n, k = state["num_samples"], float(self.num_regressors)
            adjusted = 1.0 - (1.0 - score) * (n - 1.0) / (n - k - 1.0)
            score = jnp.where(k < n - 1.0, adjusted, score)  # Keras falls back to plain R2 (with a warning)
        return score
