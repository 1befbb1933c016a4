"""Core layers: Dense, Activation, LeakyReLU, Dropout, GaussianNoise, Flatten, Reshape, UpSampling2D."""
from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlkit import activations
from dlkit.layers.base import Layer, WeightedLayer


class Dense(WeightedLayer):
    """``activation(inputs @ kernel + bias)`` on the last axis (Keras ``Dense``)."""

    units: int
    activation: Any = None
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    kernel_regularizer: Any = None
    bias_regularizer: Any = None
    activity_regularizer: Any = None
    keras_name: ClassVar[str] = "dense"

    @nn.compact
    def call(self, inputs, training: bool = False):
        kernel, bias = self._weights((inputs.shape[-1], self.units), self.units)
        return self._output(inputs @ kernel, bias)


class Activation(Layer):
    """Apply an activation by name or callable (Keras ``Activation``)."""

    activation: Any
    keras_name: ClassVar[str] = "activation"

    def call(self, inputs, training: bool = False):
        return activations.get(self.activation)(inputs)


class LeakyReLU(Layer):
    """``x`` if ``x > 0`` else ``negative_slope * x`` (Keras ``LeakyReLU``; Keras 3's default slope)."""

    negative_slope: float = 0.3
    keras_name: ClassVar[str] = "leaky_re_lu"

    def call(self, inputs, training: bool = False):
        return activations.leaky_relu(inputs, self.negative_slope)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate`` and
    scale the rest by ``1 / (1 - rate)``; identity in inference.

    ``noise_shape`` (with ``None`` for "same as the input") shares one mask
    along axes of size 1, as in Keras.
    """

    rate: float
    noise_shape: Optional[Sequence[Optional[int]]] = None
    keras_name: ClassVar[str] = "dropout"

    def call(self, inputs, training: bool = False):
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {self.rate}.")
        if not training or self.rate == 0.0:
            return inputs
        shape = inputs.shape
        if self.noise_shape is not None:
            shape = tuple(d if n is None else n for d, n in zip(inputs.shape, self.noise_shape))
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.rate, shape)
        return jnp.where(keep, inputs / (1.0 - self.rate), jnp.zeros_like(inputs))


class Flatten(Layer):
    """Collapse every axis but the batch axis."""

    keras_name: ClassVar[str] = "flatten"

    def call(self, inputs, training: bool = False):
        return inputs.reshape(inputs.shape[0], -1)


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (batch axis kept; one entry may be -1)."""

    target_shape: Sequence[int]
    keras_name: ClassVar[str] = "reshape"

    def call(self, inputs, training: bool = False):
        return inputs.reshape(inputs.shape[0], *self.target_shape)


class GaussianNoise(Layer):
    """In training, add zero-mean Gaussian noise of standard deviation ``stddev``; identity in
    inference (Keras ``GaussianNoise``: a regulariser, and a denoising autoencoder's corruption)."""

    stddev: float
    keras_name: ClassVar[str] = "gaussian_noise"

    def call(self, inputs, training: bool = False):
        if not training or self.stddev == 0.0:
            return inputs
        return inputs + self.stddev * jax.random.normal(self.make_rng("dropout"), inputs.shape, inputs.dtype)


class UpSampling2D(Layer):
    """Repeat each row ``size[0]`` times and each column ``size[1]`` times (nearest neighbour)."""

    size: Any = (2, 2)
    keras_name: ClassVar[str] = "up_sampling2d"

    def call(self, inputs, training: bool = False):
        rows, cols = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        return jnp.repeat(jnp.repeat(inputs, rows, axis=1), cols, axis=2)
