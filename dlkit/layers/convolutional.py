"""Convolutions over 1, 2 or 3 spatial axes, channels last (Keras ``Conv1D/2D/3D``; the transposed
ones are in ``dlkit.layers.transposed``, the depthwise and separable ones in ``dlkit.layers.separable``).

``y[n, p, o] = activation(sum_{k, i} x[n, p * s + k * d, i] * kernel[k, i, o] + bias[o])``
with stride ``s`` and dilation ``d``; ``padding='same'`` pads as TensorFlow does
(output size ``ceil(in / s)``, the extra pad at the end), ``'valid'`` not at all.
The kernel has Keras' layout ``(*kernel_size, in_channels // groups, filters)``.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as nn
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


def check_inputs(layer: str, rank: int, data_format, inputs) -> None:
    """A convolution's inputs must be channels last with ``rank`` spatial axes.

    Args:
      layer: the layer's name, for the message.
      rank: the number of spatial axes.
      data_format: the layer's ``data_format`` (``None`` or ``'channels_last'``).
      inputs: the batch.

    Raises:
      ValueError: another ``data_format``, or inputs not of rank ``rank + 2``.
    """
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{layer} supports data_format='channels_last' only; transpose inputs to channels last.")
    if inputs.ndim != rank + 2:
        raise ValueError(
            f"{layer} expects inputs of rank {rank + 2} (batch, {rank} spatial axes, channels), "
            f"got shape {inputs.shape}. Add a channel axis, e.g. x[..., None]."
        )


def check_sizes(layer, names: tuple = ("kernel_size", "strides", "dilation_rate")) -> None:
    """When a layer is made: each named argument is an int or a tuple of one int per spatial axis.

    Args:
      layer: the layer (with ``rank`` spatial axes) whose arguments to check.
      names: the arguments' names.

    Raises:
      ValueError: a tuple of another length, or of non-ints, naming the argument.
    """
    for name in names:
        as_tuple(getattr(layer, name), layer.rank, f"{type(layer).__name__}({name}=...)")


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
        check_inputs(name, self.rank, self.data_format, inputs)
        kernel_size = as_tuple(self.kernel_size, self.rank, "kernel_size")
        dilation = as_tuple(self.dilation_rate, self.rank, "dilation_rate")
        check_window(name, inputs.shape[1:-1], kernel_size, dilation, padding_mode(self.padding))
        inputs = as_float(inputs, self.compute_dtype)
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
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

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
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

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
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

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
