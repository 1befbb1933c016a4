"""Max, average and global pooling over 1, 2 or 3 spatial axes, channels last.

``strides`` defaults to ``pool_size``. Average pooling with ``padding='same'``
divides each window's sum by the number of real (unpadded) inputs in it, as
Keras does.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import jax.numpy as jnp
from jax import lax

from dlkit.layers.base import Layer, as_float, as_tuple
from dlkit.layers.convolutional import check_window, padding_mode


class _Pooling(Layer):
    pool_size: Any = 2
    strides: Any = None
    padding: str = "valid"
    rank: ClassVar[int] = 2
    reduce: ClassVar[str] = "max"
    positive_arguments: ClassVar[tuple] = ("pool_size", "strides")

    def call(self, inputs, training: bool = False):
        if inputs.ndim != self.rank + 2:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank {self.rank + 2}, got shape {inputs.shape}."
            )
        window = (1, *as_tuple(self.pool_size, self.rank, "pool_size"), 1)
        strides = window if self.strides is None else (1, *as_tuple(self.strides, self.rank, "strides"), 1)
        padding = padding_mode(self.padding)
        check_window(type(self).__name__, inputs.shape[1:-1], window[1:-1], (1,) * self.rank, padding)
        inputs = as_float(inputs, self.compute_dtype)
        if self.reduce == "max":
            return lax.reduce_window(inputs, -jnp.inf, lax.max, window, strides, padding)
        total = lax.reduce_window(inputs, 0.0, lax.add, window, strides, padding)
        if padding == "VALID":
            return total / math.prod(window)
        ones = jnp.ones((1, *inputs.shape[1:-1], 1), inputs.dtype)
        counts = lax.reduce_window(ones, 0.0, lax.add, window, strides, padding)
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
    """Keras' ``MaxPooling1D``: the maximum of each ``pool_size`` window over steps.

    Output size per axis: ``floor((size - pool) / stride) + 1`` (``'valid'``) or ``ceil(size / stride)`` (``'same'``).

    Args:
        pool_size: Window size, an int or a 1-tuple (default 2).
        strides: Step between windows, same form; ``None`` (default): ``pool_size``.
        padding: ``'valid'`` or ``'same'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_steps, channels)``.

    Raises:
        ValueError: ``inputs`` has another rank, or a bad ``pool_size``/``strides``/``padding``.
    """
    rank, reduce, keras_name = 1, "max", "max_pooling1d"


class MaxPooling2D(_Pooling):
    """Keras' ``MaxPooling2D``: the maximum of each ``pool_size`` window over rows and columns.

    Output size per axis: ``floor((size - pool) / stride) + 1`` (``'valid'``) or ``ceil(size / stride)`` (``'same'``).

    Args:
        pool_size: Window size, ``(rows, cols)`` or one int for both (default 2).
        strides: Step between windows, same form; ``None`` (default): ``pool_size``.
        padding: ``'valid'`` or ``'same'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_rows, new_cols, channels)``.

    Raises:
        ValueError: ``inputs`` has another rank, or a bad ``pool_size``/``strides``/``padding``.
    """
    rank, reduce, keras_name = 2, "max", "max_pooling2d"


class MaxPooling3D(_Pooling):
    """Keras' ``MaxPooling3D``: the maximum of each ``pool_size`` window over the three spatial axes.

    Output size per axis: ``floor((size - pool) / stride) + 1`` (``'valid'``) or ``ceil(size / stride)`` (``'same'``).

    Args:
        pool_size: Window size, a 3-tuple or one int for all three (default 2).
        strides: Step between windows, same form; ``None`` (default): ``pool_size``.
        padding: ``'valid'`` or ``'same'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_d1, new_d2, new_d3, channels)``.

    Raises:
        ValueError: ``inputs`` has another rank, or a bad ``pool_size``/``strides``/``padding``.
    """
    rank, reduce, keras_name = 3, "max", "max_pooling3d"


class AveragePooling1D(_Pooling):
    """Keras' ``AveragePooling1D``: the mean of each ``pool_size`` window over steps.

    Output size per axis: ``floor((size - pool) / stride) + 1`` (``'valid'``) or ``ceil(size / stride)``
    (``'same'``, where the mean is over the window's real, unpadded inputs only).

    Args:
        pool_size: Window size, an int or a 1-tuple (default 2).
        strides: Step between windows, same form; ``None`` (default): ``pool_size``.
        padding: ``'valid'`` or ``'same'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_steps, channels)``.

    Raises:
        ValueError: ``inputs`` has another rank, or a bad ``pool_size``/``strides``/``padding``.
    """
    rank, reduce, keras_name = 1, "mean", "average_pooling1d"


class AveragePooling2D(_Pooling):
    """Keras' ``AveragePooling2D``: the mean of each ``pool_size`` window over rows and columns.

    Output size per axis: ``floor((size - pool) / stride) + 1`` (``'valid'``) or ``ceil(size / stride)``
    (``'same'``, where the mean is over the window's real, unpadded inputs only).

    Args:
        pool_size: Window size, ``(rows, cols)`` or one int for both (default 2).
        strides: Step between windows, same form; ``None`` (default): ``pool_size``.
        padding: ``'valid'`` or ``'same'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_rows, new_cols, channels)``.

    Raises:
        ValueError: ``inputs`` has another rank, or a bad ``pool_size``/``strides``/``padding``.
    """
    rank, reduce, keras_name = 2, "mean", "average_pooling2d"


class AveragePooling3D(_Pooling):
    """Keras' ``AveragePooling3D``: the mean of each ``pool_size`` window over the three spatial axes.

    Output size per axis: ``floor((size - pool) / stride) + 1`` (``'valid'``) or ``ceil(size / stride)``
    (``'same'``, where the mean is over the window's real, unpadded inputs only).

    Args:
        pool_size: Window size, a 3-tuple or one int for all three (default 2).
        strides: Step between windows, same form; ``None`` (default): ``pool_size``.
        padding: ``'valid'`` or ``'same'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_d1, new_d2, new_d3, channels)``.

    Raises:
        ValueError: ``inputs`` has another rank, or a bad ``pool_size``/``strides``/``padding``.
    """
    rank, reduce, keras_name = 3, "mean", "average_pooling3d"


class GlobalMaxPooling1D(_GlobalPooling):
    """Keras' ``GlobalMaxPooling1D``: the maximum over every spatial position, per sample and channel.

    Args:
        keepdims: Keep the spatial axes with size 1.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, channels)``, or ``(batch, 1, channels)`` with ``keepdims``.
    """
    rank, reduce, keras_name = 1, "max", "global_max_pooling1d"


class GlobalMaxPooling2D(_GlobalPooling):
    """Keras' ``GlobalMaxPooling2D``: the maximum over every spatial position, per sample and channel.

    Args:
        keepdims: Keep the spatial axes with size 1.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, channels)``, or ``(batch, 1, 1, channels)`` with ``keepdims``.
    """
    rank, reduce, keras_name = 2, "max", "global_max_pooling2d"


class GlobalMaxPooling3D(_GlobalPooling):
    """Keras' ``GlobalMaxPooling3D``: the maximum over every spatial position, per sample and channel.

    Args:
        keepdims: Keep the spatial axes with size 1.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, channels)``, or ``(batch, 1, 1, 1, channels)`` with ``keepdims``.
    """
    rank, reduce, keras_name = 3, "max", "global_max_pooling3d"


class GlobalAveragePooling1D(_GlobalPooling):
    """Keras' ``GlobalAveragePooling1D``: the mean over every spatial position, per sample and channel.

    With a ``mask`` (an ``Embedding(mask_zero=True)``'s, passed on by the model) the mean is over
    the real steps only, ``sum_t m_t x_t / sum_t m_t``, as in Keras (all steps masked: NaN).

    Args:
        keepdims: Keep the spatial axes with size 1.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Unused; Keras' flag.
        mask: Optional ``(batch, steps)`` booleans, False at padded steps.

    Returns:
        Array ``(batch, channels)``, or ``(batch, 1, channels)`` with ``keepdims``.
    """
    rank, reduce, keras_name = 1, "mean", "global_average_pooling1d"

    def call(self, inputs, training: bool = False, mask=None):
        if mask is None:
            return super().call(inputs, training)
        keep = jnp.expand_dims(jnp.asarray(mask).astype(bool), -1)
        inputs = as_float(jnp.asarray(inputs), self.compute_dtype)
        total = jnp.sum(jnp.where(keep, inputs, 0.0), axis=1, keepdims=self.keepdims)
        return total / jnp.sum(keep.astype(inputs.dtype), axis=1, keepdims=self.keepdims)


class GlobalAveragePooling2D(_GlobalPooling):
    """Keras' ``GlobalAveragePooling2D``: the mean over every spatial position, per sample and channel.

    Args:
        keepdims: Keep the spatial axes with size 1.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, channels)``, or ``(batch, 1, 1, channels)`` with ``keepdims``.
    """
    rank, reduce, keras_name = 2, "mean", "global_average_pooling2d"


class GlobalAveragePooling3D(_GlobalPooling):
    """Keras' ``GlobalAveragePooling3D``: the mean over every spatial position, per sample and channel.

    Args:
        keepdims: Keep the spatial axes with size 1.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, channels)``, or ``(batch, 1, 1, 1, channels)`` with ``keepdims``.
    """
    rank, reduce, keras_name = 3, "mean", "global_average_pooling3d"
