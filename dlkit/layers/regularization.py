"""Spatial dropout (Keras ``SpatialDropout1D/2D/3D``; Tompson et al., 2015): drop whole channels.

In training, ``y[n, ..., c] = x[n, ..., c] * keep[n, c] / (1 - rate)`` with one
``keep[n, c] ~ Bernoulli(1 - rate)`` per sample and channel, shared by every step or pixel
(neighbouring pixels are strongly correlated, so dropping them one by one regularises
little); drawn from the ``'dropout'`` RNG stream. The identity in inference.
"""
from __future__ import annotations

from typing import ClassVar, Optional

from dlkit.layers.base import Layer
from dlkit.layers.convolutional import check_inputs
from dlkit.layers.core import check_rate, dropout


class _SpatialDropout(Layer):
    rate: float
    rank: ClassVar[int] = 1

    def __post_init__(self):
        check_rate(type(self).__name__, self.rate)
        super().__post_init__()

    def call(self, inputs, training: bool = False):
        check_inputs(type(self).__name__, self.rank, getattr(self, "data_format", None), inputs)
        shape = (inputs.shape[0], *(1,) * self.rank, inputs.shape[-1])
        return dropout(self, inputs, self.rate, shape, training)


class SpatialDropout1D(_SpatialDropout):
    """Keras' ``SpatialDropout1D``: drop whole channels of ``(batch, steps, channels)`` (module docstring).

    Args:
        rate: Probability of dropping a channel, in ``[0, 1)``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, steps, channels)``.
        training: Drop channels only if True.

    Returns:
        An array of the shape of ``inputs``.

    Raises:
        ValueError: ``rate`` is outside ``[0, 1)`` (when the layer is made), or inputs of another rank.
    """

    rank: ClassVar[int] = 1
    keras_name: ClassVar[str] = "spatial_dropout1d"


class SpatialDropout2D(_SpatialDropout):
    """Keras' ``SpatialDropout2D``: drop whole feature maps of ``(batch, rows, cols, channels)`` (module docstring).

    Args:
        rate: Probability of dropping a channel, in ``[0, 1)``.
        data_format: ``None`` or ``'channels_last'`` only.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, rows, cols, channels)``.
        training: Drop channels only if True.

    Returns:
        An array of the shape of ``inputs``.

    Raises:
        ValueError: ``rate`` is outside ``[0, 1)`` (when the layer is made), another ``data_format``, or
            inputs of another rank.
    """

    data_format: Optional[str] = None
    rank: ClassVar[int] = 2
    keras_name: ClassVar[str] = "spatial_dropout2d"


class SpatialDropout3D(_SpatialDropout):
    """Keras' ``SpatialDropout3D``: drop whole channels of ``(batch, d1, d2, d3, channels)`` (module docstring).

    Args:
        rate: Probability of dropping a channel, in ``[0, 1)``.
        data_format: ``None`` or ``'channels_last'`` only.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, d1, d2, d3, channels)``.
        training: Drop channels only if True.

    Returns:
        An array of the shape of ``inputs``.

    Raises:
        ValueError: ``rate`` is outside ``[0, 1)`` (when the layer is made), another ``data_format``, or
            inputs of another rank.
    """

    data_format: Optional[str] = None
    rank: ClassVar[int] = 3
    keras_name: ClassVar[str] = "spatial_dropout3d"
