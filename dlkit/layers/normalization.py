"""Batch normalization (Keras ``BatchNormalization``).

Training: ``y = gamma * (x - mean_B) / sqrt(var_B + epsilon) + beta`` with the
batch's (biased) mean and variance over every axis but ``axis``, and the
moving statistics updated as ``moving = momentum * moving + (1 - momentum) * batch``.
Inference: the moving statistics replace the batch's. ``gamma``/``beta`` are
params; ``moving_mean``/``moving_variance`` live in the ``batch_stats``
collection (Keras' non-trainable weights).
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from dlkit import initializers
from dlkit.layers.base import Layer


class BatchNormalization(Layer):
    """Keras' ``BatchNormalization`` (Ioffe & Szegedy, 2015); the formulas are in the module docstring.

    Args:
      axis: the feature axis, normalised per feature (default the last).
      momentum: the moving statistics' decay.
      epsilon: added to the variance before the square root.
      center: learn the offset ``beta``.
      scale: learn the factor ``gamma``.
      beta_initializer: initializer of ``beta``.
      gamma_initializer: initializer of ``gamma``.
      moving_mean_initializer: initializer of ``moving_mean``.
      moving_variance_initializer: initializer of ``moving_variance``.
      input_shape: the shape of one sample, for a first layer.

    Call arguments:
      inputs: a batch.
      training: normalise with the batch's statistics and update the moving ones (True), or
        with the moving ones (False). Inside a frozen part of a model the loop passes False,
        as Keras runs a frozen ``BatchNormalization`` in inference mode.

    Returns:
      The normalised batch, the shape of ``inputs``.
    """

    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    beta_initializer: Any = "zeros"
    gamma_initializer: Any = "ones"
    moving_mean_initializer: Any = "zeros"
    moving_variance_initializer: Any = "ones"
    keras_name: ClassVar[str] = "batch_normalization"
    inference_when_frozen: ClassVar[bool] = True  # Keras: a frozen BatchNormalization uses its moving statistics

    @nn.compact
    def call(self, inputs, training: bool = False):
        axis = self.axis % inputs.ndim
        size = inputs.shape[axis]
        reduce_axes = tuple(a for a in range(inputs.ndim) if a != axis)
        broadcast = [1] * inputs.ndim
        broadcast[axis] = size

        moving_mean = self.variable(
            "batch_stats", "moving_mean",
            lambda: initializers.get(self.moving_mean_initializer)(None, (size,), jnp.float32))
        moving_var = self.variable(
            "batch_stats", "moving_variance",
            lambda: initializers.get(self.moving_variance_initializer)(None, (size,), jnp.float32))

        if training:
            mean = jnp.mean(inputs, axis=reduce_axes)
            var = jnp.mean(jnp.square(inputs - mean.reshape(broadcast)), axis=reduce_axes)
            if not self.is_initializing():
                moving_mean.value = self.momentum * moving_mean.value + (1.0 - self.momentum) * mean
                moving_var.value = self.momentum * moving_var.value + (1.0 - self.momentum) * var
        else:
            mean, var = moving_mean.value, moving_var.value

        y = (inputs - mean.reshape(broadcast)) * (1.0 / jnp.sqrt(var + self.epsilon)).reshape(broadcast)
        if self.scale:
            gamma = self.param("gamma", initializers.get(self.gamma_initializer), (size,), jnp.float32)
            y = y * gamma.reshape(broadcast)
        if self.center:
            y = y + self.param("beta", initializers.get(self.beta_initializer), (size,), jnp.float32).reshape(broadcast)
        return y
