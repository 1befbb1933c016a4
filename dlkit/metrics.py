"""Metrics with Keras names. Each returns one value per sample; the loop averages
them over every sample of an epoch (the last short batch included), so an
epoch's value is exact.

* ``binary_accuracy = mean(y_true == (y_pred > threshold), axis=-1)``
* ``categorical_accuracy = argmax(y_true) == argmax(y_pred)``
* ``sparse_categorical_accuracy = y_true == argmax(y_pred)``

``'accuracy'``/``'acc'`` resolve to one of these from the loss and the shapes,
as in Keras; logs keep the name the user wrote.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp

from dlkit import losses
from dlkit._registry import lookup


def binary_accuracy(y_true, y_pred, threshold: float = 0.5):
    y_true, y_pred = losses.match_ranks(y_true, y_pred, "binary_accuracy")
    return jnp.mean((y_true > 0.5) == (y_pred > threshold), axis=-1).astype(jnp.float32)


def categorical_accuracy(y_true, y_pred):
    return (jnp.argmax(y_true, axis=-1) == jnp.argmax(y_pred, axis=-1)).astype(jnp.float32)


def sparse_categorical_accuracy(y_true, y_pred):
    if y_true.ndim == y_pred.ndim:
        y_true = y_true[..., 0]
    return (y_true.astype(jnp.int32) == jnp.argmax(y_pred, axis=-1)).astype(jnp.float32)


mean_squared_error = losses.mean_squared_error
mean_absolute_error = losses.mean_absolute_error


@dataclasses.dataclass(frozen=True)
class Metric:
    """A named per-sample metric function."""

    name: str
    fn: Callable

    def __call__(self, y_true, y_pred):
        values = self.fn(y_true, y_pred)
        return values.reshape(values.shape[0], -1).mean(axis=-1) if values.ndim else values


def BinaryAccuracy(name: str = "binary_accuracy", threshold: float = 0.5) -> Metric:  # noqa: N802 - Keras name
    return Metric(name, lambda t, p: binary_accuracy(t, p, threshold))


def CategoricalAccuracy(name: str = "categorical_accuracy") -> Metric:  # noqa: N802
    return Metric(name, categorical_accuracy)


def SparseCategoricalAccuracy(name: str = "sparse_categorical_accuracy") -> Metric:  # noqa: N802
    return Metric(name, sparse_categorical_accuracy)


_METRICS = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mse": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mae": mean_absolute_error,
    "accuracy": None,
    "acc": None,
}


def _accuracy_for(loss: losses.Loss, y_true_shape: tuple, y_pred_shape: tuple) -> Callable:
    """Keras' resolution of ``'accuracy'``; a from-logits binary loss thresholds at 0."""
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        return sparse_categorical_accuracy
    if isinstance(loss, losses.CategoricalCrossentropy):
        return categorical_accuracy
    if isinstance(loss, losses.BinaryCrossentropy):
        return lambda t, p: binary_accuracy(t, p, 0.0 if loss.from_logits else 0.5)
    if y_pred_shape[-1:] == (1,) or len(y_pred_shape) == 1:
        return binary_accuracy
    if tuple(y_true_shape) == tuple(y_pred_shape):
        return categorical_accuracy
    return sparse_categorical_accuracy


def get(identifier, loss: losses.Loss, y_true_shape: tuple, y_pred_shape: tuple) -> Metric:
    """Resolve a metric name, ``Metric`` or function ``(y_true, y_pred)`` for the given loss and shapes."""
    if isinstance(identifier, Metric):
        return identifier
    fn = lookup("metric", identifier, _METRICS)
    if fn is None:
        fn = _accuracy_for(loss, y_true_shape, y_pred_shape)
    name = identifier if isinstance(identifier, str) else getattr(identifier, "__name__", "metric")
    return Metric(name, fn)
