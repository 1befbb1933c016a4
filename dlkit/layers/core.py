"""Core layers: Dense, Activation, LeakyReLU, Dropout, GaussianNoise, Flatten, Reshape (``UpSampling2D`` is in
``dlkit.layers.reshaping``, ``SpatialDropout*`` in ``dlkit.layers.regularization``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlkit import activations
from dlkit.layers.base import Layer, WeightedLayer


class Dense(WeightedLayer):
    """Keras' ``Dense``: a fully connected layer on the last axis.

    ``outputs = activation(inputs @ kernel + bias)`` with ``kernel`` of shape
    ``(in_features, units)`` and ``bias`` of shape ``(units,)``; leading axes are
    batch-like (a ``(batch, time, in_features)`` input maps every step).

    Args:
        units: Number of output features.
        activation: Activation name or callable (``dlkit.activations``); ``None`` is linear.
        use_bias: Whether to add ``bias``.
        kernel_initializer: Initializer of ``kernel``: a name or ``(key, shape, dtype) -> array``
            (default Glorot uniform, Glorot & Bengio 2010).
        bias_initializer: Initializer of ``bias`` (default zeros).
        kernel_regularizer: Penalty on ``kernel`` added to the loss (``dlkit.regularizers``), or ``None``.
        bias_regularizer: Penalty on ``bias``, or ``None``.
        activity_regularizer: Penalty on the outputs, divided by the batch size (as Keras), or ``None``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(..., in_features)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(..., units)``.
    """

    units: int
    activation: Any = None
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    kernel_regularizer: Any = None
    bias_regularizer: Any = None
    activity_regularizer: Any = None
    keras_name: ClassVar[str] = "dense"
    positive_arguments: ClassVar[tuple] = ("units",)

    @nn.compact
    def call(self, inputs, training: bool = False):
        kernel, bias = self._weights((inputs.shape[-1], self.units), self.units)
        return self._output(inputs @ kernel, bias)


class Activation(Layer):
    """Keras' ``Activation``: apply an activation function element-wise.

    Args:
        activation: Activation name (``'relu'``, ``'softmax'``... see ``dlkit.activations``) or callable.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array of any shape.
        training: Unused; Keras' flag.

    Returns:
        ``activation(inputs)``, the shape of ``inputs``.
    """

    activation: Any
    keras_name: ClassVar[str] = "activation"

    def call(self, inputs, training: bool = False):
        return activations.get(self.activation)(inputs)


class LeakyReLU(Layer):
    """Keras' ``LeakyReLU``: ``f(x) = x`` if ``x > 0`` else ``negative_slope * x``.

    Args:
        negative_slope: Slope for ``x <= 0``; default 0.3, Keras 3's layer default (the
            ``leaky_relu`` activation's default is 0.2).
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array of any shape.
        training: Unused; Keras' flag.

    Returns:
        An array of the shape of ``inputs``.
    """

    negative_slope: float = 0.3
    keras_name: ClassVar[str] = "leaky_re_lu"

    def call(self, inputs, training: bool = False):
        return activations.leaky_relu(inputs, self.negative_slope)


class Dropout(Layer):
    """Keras' ``Dropout`` (Srivastava et al., 2014), inverted: in training,
    ``y = x * keep / (1 - rate)`` with ``keep ~ Bernoulli(1 - rate)`` per unit, drawn
    from the ``'dropout'`` RNG stream; the identity in inference (and for ``rate == 0``).

    Args:
        rate: Probability of dropping a unit, in ``[0, 1)``.
        noise_shape: Shape of the keep mask, broadcast against the input (``None`` entries:
            the input's size), e.g. ``(None, 1, None)`` shares one mask over time; ``None``: the input's shape.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array of any shape.
        training: Drop units only if True.

    Returns:
        An array of the shape of ``inputs``.

    Raises:
        ValueError: ``rate`` is outside ``[0, 1)`` (raised when the layer is made).
    """

    rate: float
    noise_shape: Optional[Sequence[Optional[int]]] = None
    keras_name: ClassVar[str] = "dropout"

    def __post_init__(self):
        check_rate(type(self).__name__, self.rate)
        super().__post_init__()

    def call(self, inputs, training: bool = False):
        shape = inputs.shape
        if self.noise_shape is not None:
            shape = tuple(d if n is None else n for d, n in zip(inputs.shape, self.noise_shape))
        return dropout(self, inputs, self.rate, shape, training)


def check_rate(layer: str, rate) -> None:
    """A dropout rate must be a number in ``[0, 1)``; checked when the layer is made, as Keras does.

    Args:
      layer: the layer's class name, for the message.
      rate: the fraction of units dropped.

    Raises:
      ValueError: ``rate`` is not a number in ``[0, 1)``, naming ``rate``.
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"{layer}(rate=...) must be a number in [0, 1), the fraction of units dropped; "
                         f"got {rate!r}.")


def dropout(module: nn.Module, inputs, rate: float, shape: tuple, training: bool):
    """Inverted dropout: ``inputs * keep / (1 - rate)``, ``keep ~ Bernoulli(1 - rate)`` of ``shape``
    (broadcast against ``inputs``), drawn from ``module``'s ``'dropout'`` RNG stream.

    Args:
      module: the (bound) layer dropping.
      inputs: the batch.
      rate: the probability of dropping.
      shape: the keep mask's shape, e.g. ``(batch, 1, channels)`` to drop whole channels.
      training: drop only if True.

    Returns:
      An array of the shape of ``inputs``; ``inputs`` itself in inference or for ``rate == 0``.
    """
    if not training or rate == 0.0:
        return inputs
    keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, shape)
    return jnp.where(keep, inputs / (1.0 - rate), jnp.zeros_like(inputs))


class Flatten(Layer):
    """Keras' ``Flatten``: collapse every axis but the batch axis, ``(batch, d1, ..., dn) -> (batch, d1 * ... * dn)``.

    Args:
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, ...)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, prod(inputs.shape[1:]))``, in row-major (C) order.
    """

    keras_name: ClassVar[str] = "flatten"

    def call(self, inputs, training: bool = False):
        return inputs.reshape(inputs.shape[0], -1)


class Reshape(Layer):
    """Keras' ``Reshape``: reshape each sample to ``target_shape``, keeping the batch axis.

    Args:
        target_shape: The sample shape without the batch axis; one entry may be ``-1`` (inferred).
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, ...)`` with ``prod(target_shape)`` entries per sample.
        training: Unused; Keras' flag.

    Returns:
        Array ``(batch, *target_shape)``.
    """

    target_shape: Sequence[int]
    keras_name: ClassVar[str] = "reshape"

    def call(self, inputs, training: bool = False):
        return inputs.reshape(inputs.shape[0], *self.target_shape)


class GaussianNoise(Layer):
    """Keras' ``GaussianNoise``: in training ``y = x + stddev * eps``, ``eps ~ N(0, 1)`` per entry
    (from the ``'dropout'`` RNG stream); the identity in inference. A regulariser, and a
    denoising autoencoder's corruption.

    Args:
        stddev: Standard deviation of the noise (0: the identity).
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Float array of any shape.
        training: Add noise only if True.

    Returns:
        An array of the shape and dtype of ``inputs``.
    """

    stddev: float
    keras_name: ClassVar[str] = "gaussian_noise"

    def call(self, inputs, training: bool = False):
        if not training or self.stddev == 0.0:
            return inputs
        return inputs + self.stddev * jax.random.normal(self.make_rng("dropout"), inputs.shape, inputs.dtype)
