"""Reshaping layers, channels last (Keras ``ZeroPadding1D/2D/3D``, ``Cropping1D/2D/3D``,
``UpSampling1D/2D/3D``, ``RepeatVector``, ``Permute``). None has weights.

Padding and cropping act on the spatial axes (every axis but the batch and channel ones),
``(before, after)`` per axis: ``ZeroPadding`` adds that many zeros at each end, ``Cropping``
removes that many entries. ``UpSampling`` repeats each entry ``size`` times along each spatial
axis (nearest neighbour; ``UpSampling2D`` also resizes bilinearly).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp

from dlkit.layers.base import Layer, as_tuple
from dlkit.layers.convolutional import check_inputs

INTERPOLATIONS = ("nearest", "bilinear")


def end_pairs(value, rank: int, what: str) -> tuple:
    """Keras' padding or cropping amounts as ``rank`` pairs ``(before, after)``.

    Args:
      value: for ``rank == 1``, an int (both ends) or a pair ``(before, after)``; else an int (every end)
        or ``rank`` entries, each an int (both ends of its axis) or a pair.
      rank: the number of spatial axes.
      what: the argument's name, for the error.

    Returns:
      A tuple of ``rank`` pairs of non-negative ints.

    Raises:
      ValueError: for another structure, non-ints, or negative amounts.
    """
    def pair(v):
        return (v, v) if isinstance(v, int) and not isinstance(v, bool) else as_tuple(v, 2, what)
    if rank == 1:
        pairs = (pair(value),)
    elif isinstance(value, int) and not isinstance(value, bool):
        pairs = ((value, value),) * rank
    elif isinstance(value, (tuple, list)) and len(value) == rank:
        pairs = tuple(pair(v) for v in value)
    else:
        raise ValueError(f"{what} must be an int, or {rank} ints or (before, after) pairs, got {value!r}.")
    if any(v < 0 for p in pairs for v in p):
        raise ValueError(f"{what} must not be negative, got {value!r}.")
    return pairs


class _Spatial(Layer):
    """A layer on ``(batch, *spatial, channels)`` with ``rank`` spatial axes."""

    rank: ClassVar[int] = 2

    def _check(self, inputs):
        check_inputs(type(self).__name__, self.rank, getattr(self, "data_format", None), inputs)


class _ZeroPadding(_Spatial):
    def __post_init__(self):
        end_pairs(self.padding, self.rank, f"{type(self).__name__}(padding=...)")
        super().__post_init__()

    def call(self, inputs, training: bool = False):
        self._check(inputs)
        pads = end_pairs(self.padding, self.rank, "padding")
        return jnp.pad(inputs, ((0, 0), *pads, (0, 0)))


class _Cropping(_Spatial):
    def __post_init__(self):
        end_pairs(self.cropping, self.rank, f"{type(self).__name__}(cropping=...)")
        super().__post_init__()

    def call(self, inputs, training: bool = False):
        self._check(inputs)
        crops = end_pairs(self.cropping, self.rank, "cropping")
        sizes = inputs.shape[1:-1]
        if any(a + b >= n for (a, b), n in zip(crops, sizes)):
            raise ValueError(f"{type(self).__name__}: cropping {crops} leaves nothing of inputs of spatial shape "
                             f"{sizes}.")
        return inputs[(slice(None), *(slice(a, n - b) for (a, b), n in zip(crops, sizes)), slice(None))]


class _UpSampling(_Spatial):
    def __post_init__(self):
        as_tuple(self.size, self.rank, f"{type(self).__name__}(size=...)", positive=True)
        if getattr(self, "interpolation", "nearest") not in INTERPOLATIONS:
            raise ValueError(f"UpSampling2D(interpolation=...) must be one of {INTERPOLATIONS}, "
                             f"got {self.interpolation!r}.")
        super().__post_init__()

    def call(self, inputs, training: bool = False):
        self._check(inputs)
        size = as_tuple(self.size, self.rank, "size")
        if getattr(self, "interpolation", "nearest") == "bilinear":
            shape = (inputs.shape[0], *(n * s for n, s in zip(inputs.shape[1:-1], size)), inputs.shape[-1])
            return jax.image.resize(inputs, shape, "bilinear", antialias=False).astype(inputs.dtype)
        for axis, repeats in enumerate(size, start=1):
            inputs = jnp.repeat(inputs, repeats, axis=axis)
        return inputs


class ZeroPadding1D(_ZeroPadding):
    """Keras' ``ZeroPadding1D``: zeros at the start and end of the steps axis of ``(batch, steps, channels)``.

    Args:
        padding: An int (both ends) or a pair ``(start, end)``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, start + steps + end, channels)``.

    Raises:
        ValueError: A bad or negative ``padding`` (when the layer is made), or inputs of another rank.
    """

    padding: Any = 1
    rank: ClassVar[int] = 1
    keras_name: ClassVar[str] = "zero_padding1d"


class ZeroPadding2D(_ZeroPadding):
    """Keras' ``ZeroPadding2D``: rows of zeros above and below, columns of zeros left and right.

    Args:
        padding: An int (every side), a pair ``(rows, cols)`` (each at both ends), or
            ``((top, bottom), (left, right))``.
        data_format: ``None`` or ``'channels_last'`` only.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, top + rows + bottom, left + cols + right, channels)``.

    Raises:
        ValueError: A bad or negative ``padding`` (when the layer is made), another ``data_format``,
            or inputs of another rank.
    """

    padding: Any = (1, 1)
    data_format: Optional[str] = None
    rank: ClassVar[int] = 2
    keras_name: ClassVar[str] = "zero_padding2d"


class ZeroPadding3D(_ZeroPadding):
    """Keras' ``ZeroPadding3D``: zeros at both ends of each of the three spatial axes.

    Args:
        padding: An int (every end), three ints (each at both ends of its axis), or three pairs
            ``((before1, after1), (before2, after2), (before3, after3))``.
        data_format: ``None`` or ``'channels_last'`` only.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, before1 + d1 + after1, before2 + d2 + after2, before3 + d3 + after3, channels)``.

    Raises:
        ValueError: A bad or negative ``padding`` (when the layer is made), another ``data_format``,
            or inputs of another rank.
    """

    padding: Any = ((1, 1), (1, 1), (1, 1))
    data_format: Optional[str] = None
    rank: ClassVar[int] = 3
    keras_name: ClassVar[str] = "zero_padding3d"


class Cropping1D(_Cropping):
    """Keras' ``Cropping1D``: drop steps at the start and end of ``(batch, steps, channels)``.

    Args:
        cropping: An int (both ends) or a pair ``(start, end)``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, steps - start - end, channels)``.

    Raises:
        ValueError: A bad or negative ``cropping`` (when made), inputs of another rank, or nothing left.
    """

    cropping: Any = (1, 1)
    rank: ClassVar[int] = 1
    keras_name: ClassVar[str] = "cropping1d"


class Cropping2D(_Cropping):
    """Keras' ``Cropping2D``: drop rows at the top and bottom, columns at the left and right.

    Args:
        cropping: An int (every side), a pair ``(rows, cols)`` (each at both ends), or
            ``((top, bottom), (left, right))``.
        data_format: ``None`` or ``'channels_last'`` only.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, rows - top - bottom, cols - left - right, channels)``.

    Raises:
        ValueError: A bad or negative ``cropping`` (when the layer is made), another ``data_format``,
            inputs of another rank, or a cropping that leaves nothing.
    """

    cropping: Any = ((0, 0), (0, 0))
    data_format: Optional[str] = None
    rank: ClassVar[int] = 2
    keras_name: ClassVar[str] = "cropping2d"


class Cropping3D(_Cropping):
    """Keras' ``Cropping3D``: drop entries at both ends of each of the three spatial axes.

    Args:
        cropping: An int (every end), three ints (each at both ends of its axis), or three pairs
            ``((before1, after1), (before2, after2), (before3, after3))``.
        data_format: ``None`` or ``'channels_last'`` only.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, d1 - before1 - after1, d2 - before2 - after2, d3 - before3 - after3, channels)``.

    Raises:
        ValueError: A bad or negative ``cropping`` (when the layer is made), another ``data_format``,
            inputs of another rank, or a cropping that leaves nothing.
    """

    cropping: Any = ((1, 1), (1, 1), (1, 1))
    data_format: Optional[str] = None
    rank: ClassVar[int] = 3
    keras_name: ClassVar[str] = "cropping3d"


class UpSampling1D(_UpSampling):
    """Keras' ``UpSampling1D``: repeat each step of ``(batch, steps, features)`` ``size`` times.

    Args:
        size: The upsampling factor (default 2).
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, features)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, steps * size, features)``.

    Raises:
        ValueError: A non-positive ``size`` (when the layer is made), or inputs of another rank.
    """

    size: Any = 2
    rank: ClassVar[int] = 1
    keras_name: ClassVar[str] = "up_sampling1d"


class UpSampling2D(_UpSampling):
    """Keras' ``UpSampling2D``: repeat each row ``size[0]`` times and each column ``size[1]`` times
    (``'nearest'``), or resize bilinearly to that size (``'bilinear'``, half-pixel centres), channels last.

    Args:
        size: Upsampling factors ``(rows, cols)``, or one int for both (default ``(2, 2)``).
        data_format: ``None`` or ``'channels_last'`` only.
        interpolation: ``'nearest'`` (default) or ``'bilinear'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, rows * size[0], cols * size[1], channels)``.

    Raises:
        ValueError: A non-positive ``size`` or an unknown ``interpolation`` (when the layer is made),
            another ``data_format``, or inputs of another rank.
    """

    size: Any = (2, 2)
    data_format: Optional[str] = None
    interpolation: str = "nearest"
    rank: ClassVar[int] = 2
    keras_name: ClassVar[str] = "up_sampling2d"


class UpSampling3D(_UpSampling):
    """Keras' ``UpSampling3D``: repeat each entry ``size[i]`` times along spatial axis ``i``, channels last.

    Args:
        size: Upsampling factors ``(s1, s2, s3)``, or one int for all three (default ``(2, 2, 2)``).
        data_format: ``None`` or ``'channels_last'`` only.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, d1 * s1, d2 * s2, d3 * s3, channels)``.

    Raises:
        ValueError: A non-positive ``size`` (when the layer is made), another ``data_format``, or another rank.
    """

    size: Any = (2, 2, 2)
    data_format: Optional[str] = None
    rank: ClassVar[int] = 3
    keras_name: ClassVar[str] = "up_sampling3d"


class RepeatVector(Layer):
    """Keras' ``RepeatVector``: ``(batch, features) -> (batch, n, features)``, the input repeated ``n``
    times (an encoder's summary fed to every step of a decoder).

    Args:
        n: How many times to repeat.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, features)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, n, features)``.

    Raises:
        ValueError: A non-positive ``n`` (when the layer is made), or inputs not of rank 2.
    """

    n: int
    keras_name: ClassVar[str] = "repeat_vector"
    positive_arguments: ClassVar[tuple] = ("n",)

    def call(self, inputs, training: bool = False):
        if inputs.ndim != 2:
            raise ValueError(f"RepeatVector expects inputs (batch, features), got shape {inputs.shape}.")
        return jnp.repeat(inputs[:, None, :], self.n, axis=1)


class Permute(Layer):
    """Keras' ``Permute``: reorder the axes of each sample, ``y.shape[i] = x.shape[dims[i - 1]]``
    (axes numbered from 1; the batch axis stays first).

    Args:
        dims: A permutation of ``1, ..., rank``, e.g. ``(2, 1)`` swaps the two axes of a sample.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, ..., d_rank)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, d_dims[0], ..., d_dims[rank - 1])``.

    Raises:
        ValueError: ``dims`` is not a permutation of ``1, ..., rank`` (when the layer is made), or
            inputs of another rank.
    """

    dims: Sequence[int]
    keras_name: ClassVar[str] = "permute"

    def __post_init__(self):
        if not isinstance(self.dims, (tuple, list)) or sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Permute(dims=...) must be a permutation of 1, ..., rank (the batch axis is 0 and "
                             f"stays first), got {self.dims!r}.")
        super().__post_init__()

    def call(self, inputs, training: bool = False):
        if inputs.ndim != len(self.dims) + 1:
            raise ValueError(f"Permute(dims={tuple(self.dims)}) expects inputs of rank {len(self.dims) + 1}, "
                             f"got shape {inputs.shape}.")
        return jnp.transpose(inputs, (0, *self.dims))
