"""Keras' ``Normalization`` preprocessing layer: ``y = (x - mean) / max(sqrt(variance), 1e-7)``.

Two ways to give the statistics, as in Keras:

* ``Normalization(mean=..., variance=...)``: constants, no variables (the layer counts 0 params).
* ``norm = Normalization(); norm.adapt(x_train)``: ``adapt`` updates this layer object in place
  (and returns it, so ``norm = Normalization().adapt(x_train)`` reads as before). The statistics
  are then non-trainable variables, Keras' three weights ``mean``, ``variance`` and ``count``,
  in the ``batch_stats`` collection: ``summary()`` counts them as non-trainable params,
  ``get_weights()`` lists them in that order, and training never changes them (nothing
  writes them). ``count`` is kept for Keras' weight layout; Keras 3 leaves it 0, and so does dlkit.

Why ``object.__setattr__``. Linen modules are frozen dataclasses, and Flax works on clones:
each model that binds the layer copies its dataclass fields into a new object. ``adapt``
therefore writes the statistics into this object's own fields ``mean``, ``variance`` and
``adapted`` with ``object.__setattr__`` (Linen's ``__setattr__`` refuses once the module is
built), so every model built afterwards, whose clone copies those fields, creates its
variables initialised from them. A layer that is never adapted (nor given statistics) starts
from mean 0 and variance 1, as Keras' does, ready for ``set_weights`` or loaded weights (with a
warning when its variables are made, since a forgotten ``adapt`` is the usual cause). Called
outside a model, on arrays (``norm(x_train)``, as Keras allows), the layer uses the statistics
it holds.

Adapt after a model is built. The variables of a model already built live in its trainer's
state, not on the layer. As Keras' ``adapt`` assigns the layer's weights where the model
uses them, ``adapt`` writes the new statistics into the variables of the trainer that last
built or trained a model holding this layer (its owner, ``dlkit.layer_objects``), so that
trainer and every later one see them. Variables made by hand (``model.init``) are the
caller's: they keep the statistics they were made with.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Optional, Union

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dlkit import symbolic
from dlkit.layers.base import Layer, as_float

EPSILON = 1e-7  # Keras' backend.epsilon()
STATS = "batch_stats"  # the non-trainable collection the loop carries (and never differentiates)


def frozen_floats(value):
    """An array as nested tuples of floats: hashable, as Linen module fields must be.

    Args:
        value: ``None``, a number, or an array-like.

    Returns:
        ``value`` itself for ``None`` and numbers, else nested tuples of Python floats.
    """
    if value is None or isinstance(value, (float, int)):
        return value
    value = np.asarray(value, np.float64)
    return float(value) if value.ndim == 0 else tuple(frozen_floats(v) for v in value)


def _batches(data) -> np.ndarray:
    """``adapt``'s data as one float64 array: an array, or (as Keras reads anything else iterable)
    batches, joined on the sample axis; a batch ``(x, y)`` gives its ``x``."""
    if hasattr(data, "shape"):
        return np.asarray(data, np.float64)
    listed = isinstance(data, (list, tuple))
    if listed and not all(hasattr(b, "shape") or isinstance(b, tuple) for b in data):
        return np.asarray(data, np.float64)  # a nested list of numbers
    if not listed and not hasattr(data, "__iter__"):
        return np.asarray(data, np.float64)
    batches = [np.asarray(b[0] if isinstance(b, tuple) else b, np.float64) for b in data]
    if not batches:
        raise ValueError("adapt got no batches: pass an array of samples, or an iterable that yields batches.")
    return np.concatenate(batches, axis=0)


class Normalization(Layer):
    """Keras' ``Normalization``: ``y = (x - mean) / max(sqrt(variance), 1e-7)`` per feature.

    ``axis`` names the feature axes (of the batched input) that keep their own statistics;
    the others are reduced over. ``axis=-1`` on images gives per-channel statistics;
    ``axis=None`` one scalar mean and variance. ``norm.adapt(x_train)`` sets the statistics in
    place (non-trainable ``batch_stats`` variables ``mean``, ``variance``, ``count``); given
    ``mean``/``variance`` are constants. See the module docstring.

    ``invert=True`` undoes the normalization: ``y = mean + x * max(sqrt(variance), 1e-7)``.

    Args:
        axis: Feature axis or axes (of the batched input) with their own statistics; ``None``: one scalar.
        mean: The mean, broadcastable to the kept axes; ``None`` until ``adapt`` (then it holds the adapted mean).
        variance: The variance, likewise; given with ``mean`` or not at all.
        invert: Apply the inverse transform.
        adapted: Set by ``adapt``: ``mean``/``variance`` initialise variables instead of being constants.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, ...)``.
        training: Unused; Keras' flag.

    Returns:
        A float array of the shape of ``inputs``.

    Raises:
        ValueError: Only one of ``mean``/``variance`` given; a bad ``axis``; statistics that do not fit the inputs.
    """

    axis: Optional[Union[int, Sequence[int]]] = -1
    mean: Any = None
    variance: Any = None
    invert: bool = False
    adapted: bool = dataclasses.field(default=False, kw_only=True)
    keras_name: ClassVar[str] = "normalization"

    def __post_init__(self):
        if (self.mean is None) != (self.variance is None):
            raise ValueError("Normalization needs both mean and variance, or neither (then call adapt).")
        object.__setattr__(self, "mean", frozen_floats(self.mean))
        object.__setattr__(self, "variance", frozen_floats(self.variance))
        if isinstance(self.axis, list):
            object.__setattr__(self, "axis", tuple(self.axis))
        super().__post_init__()

    @nn.nowrap
    def _axes(self, ndim: int) -> tuple:
        axes = () if self.axis is None else (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
        if any(not -ndim < a < ndim or a % ndim == 0 for a in axes):
            raise ValueError(f"Normalization axis {self.axis} must name feature axes of a rank-{ndim} input "
                             "(not the batch axis 0).")
        return tuple(sorted(a % ndim for a in axes))

    @nn.nowrap
    def adapt(self, data) -> Normalization:
        """Set this layer's mean and (biased) variance to those of ``data``, in place (Keras' ``adapt``).

        The moments are computed on the host in float64 over every axis not in ``axis``. A
        trainer that already built a model holding this layer gets the new statistics written
        into its variables (module docstring).

        Args:
            data: The training inputs: an array ``(samples, ...)``, or an iterable of batches.

        Returns:
            This layer (so ``norm = Normalization().adapt(x)`` still reads).

        Raises:
            ValueError: ``data`` is empty, ``axis`` does not fit its rank, the layer was given ``mean`` and
                ``variance`` (constants), or a built model's statistics have other shapes.
        """
        if self.mean is not None and not self.adapted:
            raise ValueError("This Normalization layer was given mean= and variance= (constants); adapt a "
                             "Normalization() made without them.")
        data = _batches(data)
        if data.ndim < 1 or data.shape[0] == 0:
            raise ValueError(f"adapt needs a non-empty array of samples, got shape {data.shape}.")
        axes = self._axes(data.ndim)
        reduce = tuple(a for a in range(data.ndim) if a not in axes)
        mean, variance = data.mean(axis=reduce), data.var(axis=reduce)
        # Frozen dataclass: see the module docstring for why the fields are written directly.
        object.__setattr__(self, "mean", frozen_floats(mean))
        object.__setattr__(self, "variance", frozen_floats(variance))
        object.__setattr__(self, "adapted", True)
        built = self.get_weights()  # [] unless a trainer holds this layer's variables
        if built:
            self.set_weights([mean.astype(np.float32), variance.astype(np.float32), np.asarray(built[2])])
        return self

    def __call__(self, inputs, *args, **kwargs):
        if self.scope is None and not symbolic.is_symbolic(inputs):  # Keras' eager ``norm(x)``, outside a model
            x = as_float(jnp.asarray(inputs))
            return self._normalize(x, *self._statistics(x))
        return super().__call__(inputs, *args, **kwargs)

    @nn.nowrap
    def _statistics(self, x) -> tuple:
        """The layer's own mean and variance (zeros and ones before ``adapt``), shaped as ``x``'s kept axes."""
        kept = tuple(x.shape[a] for a in self._axes(x.ndim))

        def fit(value, default: float, what: str) -> np.ndarray:
            if value is None:
                return np.full(kept, default, np.float32)
            value = np.asarray(value, np.float32)
            if value.size == math.prod(kept):
                return value.reshape(kept)
            try:
                return np.broadcast_to(value, kept)
            except ValueError:
                raise ValueError(f"Normalization's {what} has shape {value.shape}, which does not fit the kept axes "
                                 f"{kept} of inputs of shape {x.shape} (axis={self.axis}): adapt it to data like "
                                 f"the model's inputs.") from None

        return fit(self.mean, 0.0, "mean"), fit(self.variance, 1.0, "variance")

    @nn.nowrap
    def _normalize(self, x, mean, variance):
        axes = self._axes(x.ndim)
        broadcast = tuple(x.shape[a] if a in axes else 1 for a in range(x.ndim))
        mean = jnp.reshape(mean, broadcast)
        std = jnp.maximum(jnp.sqrt(jnp.reshape(variance, broadcast)), EPSILON)
        return (mean + x * std if self.invert else (x - mean) / std).astype(x.dtype)

    @nn.compact
    def call(self, inputs, training: bool = False):
        x = as_float(jnp.asarray(inputs), self.compute_dtype)
        mean, variance = start_mean, start_variance = self._statistics(x)
        if self.adapted or self.mean is None:  # Keras' adapt weights; given statistics stay constants
            if self.mean is None and self.is_initializing():
                warnings.warn("This Normalization layer was neither adapted nor given mean= and variance=: it starts "
                              "at Keras' initial mean 0 and variance 1. Call norm.adapt(x_train) before building the "
                              "model (or set or load its weights).", UserWarning, stacklevel=2)
            mean = self.variable(STATS, "mean", lambda: jnp.asarray(start_mean)).value
            variance = self.variable(STATS, "variance", lambda: jnp.asarray(start_variance)).value
            self.variable(STATS, "count", lambda: jnp.zeros((), jnp.int32))
        return self._normalize(x, mean, variance)
