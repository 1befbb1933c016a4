"""Convolutions over 1, 2 or 3 spatial axes, channels last (Keras ``Conv1D/2D/3D``, ``Conv2DTranspose``).

``y[n, p, o] = activation(sum_{k, i} x[n, p * s + k * d, i] * kernel[k, i, o] + bias[o])``
with stride ``s`` and dilation ``d``; ``padding='same'`` pads as TensorFlow does
(output size ``ceil(in / s)``, the extra pad at the end), ``'valid'`` not at all.
The kernel has Keras' layout ``(*kernel_size, in_channels // groups, filters)``.
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
from jax import lax

from dlkit.layers.base import WeightedLayer, as_float, as_tuple

_DIMENSIONS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def padding_mode(padding: str) -> str:
    """Validate Keras' padding name and return lax's spelling.

    Args:
        padding: ``'valid'`` or ``'same'`` (any case).

    Returns:
        ``'VALID'`` or ``'SAME'``.

    Raises:
        ValueError: ``padding`` is anything else (Keras' ``'causal'`` included).
    """
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
    return padding.upper()


def check_window(layer: str, spatial: tuple, window: tuple, dilation: tuple, padding: str) -> None:
    """With ``padding='valid'``, each window must fit its input (Keras raises; XLA would give an
    empty output and a division by zero further on).

    Args:
      layer: the layer's name, for the message.
      spatial: the input's spatial sizes.
      window: the kernel or pool size per spatial axis.
      dilation: the dilation per axis (1 for pooling).
      padding: lax's padding, ``'VALID'`` or ``'SAME'``.

    Raises:
      ValueError: a (dilated) window larger than its input, naming both sizes.
    """
    span = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    if padding == "VALID" and any(s < k for s, k in zip(spatial, span)):
        raise ValueError(f"{layer}: its window {'x'.join(map(str, span))} is larger than its input "
                         f"{'x'.join(map(str, spatial))} (padding='valid'). Use a smaller window, "
                         f"padding='same', or larger inputs.")


class _Conv(WeightedLayer):
    filters: int
    kernel_size: Any
    strides: Any = 1
    padding: str = "valid"
    data_format: Optional[str] = None
    dilation_rate: Any = 1
    groups: int = 1
    activation: Any = None
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    kernel_regularizer: Any = None
    bias_regularizer: Any = None
    activity_regularizer: Any = None
    rank: ClassVar[int] = 2
    positive_arguments: ClassVar[tuple] = ("filters", "kernel_size", "strides", "dilation_rate", "groups")

    @nn.compact
    def call(self, inputs, training: bool = False):
        name = type(self).__name__
        if self.data_format not in (None, "channels_last"):
            raise ValueError(f"{name} supports data_format='channels_last' only; transpose inputs to channels last.")
        if inputs.ndim != self.rank + 2:
            raise ValueError(
                f"{name} expects inputs of rank {self.rank + 2} (batch, {self.rank} spatial axes, channels), "
                f"got shape {inputs.shape}. Add a channel axis, e.g. x[..., None]."
            )
        kernel_size = as_tuple(self.kernel_size, self.rank, "kernel_size")
        dilation = as_tuple(self.dilation_rate, self.rank, "dilation_rate")
        check_window(name, inputs.shape[1:-1], kernel_size, dilation, padding_mode(self.padding))
        inputs = as_float(inputs)
        in_channels = inputs.shape[-1]
        if in_channels % self.groups or self.filters % self.groups:
            raise ValueError(f"{name}: channels ({in_channels}) and filters ({self.filters}) must be divisible "
                             f"by groups={self.groups}.")
        kernel, bias = self._weights((*kernel_size, in_channels // self.groups, self.filters), self.filters)
        y = lax.conv_general_dilated(
            inputs,
            kernel,
            window_strides=as_tuple(self.strides, self.rank, "strides"),
            padding=padding_mode(self.padding),
            rhs_dilation=dilation,
            dimension_numbers=_DIMENSIONS[self.rank],
            feature_group_count=self.groups,
        )
        return self._output(y, bias)


class Conv1D(_Conv):
    """Keras' ``Conv1D``: 1-D convolution over ``(batch, steps, channels)`` (formula in the module docstring).

    Args:
        filters: Number of output channels.
        kernel_size: Window length, an int or a 1-tuple.
        strides: Step between windows, an int or a 1-tuple.
        padding: ``'valid'`` (no padding) or ``'same'`` (output length ``ceil(steps / strides)``).
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a 1-tuple.
        groups: Split the channels into this many groups convolved separately; divides channels and ``filters``.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(filters,)``.
        kernel_initializer: Initializer of ``kernel`` ``(kernel_size, channels // groups, filters)``.
        bias_initializer: Initializer of ``bias``.
        kernel_regularizer: Penalty on ``kernel`` added to the loss, or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size, or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_steps, filters)``.

    Raises:
        ValueError: On another ``data_format``, an input of the wrong rank, channels or ``filters``
            not divisible by ``groups``, or a bad ``kernel_size``/``strides``/``dilation_rate``/``padding``.
    """

    rank: ClassVar[int] = 1
    keras_name: ClassVar[str] = "conv1d"


class Conv2D(_Conv):
    """Keras' ``Conv2D``: 2-D convolution over ``(batch, rows, cols, channels)`` (formula in the module docstring).

    Args:
        filters: Number of output channels.
        kernel_size: Window ``(rows, cols)``, or one int for both.
        strides: Step between windows, an int or a pair.
        padding: ``'valid'`` (no padding) or ``'same'`` (output size ``ceil(size / strides)`` per axis).
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a pair.
        groups: Split the channels into this many groups convolved separately; divides channels and ``filters``.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(filters,)``.
        kernel_initializer: Initializer of ``kernel`` ``(*kernel_size, channels // groups, filters)``.
        bias_initializer: Initializer of ``bias``.
        kernel_regularizer: Penalty on ``kernel`` added to the loss, or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size, or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_rows, new_cols, filters)``.

    Raises:
        ValueError: On another ``data_format``, an input of the wrong rank, channels or ``filters``
            not divisible by ``groups``, or a bad ``kernel_size``/``strides``/``dilation_rate``/``padding``.
    """

    rank: ClassVar[int] = 2
    keras_name: ClassVar[str] = "conv2d"


class Conv3D(_Conv):
    """Keras' ``Conv3D``: 3-D convolution over ``(batch, d1, d2, d3, channels)`` (formula in the module docstring).

    Args:
        filters: Number of output channels.
        kernel_size: Window ``(k1, k2, k3)``, or one int for all three.
        strides: Step between windows, an int or a 3-tuple.
        padding: ``'valid'`` (no padding) or ``'same'`` (output size ``ceil(size / strides)`` per axis).
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a 3-tuple.
        groups: Split the channels into this many groups convolved separately; divides channels and ``filters``.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(filters,)``.
        kernel_initializer: Initializer of ``kernel`` ``(*kernel_size, channels // groups, filters)``.
        bias_initializer: Initializer of ``bias``.
        kernel_regularizer: Penalty on ``kernel`` added to the loss, or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size, or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_d1, new_d2, new_d3, filters)``.

    Raises:
        ValueError: On another ``data_format``, an input of the wrong rank, channels or ``filters``
            not divisible by ``groups``, or a bad ``kernel_size``/``strides``/``dilation_rate``/``padding``.
    """

    rank: ClassVar[int] = 3
    keras_name: ClassVar[str] = "conv3d"


def transpose_padding(kernel: int, stride: int, padding: str) -> tuple:
    """Pads ``(before, after)`` of the stride-dilated input for a transposed convolution, chosen
    so that the output has Keras' length: ``in * stride`` for ``'same'``,
    ``(in - 1) * stride + max(kernel, stride)`` for ``'valid'``.

    Args:
        kernel: Kernel size along the axis.
        stride: Stride along the axis.
        padding: ``'valid'`` or ``'same'``.

    Returns:
        The pair ``(before, after)`` of pad sizes.

    Raises:
        ValueError: ``padding`` is not ``'valid'`` or ``'same'``.
    """
    if padding_mode(padding) == "VALID":
        return kernel - 1, kernel - 1 + max(kernel, stride) - kernel
    total = stride + kernel - 2
    before = min(total // 2 + total % 2, kernel - 1)
    return before, total - before


def _dilated_conv(x, kernel, strides: tuple, padding: tuple):
    return lax.conv_general_dilated(x, kernel, (1, 1), padding, lhs_dilation=strides,
                                    dimension_numbers=_DIMENSIONS[2])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def transposed_conv(x, kernel, strides: tuple, padding: tuple):
    """``x`` dilated by ``strides``, convolved with ``kernel`` (HWIO, flipped by the caller).

    Its kernel gradient is taken through the adjoint ``dy -> dx``, a plain strided convolution:
    ``<transposed_conv(x, k), dy> = <x, adjoint_k(dy)>``, so ``d/dk`` is the kernel gradient of
    that convolution, which XLA's CPU backend runs 16x faster than the dilated form's.

    Args:
        x: Input ``(batch, rows, cols, in_channels)``.
        kernel: HWIO kernel ``(k_rows, k_cols, in_channels, filters)``, already flipped.
        strides: Input dilation ``(s_rows, s_cols)`` (static).
        padding: ``((before, after), (before, after))`` pads of the dilated input (static).

    Returns:
        Array ``(batch, new_rows, new_cols, filters)``.
    """
    return _dilated_conv(x, kernel, strides, padding)


def _transposed_conv_fwd(x, kernel, strides, padding):
    return _dilated_conv(x, kernel, strides, padding), (x, kernel)


def _transposed_conv_bwd(strides, padding, residuals, dy):
    x, kernel = residuals
    adjoint = lambda k: jax.linear_transpose(lambda v: _dilated_conv(v, k, strides, padding), x)(dy)[0]  # noqa: E731
    dx, pull = jax.vjp(adjoint, kernel)
    return dx, pull(x)[0]


transposed_conv.defvjp(_transposed_conv_fwd, _transposed_conv_bwd)


class Conv2DTranspose(WeightedLayer):
    """Transposed 2D convolution (Keras ``Conv2DTranspose``), the gradient of ``Conv2D`` with
    respect to its input: it upsamples ``(batch, rows, cols, channels)`` by ``strides``.

    Computed as a convolution of the stride-dilated input with the spatially flipped kernel;
    the kernel has Keras' layout ``(*kernel_size, filters, in_channels)``. Output size per
    axis: ``in * stride`` (``'same'``) or ``(in - 1) * stride + max(kernel, stride)`` (``'valid'``).

    Args:
        filters: Number of output channels.
        kernel_size: Window ``(rows, cols)``, or one int for both.
        strides: Upsampling factor ``(rows, cols)``, or one int for both.
        padding: ``'valid'`` or ``'same'``.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(filters,)``.
        kernel_initializer: Initializer of ``kernel`` (default Glorot uniform).
        bias_initializer: Initializer of ``bias``.
        kernel_regularizer: Penalty on ``kernel`` added to the loss, or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size, or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_rows, new_cols, filters)``.

    Raises:
        ValueError: ``inputs`` is not rank 4, or a bad ``kernel_size``/``strides``/``padding``.
    """

    filters: int
    kernel_size: Any
    strides: Any = 1
    padding: str = "valid"
    activation: Any = None
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    kernel_regularizer: Any = None
    bias_regularizer: Any = None
    activity_regularizer: Any = None
    keras_name: ClassVar[str] = "conv2d_transpose"
    positive_arguments: ClassVar[tuple] = ("filters", "kernel_size", "strides")

    @nn.compact
    def call(self, inputs, training: bool = False):
        if inputs.ndim != 4:
            raise ValueError(f"Conv2DTranspose expects inputs (batch, rows, cols, channels), got shape "
                             f"{inputs.shape}. Add a channel axis, e.g. x[..., None].")
        kernel_size = as_tuple(self.kernel_size, 2, "kernel_size")
        strides = as_tuple(self.strides, 2, "strides")
        inputs = as_float(inputs)
        kernel, bias = self._weights((*kernel_size, self.filters, inputs.shape[-1]), self.filters)
        padding = tuple(transpose_padding(k, s, self.padding) for k, s in zip(kernel_size, strides))
        y = transposed_conv(inputs, kernel[::-1, ::-1].swapaxes(2, 3), strides, padding)
        return self._output(y, bias)
