"""Depthwise and depthwise-separable convolutions, channels last (Keras ``DepthwiseConv1D/2D``,
``SeparableConv1D/2D``), the blocks of MobileNet and Xception.

Depthwise: each input channel ``i`` is convolved with its own ``depth_multiplier`` kernels,
``y[n, p, i * m + j] = sum_k x[n, p * s + k * d, i] * depthwise_kernel[k, i, j]`` (one
``lax.conv_general_dilated`` with ``feature_group_count = channels``), so the output has
``channels * depth_multiplier`` channels. Separable: a depthwise convolution followed by a
pointwise (``1 x 1``) one mixing the channels, ``z = activation(depthwise(x) @ pointwise_kernel + bias)``.
Strides, dilation and padding act on the depthwise step as in ``Conv2D``
(``dlkit.layers.convolutional``). Kernels have Keras' layouts: ``(*kernel_size, channels,
depth_multiplier)`` and ``(1, ..., channels * depth_multiplier, filters)``.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as nn
from jax import lax

from dlkit.layers.base import WeightedLayer, as_float, as_tuple
from dlkit.layers.convolutional import _DIMENSIONS, check_inputs, check_sizes, check_window, padding_mode


def depthwise_conv(inputs, kernel, strides: tuple, padding: str, dilation: tuple):
    """Keras' ``ops.depthwise_conv``: each channel convolved with its own kernels.

    Args:
      inputs: ``(batch, *spatial, channels)``.
      kernel: ``(*kernel_size, channels, depth_multiplier)``.
      strides: the step per spatial axis.
      padding: ``'VALID'`` or ``'SAME'``.
      dilation: the kernel dilation per spatial axis.

    Returns:
      ``(batch, *new_spatial, channels * depth_multiplier)``; channel ``i * m + j`` is input channel
      ``i`` convolved with ``kernel[..., i, j]``.
    """
    channels = inputs.shape[-1]
    kernel = kernel.reshape(*kernel.shape[:-2], 1, channels * kernel.shape[-1])
    return lax.conv_general_dilated(inputs, kernel, strides, padding, rhs_dilation=dilation,
                                    dimension_numbers=_DIMENSIONS[inputs.ndim - 2], feature_group_count=channels)


class _Depthwise(WeightedLayer):
    """The depthwise step shared by ``DepthwiseConv*`` and ``SeparableConv*``."""

    rank: ClassVar[int] = 2
    depthwise_name: ClassVar[str] = "kernel"  # Keras 3 names DepthwiseConv's kernel "kernel"

    def __post_init__(self):
        padding_mode(self.padding)
        check_sizes(self)
        super().__post_init__()

    def _depthwise(self, inputs):
        name = type(self).__name__
        check_inputs(name, self.rank, self.data_format, inputs)
        kernel_size = as_tuple(self.kernel_size, self.rank, "kernel_size")
        dilation = as_tuple(self.dilation_rate, self.rank, "dilation_rate")
        padding = padding_mode(self.padding)
        check_window(name, inputs.shape[1:-1], kernel_size, dilation, padding)
        inputs = as_float(inputs, self.compute_dtype)
        kernel = self.weight(self.depthwise_name, self.depthwise_initializer,
                             (*kernel_size, inputs.shape[-1], self.depth_multiplier), self.depthwise_regularizer)
        return depthwise_conv(inputs, kernel, as_tuple(self.strides, self.rank, "strides"), padding, dilation)

    def _bias(self, size: int):
        if not self.use_bias:
            return None
        return self.weight("bias", self.bias_initializer, (size,), self.bias_regularizer)


class _DepthwiseConv(_Depthwise):
    kernel_size: Any
    strides: Any = 1
    padding: str = "valid"
    depth_multiplier: int = 1
    data_format: Optional[str] = None
    dilation_rate: Any = 1
    activation: Any = None
    use_bias: bool = True
    depthwise_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    depthwise_regularizer: Any = None
    bias_regularizer: Any = None
    activity_regularizer: Any = None
    positive_arguments: ClassVar[tuple] = ("kernel_size", "strides", "dilation_rate", "depth_multiplier")

    @nn.compact
    def call(self, inputs, training: bool = False):
        y = self._depthwise(inputs)
        return self._output(y, self._bias(y.shape[-1]))


class _SeparableConv(_Depthwise):
    filters: int
    kernel_size: Any
    strides: Any = 1
    padding: str = "valid"
    data_format: Optional[str] = None
    dilation_rate: Any = 1
    depth_multiplier: int = 1
    activation: Any = None
    use_bias: bool = True
    depthwise_initializer: Any = "glorot_uniform"
    pointwise_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    depthwise_regularizer: Any = None
    pointwise_regularizer: Any = None
    bias_regularizer: Any = None
    activity_regularizer: Any = None
    depthwise_name: ClassVar[str] = "depthwise_kernel"
    positive_arguments: ClassVar[tuple] = ("filters", "kernel_size", "strides", "dilation_rate", "depth_multiplier")

    @nn.compact
    def call(self, inputs, training: bool = False):
        y = self._depthwise(inputs)
        pointwise = self.weight("pointwise_kernel", self.pointwise_initializer,
                                (*(1,) * self.rank, y.shape[-1], self.filters), self.pointwise_regularizer)
        y = lax.conv_general_dilated(y, pointwise, (1,) * self.rank, "VALID", dimension_numbers=_DIMENSIONS[self.rank])
        return self._output(y, self._bias(self.filters))


class DepthwiseConv1D(_DepthwiseConv):
    """Keras' ``DepthwiseConv1D``: each channel of ``(batch, steps, channels)`` convolved with its own
    ``depth_multiplier`` kernels (formula in the module docstring).

    Args:
        kernel_size: Window length, an int or a 1-tuple.
        strides: Step between windows, an int or a 1-tuple.
        padding: ``'valid'`` or ``'same'`` (output length ``ceil(steps / strides)``).
        depth_multiplier: Output channels per input channel.
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a 1-tuple.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(channels * depth_multiplier,)``.
        depthwise_initializer: Initializer of ``kernel`` ``(kernel_size, channels, depth_multiplier)``.
        bias_initializer: Initializer of ``bias``.
        depthwise_regularizer: Penalty on ``kernel`` added to the loss, or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size, or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_steps, channels * depth_multiplier)``.

    Raises:
        ValueError: A bad ``padding`` or a non-positive ``kernel_size``/``strides``/``dilation_rate``/
            ``depth_multiplier`` (when the layer is made), another ``data_format``, an input of the wrong
            rank, or a window larger than a ``'valid'`` input.
    """

    rank: ClassVar[int] = 1
    keras_name: ClassVar[str] = "depthwise_conv1d"


class DepthwiseConv2D(_DepthwiseConv):
    """Keras' ``DepthwiseConv2D``: each channel of ``(batch, rows, cols, channels)`` convolved with its own
    ``depth_multiplier`` kernels (formula in the module docstring).

    Args:
        kernel_size: Window ``(rows, cols)``, or one int for both.
        strides: Step between windows, an int or a pair.
        padding: ``'valid'`` or ``'same'`` (output size ``ceil(size / strides)`` per axis).
        depth_multiplier: Output channels per input channel.
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a pair.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(channels * depth_multiplier,)``.
        depthwise_initializer: Initializer of ``kernel`` ``(*kernel_size, channels, depth_multiplier)``.
        bias_initializer: Initializer of ``bias``.
        depthwise_regularizer: Penalty on ``kernel`` added to the loss, or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size, or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, new_rows, new_cols, channels * depth_multiplier)``.

    Raises:
        ValueError: A bad ``padding`` or a non-positive ``kernel_size``/``strides``/``dilation_rate``/
            ``depth_multiplier`` (when the layer is made), another ``data_format``, an input of the wrong
            rank, or a window larger than a ``'valid'`` input.
    """

    rank: ClassVar[int] = 2
    keras_name: ClassVar[str] = "depthwise_conv2d"


class SeparableConv1D(_SeparableConv):
    """Keras' ``SeparableConv1D``: a depthwise convolution of ``(batch, steps, channels)`` then a pointwise
    one to ``filters`` channels (formulas in the module docstring).

    Args:
        filters: Number of output channels.
        kernel_size: Window length, an int or a 1-tuple.
        strides: Step between windows, an int or a 1-tuple.
        padding: ``'valid'`` or ``'same'`` (output length ``ceil(steps / strides)``).
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a 1-tuple.
        depth_multiplier: Depthwise output channels per input channel.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(filters,)``.
        depthwise_initializer: Initializer of ``depthwise_kernel`` ``(kernel_size, channels, depth_multiplier)``.
        pointwise_initializer: Initializer of ``pointwise_kernel`` ``(1, channels * depth_multiplier, filters)``.
        bias_initializer: Initializer of ``bias``.
        depthwise_regularizer: Penalty on ``depthwise_kernel`` added to the loss, or ``None``.
        pointwise_regularizer: Penalty on ``pointwise_kernel`` added to the loss, or ``None``.
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
        ValueError: A bad ``padding`` or a non-positive ``filters``/``kernel_size``/``strides``/
            ``dilation_rate``/``depth_multiplier`` (when the layer is made), another ``data_format``, an
            input of the wrong rank, or a window larger than a ``'valid'`` input.
    """

    rank: ClassVar[int] = 1
    keras_name: ClassVar[str] = "separable_conv1d"


class SeparableConv2D(_SeparableConv):
    """Keras' ``SeparableConv2D``: a depthwise convolution of ``(batch, rows, cols, channels)`` then a
    pointwise one to ``filters`` channels (formulas in the module docstring).

    Args:
        filters: Number of output channels.
        kernel_size: Window ``(rows, cols)``, or one int for both.
        strides: Step between windows, an int or a pair.
        padding: ``'valid'`` or ``'same'`` (output size ``ceil(size / strides)`` per axis).
        data_format: ``None`` or ``'channels_last'`` only.
        dilation_rate: Spacing between kernel taps, an int or a pair.
        depth_multiplier: Depthwise output channels per input channel.
        activation: Activation name or callable; ``None`` is linear.
        use_bias: Whether to add ``bias`` ``(filters,)``.
        depthwise_initializer: Initializer of ``depthwise_kernel`` ``(*kernel_size, channels, depth_multiplier)``.
        pointwise_initializer: Initializer of ``pointwise_kernel`` ``(1, 1, channels * depth_multiplier, filters)``.
        bias_initializer: Initializer of ``bias``.
        depthwise_regularizer: Penalty on ``depthwise_kernel`` added to the loss, or ``None``.
        pointwise_regularizer: Penalty on ``pointwise_kernel`` added to the loss, or ``None``.
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
        ValueError: A bad ``padding`` or a non-positive ``filters``/``kernel_size``/``strides``/
            ``dilation_rate``/``depth_multiplier`` (when the layer is made), another ``data_format``, an
            input of the wrong rank, or a window larger than a ``'valid'`` input.
    """

    rank: ClassVar[int] = 2
    keras_name: ClassVar[str] = "separable_conv2d"
