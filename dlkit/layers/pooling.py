"""Max, average and global pooling over 1, 2 or 3 spatial axes, channels last.

``strides`` defaults to ``pool_size``. Average pooling with ``padding='same'``
divides each window's sum by the number of real (unpadded) inputs in it, as
Keras does.
"""
from __future__ import annotations

from typing import Any, ClassVar

import math

import jax.numpy as jnp
from jax import lax

from dlkit.layers.base import Layer, as_tuple
from dlkit.layers.convolutional import padding_mode


class _Pooling(Layer):
    pool_size: Any = 2
    strides: Any = None
    padding: str = "valid"
    rank: ClassVar[int] = 2
    reduce: ClassVar[str] = "max"

    def call(self, inputs, training: bool = False):
        if inputs.ndim != self.rank + 2:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank {self.rank + 2}, got shape {inputs.shape}."
            )
        window = (1, *as_tuple(self.pool_size, self.rank, "pool_size"), 1)
        strides = window if self.strides is None else (1, *as_tuple(self.strides, self.rank, "strides"), 1)
        padding = padding_mode(self.padding)
        if self.reduce == "max":
            return lax.reduce_window(inputs, -jnp.inf, lax.max, window, strides, padding)
        total = lax.reduce_window(inputs, 0.0, lax.add, window, strides, padding)
        if padding == "VALID":
            return total / math.prod(window)
        counts = lax.reduce_window(jnp.ones((1, *inputs.shape[1:-1], 1), inputs.dtype), 0.0, lax.add, window, strides, padding)
        return total / counts


class _GlobalPooling(Layer):
    keepdims: bool = False
    rank: ClassVar[int] = 2
    reduce: ClassVar[str] = "max"

    def call(self, inputs, training: bool = False):
        axes = tuple(range(1, self.rank + 1))
        op = jnp.max if self.reduce == "max" else jnp.mean
        return op(inputs, axis=axes, keepdims=self.keepdims)


class MaxPooling1D(_Pooling):
    """Max over windows of ``pool_size`` steps."""
    rank, reduce, keras_name = 1, "max", "max_pooling1d"


class MaxPooling2D(_Pooling):
    """Max over ``pool_size`` windows of rows and columns."""
    rank, reduce, keras_name = 2, "max", "max_pooling2d"


class MaxPooling3D(_Pooling):
    """Max over ``pool_size`` windows of three spatial axes."""
    rank, reduce, keras_name = 3, "max", "max_pooling3d"


class AveragePooling1D(_Pooling):
    """Mean over windows of ``pool_size`` steps."""
    rank, reduce, keras_name = 1, "mean", "average_pooling1d"


class AveragePooling2D(_Pooling):
    """Mean over ``pool_size`` windows of rows and columns."""
    rank, reduce, keras_name = 2, "mean", "average_pooling2d"


class AveragePooling3D(_Pooling):
    """Mean over ``pool_size`` windows of three spatial axes."""
    rank, reduce, keras_name = 3, "mean", "average_pooling3d"


class GlobalMaxPooling1D(_GlobalPooling):
    """Max over all steps: ``(batch, steps, c) -> (batch, c)``."""
    rank, reduce, keras_name = 1, "max", "global_max_pooling1d"


class GlobalMaxPooling2D(_GlobalPooling):
    """Max over all positions: ``(batch, h, w, c) -> (batch, c)``."""
    rank, reduce, keras_name = 2, "max", "global_max_pooling2d"


class GlobalMaxPooling3D(_GlobalPooling):
    """Max over all positions of a volume."""
    rank, reduce, keras_name = 3, "max", "global_max_pooling3d"


class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over all steps."""
    rank, reduce, keras_name = 1, "mean", "global_average_pooling1d"


class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over all positions: ``(batch, h, w, c) -> (batch, c)``."""
    rank, reduce, keras_name = 2, "mean", "global_average_pooling2d"


class GlobalAveragePooling3D(_GlobalPooling):
    """Mean over all positions of a volume."""
    rank, reduce, keras_name = 3, "mean", "global_average_pooling3d"
