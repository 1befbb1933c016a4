"""Batch normalization (Keras ``BatchNormalization``).

Training: ``y = gamma * (x - mean_B) / sqrt(var_B + epsilon) + beta`` with the
batch's (biased) mean and variance over every axis but ``axis``, and the
moving statistics updated as ``moving = momentum * moving + (1 - momentum) * batch``.
Inference: the moving statistics replace the batch's. ``gamma``/``beta`` are
params; ``moving_mean``/``moving_variance`` live in the ``batch_stats``
collection (Keras' non-trainable weights).

Batch renormalization (``renorm=True``; Ioffe, 2017), as Keras computes it: in training
``y = gamma * (r * (x - mean_B) / sigma_B + d) + beta`` with ``sigma_B = sqrt(var_B + epsilon)``,
``r = clip(sigma_B / max(renorm_stddev, sqrt(epsilon)), rmin, rmax)`` and
``d = clip((mean_B - renorm_mean) / max(renorm_stddev, sqrt(epsilon)), -dmax, dmax)``, both held
constant in the gradient (``stop_gradient``). Then ``renorm_mean``/``renorm_stddev`` move towards
``mean_B``/``sigma_B`` with ``renorm_momentum``, and ``moving_mean``/``moving_stddev`` with ``momentum``;
``moving_variance = relu(moving_stddev ** 2 - epsilon)``. Inference is unchanged: it uses
``moving_mean``/``moving_variance``. Keras' extra non-trainable weights ``moving_stddev``,
``renorm_mean``, ``renorm_stddev`` follow ``moving_variance`` in ``batch_stats`` (and in ``get_weights()``).
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlkit import initializers, mixed_precision
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
      renorm: use batch renormalization in training (module docstring).
      renorm_clipping: with ``renorm``, a dict of optional ``'rmax'``, ``'rmin'``, ``'dmax'`` clipping the
        corrections ``r`` to ``[rmin, rmax]`` and ``d`` to ``[-dmax, dmax]`` (missing: ``inf``, ``0``, ``inf``).
      renorm_momentum: with ``renorm``, the decay of ``renorm_mean``/``renorm_stddev``.
      input_shape: the shape of one sample, for a first layer.
      dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
          ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
      inputs: a batch.
      training: normalise with the batch's statistics and update the moving ones (True), or
        with the moving ones (False). Inside a frozen part of a model the loop passes False,
        as Keras runs a frozen ``BatchNormalization`` in inference mode.

    Returns:
      The normalised batch, the shape of ``inputs``.

    Raises:
      ValueError: with ``renorm``, ``renorm_clipping`` has other keys, ``rmax < rmin`` or ``dmax < 0``
        (when the layer is made).
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
    renorm: bool = False
    renorm_clipping: Optional[dict] = None
    renorm_momentum: float = 0.99
    keras_name: ClassVar[str] = "batch_normalization"
    inference_when_frozen: ClassVar[bool] = True  # Keras: a frozen BatchNormalization uses its moving statistics

    def __post_init__(self):
        if self.renorm:
            _clipping(self.renorm_clipping)
        super().__post_init__()

    @nn.compact
    def call(self, inputs, training: bool = False):
        output_dtype = self.compute_dtype
        # Keras computes the statistics in float32 at least: a bfloat16 variance loses too much.
        inputs = inputs.astype(jnp.promote_types(inputs.dtype, jnp.float32))
        axis = self.axis % inputs.ndim
        size = inputs.shape[axis]
        reduce_axes = tuple(a for a in range(inputs.ndim) if a != axis)
        broadcast = [1] * inputs.ndim
        broadcast[axis] = size

        moving_mean = self.variable(
            "batch_stats", "moving_mean",
            lambda: initializers.get(self.moving_mean_initializer)(None, (size,), self.variable_dtype))
        moving_var = self.variable(
            "batch_stats", "moving_variance",
            lambda: initializers.get(self.moving_variance_initializer)(None, (size,), self.variable_dtype))

        renorm_variables = self._renorm_variables(size) if self.renorm else None
        correction = None
        if training:
            mean = jnp.mean(inputs, axis=reduce_axes)
            var = jnp.mean(jnp.square(inputs - mean.reshape(broadcast)), axis=reduce_axes)
            if self.renorm:
                correction = self._renormalize(mean, var, moving_mean, moving_var, renorm_variables)
            elif not self.is_initializing():
                _move(moving_mean, mean, self.momentum)
                _move(moving_var, var, self.momentum)
        else:
            mean, var = moving_mean.value, moving_var.value

        y = (inputs - mean.reshape(broadcast)) * (1.0 / jnp.sqrt(var + self.epsilon)).reshape(broadcast)
        if correction is not None:
            r, d = correction
            y = y * r.reshape(broadcast) + d.reshape(broadcast)
        if self.scale:
            gamma = self.param("gamma", initializers.get(self.gamma_initializer), (size,), self.variable_dtype)
            y = y * gamma.reshape(broadcast).astype(y.dtype)
        if self.center:
            beta = self.param("beta", initializers.get(self.beta_initializer), (size,), self.variable_dtype)
            y = y + beta.reshape(broadcast).astype(y.dtype)
        return mixed_precision.cast_floating(y, output_dtype)

    def _renorm_variables(self, size: int) -> tuple:
        """Keras' ``moving_stddev``, ``renorm_mean``, ``renorm_stddev``, made with the layer whatever the mode."""
        dtype = self.variable_dtype

        def stddev_init():
            return jnp.sqrt(initializers.get(self.moving_variance_initializer)(None, (size,), dtype))

        return (self.variable("batch_stats", "moving_stddev", stddev_init),
                self.variable("batch_stats", "renorm_mean",
                              lambda: initializers.get(self.moving_mean_initializer)(None, (size,), dtype)),
                self.variable("batch_stats", "renorm_stddev", stddev_init))

    def _renormalize(self, mean, var, moving_mean, moving_var, renorm_variables):
        """Batch renormalization's corrections ``(r, d)`` from the renorm statistics before this batch,
        and the updates of those and of the moving statistics (formulas in the module docstring)."""
        moving_stddev, renorm_mean, renorm_stddev = renorm_variables
        stddev = jnp.sqrt(var + self.epsilon)
        floor = jnp.maximum(renorm_stddev.value, math.sqrt(self.epsilon))
        rmin, rmax, dmax = _clipping(self.renorm_clipping)
        r = jnp.clip(stddev / floor, rmin, rmax)
        d = jnp.clip((mean - renorm_mean.value) / floor, -dmax, dmax)
        if not self.is_initializing():
            _move(renorm_mean, mean, self.renorm_momentum)
            _move(renorm_stddev, stddev, self.renorm_momentum)
            _move(moving_mean, mean, self.momentum)
            _move(moving_stddev, stddev, self.momentum)
            moving_var.value = jax.nn.relu(jnp.square(moving_stddev.value) - self.epsilon)
        return jax.lax.stop_gradient(r), jax.lax.stop_gradient(d)


def _move(variable, batch_value, momentum: float) -> None:
    """``moving = momentum * moving + (1 - momentum) * batch``, kept in the variable's own dtype."""
    variable.value = (momentum * variable.value + (1.0 - momentum) * batch_value).astype(variable.value.dtype)


def _clipping(clipping) -> tuple:
    """``(rmin, rmax, dmax)`` of Keras' ``renorm_clipping`` dict (missing: ``0``, ``inf``, ``inf``)."""
    clipping = dict(clipping or {})
    unknown = set(clipping) - {"rmax", "rmin", "dmax"}
    if unknown:
        raise ValueError(f"BatchNormalization(renorm_clipping=...) takes the keys 'rmax', 'rmin', 'dmax' only, "
                         f"got {sorted(unknown)}.")
    rmin, rmax, dmax = clipping.get("rmin"), clipping.get("rmax"), clipping.get("dmax")
    if rmin is not None and rmax is not None and rmax < rmin:
        raise ValueError(f"BatchNormalization(renorm_clipping=...): rmax ({rmax}) must not be below rmin ({rmin}).")
    if dmax is not None and dmax < 0:
        raise ValueError(f"BatchNormalization(renorm_clipping=...): dmax must be non-negative, got {dmax}.")
    return (0.0 if rmin is None else rmin, math.inf if rmax is None else rmax, math.inf if dmax is None else dmax)
