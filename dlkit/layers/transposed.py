"""Transposed convolutions over 1, 2 or 3 spatial axes, channels last (Keras ``Conv1DTranspose``,
``Conv2DTranspose``, ``Conv3DTranspose``).

A transposed convolution is the gradient of the convolution with respect to its input: it
upsamples by ``strides``. It is computed as a convolution of the stride-dilated input
(``strides - 1`` zeros between samples) with the spatially flipped kernel, padded so that
each spatial axis has Keras' size,

* ``'same'``: ``in * stride``, or ``(in - 1) * stride + k % 2 + output_padding``;
* ``'valid'``: ``(in - 1) * stride + max(k, stride)``, or ``(in - 1) * stride + k + output_padding``,

where ``k = (kernel - 1) * dilation + 1`` is the dilated kernel's span. The kernel has Keras'
layout ``(*kernel_size, filters, in_channels)``.
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
from jax import lax

from dlkit.layers.base import WeightedLayer, as_float, as_tuple
from dlkit.layers.convolutional import _DIMENSIONS, check_inputs, check_sizes, padding_mode


def transpose_padding(kernel: int, stride: int, padding: str, dilation: int = 1,
                      output_padding: Optional[int] = None) -> tuple:
    """Pads ``(before, after)`` of the stride-dilated input for a transposed convolution, chosen
    so that the output has Keras' length (module docstring).

    Args:
        kernel: Kernel size along the axis.
        stride: Stride along the axis.
        padding: ``'valid'`` or ``'same'``.
        dilation: Dilation of the kernel along the axis.
        output_padding: Extra rows at the end of the output along the axis, or ``None`` (Keras' default size).

    Returns:
        The pair ``(before, after)`` of pad sizes.

    Raises:
        ValueError: ``padding`` is not ``'valid'`` or ``'same'``.
    """
    span = (kernel - 1) * dilation + 1
    if padding_mode(padding) == "VALID":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return span - 1, span - 1 + extra
    total = stride + span - 2 if output_padding is None else span + span % 2 - 2 + output_padding
    before = min(total // 2 + total % 2, span - 1)
    return before, total - before


def _dilated_conv(x, kernel, strides: tuple, padding: tuple, dilation: Optional[tuple] = None):
    return lax.conv_general_dilated(x, kernel, (1,) * len(strides), padding, lhs_dilation=strides,
                                    rhs_dilation=dilation, dimension_numbers=_DIMENSIONS[x.ndim - 2])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def transposed_conv(x, kernel, strides: tuple, padding: tuple, dilation: Optional[tuple] = None):
    """``x`` dilated by ``strides``, convolved with ``kernel`` (spatial axes, in, out; flipped by the caller).

    Its kernel gradient is taken through the adjoint ``dy -> dx``, a plain strided convolution:
    ``<transposed_conv(x, k), dy> = <x, adjoint_k(dy)>``, so ``d/dk`` is the kernel gradient of
    that convolution, which XLA's CPU backend runs 16x faster than the dilated form's.

    Args:
        x: Input ``(batch, *spatial, in_channels)`` with 1, 2 or 3 spatial axes.
        kernel: Kernel ``(*kernel_size, in_channels, filters)``, already flipped.
        strides: Input dilation per spatial axis (static).
        padding: ``(before, after)`` pads of the dilated input per spatial axis (static).
        dilation: Kernel dilation per spatial axis (static), or ``None`` for none.

    Returns:
        Array ``(batch, *new_spatial, filters)``.
    """
    return _dilated_conv(x, kernel, strides, padding, dilation)


def _transposed_conv_fwd(x, kernel, strides, padding, dilation):
    return _dilated_conv(x, kernel, strides, padding, dilation), (x, kernel)


def _transposed_conv_bwd(strides, padding, dilation, residuals, dy):
    x, kernel = residuals
    adjoint = lambda k: jax.linear_transpose(  # noqa: E731
        lambda v: _dilated_conv(v, k, strides, padding, dilation), x)(dy)[0]
    dx, pull = jax.vjp(adjoint, kernel)
    return dx, pull(x)[0]


transposed_conv.defvjp(_transposed_conv_fwd, _transposed_conv_bwd)


class _ConvTranspose(WeightedLayer):
    filters: int
    kernel_size: Any
    strides: Any = 1
    padding: str = "valid"
    output_padding: Any = None
    data_format: Optional[str] = None
    dilation_rate: Any = 1
    activation: Any = None
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    kernel_regularizer: Any = None
    bias_regularizer: Any = None
    activity_regularizer: Any = None
    rank: ClassVar[int] = 2
    positive_arguments: ClassVar[tuple] = ("filters", "kernel_size", "strides", "dilation_rate")

    def __post_init__(self):
        padding_mode(self.padding)
        check_sizes(self)
        _output_padding(self.output_padding, self.strides, self.rank)
        super().__post_init__()

    @nn.compact
    def call(self, inputs, training: bool = False):
        check_inputs(type(self).__name__, self.rank, self.data_format, inputs)
        kernel_size = as_tuple(self.kernel_size, self.rank, "kernel_size")
        strides = as_tuple(self.strides, self.rank, "strides")
        dilation = as_tuple(self.dilation_rate, self.rank, "dilation_rate")
        extra = _output_padding(self.output_padding, self.strides, self.rank)
        inputs = as_float(inputs, self.compute_dtype)
        kernel, bias = self._weights((*kernel_size, self.filters, inputs.shape[-1]), self.filters)
        padding = tuple(transpose_padding(k, s, self.padding, d, e)
                        for k, s, d, e in zip(kernel_size, strides, dilation, extra))
        flipped = kernel[(slice(None, None, -1),) * self.rank].swapaxes(-2, -1)
        y = transposed_conv(inputs, flipped, strides, padding, dilation)
        return self._output(y, bias)


def _output_padding(value, strides, rank: int) -> tuple:
    """Keras' ``output_padding``: ``None`` per axis, or non-negative ints each below its stride."""
    if value is None:
        return (None,) * rank
    value = as_tuple(value, rank, "output_padding")
    if any(not 0 <= p < s for p, s in zip(value, as_tuple(strides, rank, "strides"))):
        raise ValueError(f"output_padding must be non-negative and strictly less than the strides along each "
                         f"axis, got output_padding={value!r} with strides={strides!r}.")
    return value


class Conv1DTranspose(_ConvTranspose):
    """Keras' ``Conv1DTranspose``: transposed 1-D convolution, the gradient of ``Conv1D`` with respect
    to its input; it upsamples ``(batch, steps, channels)`` by ``strides`` (output sizes in the module docstring).

    Args:
        filters: Number of output channels.
        kernel_size: Window, an int or a 1-tuple.
        strides: Upsampling factor, an int or a 1-tuple.
        padding: ``'valid'`` or ``'same'``.
        output_padding: Extra output size at the end of the steps axis, an int or a 1-tuple (below the stride),
            or ``None`` (default) for Keras' default sizes.
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a 1-tuple.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(filters,)``.
        kernel_initializer: Initializer of ``kernel`` ``(kernel_size, filters, channels)`` (default Glorot uniform).
        bias_initializer: Initializer of ``bias``.
        kernel_regularizer: Penalty on ``kernel`` added to the loss, or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size, or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_steps, filters)``.

    Raises:
        ValueError: A bad ``padding`` or ``output_padding`` (when the layer is made), another
            ``data_format``, an input of the wrong rank, or a bad ``kernel_size``/``strides``/``dilation_rate``.
    """

    rank: ClassVar[int] = 1
    keras_name: ClassVar[str] = "conv1d_transpose"


class Conv2DTranspose(_ConvTranspose):
    """Keras' ``Conv2DTranspose``: transposed 2-D convolution, the gradient of ``Conv2D`` with respect
    to its input; it upsamples ``(batch, rows, cols, channels)`` by ``strides`` (output sizes in the module docstring).

    Args:
        filters: Number of output channels.
        kernel_size: Window ``(rows, cols)``, or one int for both.
        strides: Upsampling factor ``(rows, cols)``, or one int for both.
        padding: ``'valid'`` or ``'same'``.
        output_padding: Extra output size at the end of each axis, an int or a pair (below the stride),
            or ``None`` (default) for Keras' default sizes.
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a pair.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(filters,)``.
        kernel_initializer: Initializer of ``kernel`` ``(*kernel_size, filters, channels)`` (Glorot uniform).
        bias_initializer: Initializer of ``bias``.
        kernel_regularizer: Penalty on ``kernel`` added to the loss, or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size, or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_rows, new_cols, filters)``.

    Raises:
        ValueError: A bad ``padding`` or ``output_padding`` (when the layer is made), another
            ``data_format``, an input of the wrong rank, or a bad ``kernel_size``/``strides``/``dilation_rate``.
    """

    rank: ClassVar[int] = 2
    keras_name: ClassVar[str] = "conv2d_transpose"


class Conv3DTranspose(_ConvTranspose):
    """Keras' ``Conv3DTranspose``: transposed 3-D convolution, the gradient of ``Conv3D`` with respect
    to its input; it upsamples ``(batch, d1, d2, d3, channels)`` by ``strides`` (output sizes in the module docstring).

    Args:
        filters: Number of output channels.
        kernel_size: Window ``(k1, k2, k3)``, or one int for all three.
        strides: Upsampling factor per axis, an int or a 3-tuple.
        padding: ``'valid'`` or ``'same'``.
        output_padding: Extra output size at the end of each axis, an int or a 3-tuple (below the stride),
            or ``None`` (default) for Keras' default sizes.
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a 3-tuple.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(filters,)``.
        kernel_initializer: Initializer of ``kernel`` ``(*kernel_size, filters, channels)`` (Glorot uniform).
        bias_initializer: Initializer of ``bias``.
        kernel_regularizer: Penalty on ``kernel`` added to the loss, or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size, or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_d1, new_d2, new_d3, filters)``.

    Raises:
        ValueError: A bad ``padding`` or ``output_padding`` (when the layer is made), another
            ``data_format``, an input of the wrong rank, or a bad ``kernel_size``/``strides``/``dilation_rate``.
    """

    rank: ClassVar[int] = 3
    keras_name: ClassVar[str] = "conv3d_transpose"
