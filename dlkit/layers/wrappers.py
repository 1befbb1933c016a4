"""``TimeDistributed``: one layer applied to every time step (Keras' wrapper).

``y[:, t] = layer(x[:, t])`` for each step ``t``, with one set of weights shared by all
steps: the time axis is folded into the batch axis, ``(batch, time, ...) -> (batch * time,
...)``, the layer runs once on that, and the result is unfolded again. A layer that mixes
the rows of its batch (``BatchNormalization`` in training) therefore sees every step of
every sample, as in Keras.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax

from dlkit.calling import call_with_training
from dlkit.layers.base import Layer


class TimeDistributed(Layer):
    """Keras' ``TimeDistributed``: apply ``layer`` to each time step (formula in the module docstring).

    The wrapped layer is copied under its own name (its ``name=`` or its Keras name, e.g.
    ``dense``) inside this one, so its weights read ``time_distributed/dense/kernel`` as in Keras.

    Args:
        layer: Any layer or Linen module taking ``(batch, ...)`` samples; it is copied, not called itself.
        layer_name: Name of the copy; ``None`` (default): ``layer``'s ``name`` or Keras name.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, time, ...)``.
        training: Passed on to the wrapped layer (if it takes it).

    Returns:
        ``(batch, time, ...)``: the wrapped layer's output per step (each array of a structured output unfolded).

    Raises:
        ValueError: ``layer`` is not a Linen module (when the layer is made), or inputs of rank below 3.
    """

    layer: Any
    # Filled in from ``layer`` at construction: Flax renames a held module after the field that holds it.
    layer_name: Optional[str] = None
    keras_name: ClassVar[str] = "time_distributed"

    def __post_init__(self):
        if not isinstance(self.layer, nn.Module):
            raise ValueError(f"TimeDistributed(layer=...) must be a layer, got {type(self.layer).__name__}.")
        if self.layer_name is None:
            from_class = getattr(type(self.layer), "keras_name", None) or type(self.layer).__name__.lower()
            object.__setattr__(self, "layer_name", self.layer.name or from_class)
        super().__post_init__()

    @nn.compact
    def call(self, inputs, training: bool = False):
        if inputs.ndim < 3:
            raise ValueError(f"TimeDistributed expects inputs (batch, time, ...) of rank 3 or more, "
                             f"got shape {inputs.shape}.")
        batch, time = inputs.shape[:2]
        inner = self.layer.clone(parent=self, name=self.layer_name)
        outputs = call_with_training(inner, inputs.reshape(batch * time, *inputs.shape[2:]), training)
        return jax.tree.map(lambda y: y.reshape(batch, time, *y.shape[1:]), outputs)
