"""``Bidirectional``: a recurrent layer run forwards and a copy backwards, merged (Keras' wrapper)."""
from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax.numpy as jnp

from dlkit.layers.base import Layer
from dlkit.layers.recurrent import _RNN

_MERGE_MODES = ("concat", "sum", "ave", "mul", None)


class Bidirectional(Layer):
    """Run ``layer`` forwards and a copy backwards over the sequence and merge (Keras ``Bidirectional``).

    The copies are named ``forward_<name>`` and ``backward_<name>`` (``<name>``:
    the wrapped layer's ``name=`` or its Keras name, e.g. ``forward_lstm``) and
    hold separate weights. The backward copy has ``go_backwards=True``; with
    ``return_sequences`` its output is flipped back so that step ``t`` of both
    halves belongs to input step ``t``. ``merge_mode``: ``'concat'``
    (``[y_f, y_b]`` on the last axis), ``'sum'`` (``y_f + y_b``), ``'ave'``
    (``(y_f + y_b) / 2``), ``'mul'`` (``y_f * y_b``) or ``None`` (the pair
    ``[y_f, y_b]``). As in Keras, both copies zero the output of masked steps
    when returning sequences. ``return_state`` gives
    ``[output, *forward_states, *backward_states]`` (``[y_f, y_b, *states]``
    with ``merge_mode=None``); ``initial_state`` takes the forward states then
    the backward ones.

    Args:
        layer: The ``SimpleRNN``, ``LSTM`` or ``GRU`` to wrap (with ``go_backwards=False``); it is
            copied, not called itself.
        merge_mode: ``'concat'``, ``'sum'``, ``'ave'``, ``'mul'`` or ``None``.
        layer_name: Base name of the two copies; ``None`` (default): ``layer``'s ``name`` or Keras name.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(batch, time, features)``.
        training: Enables the wrapped layer's dropout.
        mask: Optional ``(batch, time)`` booleans, False at padded steps, passed to both copies.
        initial_state: Optional list of the forward states followed by the backward states.

    Returns:
        The merged output: ``(batch, time, 2 * units)`` with ``'concat'`` and ``return_sequences``
        (``(batch, 2 * units)`` without), ``units`` for the other modes, or the list ``[y_f, y_b]``
        with ``None``; with ``return_state``, the list described above.

    Raises:
        ValueError: ``merge_mode`` is unknown, ``layer`` is not a recurrent layer, or it has
            ``go_backwards=True``.
    """

    layer: Any
    merge_mode: Optional[str] = "concat"
    # Filled in from ``layer`` at construction: Flax renames a held module after the field that holds it.
    layer_name: Optional[str] = None
    keras_name: ClassVar[str] = "bidirectional"

    def __post_init__(self):
        if self.merge_mode not in _MERGE_MODES:
            raise ValueError(f"Invalid merge_mode {self.merge_mode!r}; use one of {_MERGE_MODES}.")
        if not isinstance(self.layer, _RNN):
            raise ValueError(f"Bidirectional wraps a SimpleRNN, LSTM or GRU, got {type(self.layer).__name__}.")
        if self.layer.go_backwards:
            raise ValueError("Bidirectional makes the backward copy itself; pass a layer with go_backwards=False.")
        if self.layer_name is None:
            object.__setattr__(self, "layer_name", self.layer.name or type(self.layer).keras_name)
        super().__post_init__()

    @nn.compact
    def call(self, inputs, training: bool = False, mask=None, initial_state=None):
        inner = self.layer
        zero = inner.return_sequences
        forward = inner.clone(parent=self, name=f"forward_{self.layer_name}", zero_output_for_mask=zero)
        backward = inner.clone(parent=self, name=f"backward_{self.layer_name}", go_backwards=True,
                               zero_output_for_mask=zero)
        forward_state = backward_state = None
        if initial_state is not None:
            half = len(initial_state) // 2
            forward_state, backward_state = list(initial_state[:half]), list(initial_state[half:])
        y = forward(inputs, training=training, mask=mask, initial_state=forward_state)
        y_rev = backward(inputs, training=training, mask=mask, initial_state=backward_state)
        states = []
        if inner.return_state:
            states = [*y[1:], *y_rev[1:]]
            y, y_rev = y[0], y_rev[0]
        if inner.return_sequences:
            y_rev = y_rev[:, ::-1]
        if self.merge_mode == "concat":
            output = jnp.concatenate([y, y_rev], axis=-1)
        elif self.merge_mode == "sum":
            output = y + y_rev
        elif self.merge_mode == "ave":
            output = (y + y_rev) / 2
        elif self.merge_mode == "mul":
            output = y * y_rev
        else:
            output = [y, y_rev]
        if inner.return_state:
            return (output if self.merge_mode is None else [output]) + states
        return output
