"""Recurrent layers: ``SimpleRNN``, ``LSTM``, ``GRU`` and the ``Bidirectional`` wrapper (Keras' names).

Inputs are batch-major, ``(batch, time, features)``. Weights are Keras' own:
``kernel`` ``(features, k * units)``, ``recurrent_kernel`` ``(units, k * units)``
and ``bias`` ``(k * units,)`` (``(2, 3 * units)`` for ``GRU(reset_after=True)``),
the ``k`` gate blocks side by side in Keras' order (LSTM ``i, f, c, o``; GRU
``z, r, h``), so ``set_weights`` between Keras and dlkit needs no reshuffling.

How a call runs: ``x @ kernel`` (plus the input bias) is computed for every
step at once, outside the loop; ``jax.lax.scan`` then runs only the recurrent
part ``h_{t-1} @ recurrent_kernel`` and the gates, step by step.

Each layer's ``call(inputs, training=False, mask=None, initial_state=None)``:

* ``mask``, ``(batch, time)`` booleans (``Embedding.compute_mask``): at a step
  whose mask is False the states are carried over unchanged and the output is
  the previous output ``h_{t-1}`` (zeros if ``zero_output_for_mask``), exactly
  Keras' JAX-backend loop.
* ``go_backwards``: the sequence is read from its last step to its first; the
  returned sequence is in that (reversed) processing order, as in Keras.
* ``dropout`` / ``recurrent_dropout`` (training only): one inverted-dropout mask
  per sequence on the inputs, of shape ``(batch, features)``, and one on
  ``h_{t-1}`` where it enters ``h_{t-1} @ recurrent_kernel``, of shape
  ``(batch, units)``; each is drawn once per call from the ``'dropout'`` stream
  and reused at every time step (variational dropout). Keras 3 draws the same
  masks when ``recurrent_dropout == 0``; with ``recurrent_dropout > 0`` it
  switches to one mask per gate, dlkit keeps one mask for all gates.
* ``return_state``: ``[output, h]`` (``[output, h, c]`` for LSTM), final states.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlkit import activations, initializers, regularizers
from dlkit.layers.base import Layer, add_loss


def _dropout_mask(module: nn.Module, rate: float, shape: tuple):
    """``keep / (1 - rate)`` with ``keep ~ Bernoulli(1 - rate)``: inverted dropout's multiplier."""
    keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, shape)
    return keep.astype(jnp.float32) / (1.0 - rate)


class _RNN(Layer):
    """The loop shared by SimpleRNN, LSTM and GRU. Subclasses declare Keras' fields
    (in Keras' positional order) and implement ``_step``. The helpers are ``nn.nowrap``:
    plain functions to Flax, so ``capture_intermediates`` (the summary) sees only ``call``
    and nothing is sown from inside the scan."""

    gates: ClassVar[int] = 1
    state_count: ClassVar[int] = 1

    # -------------------------------------------------------------- weights
    @nn.nowrap
    def _bias_shape(self) -> tuple:
        return (self.gates * self.units,)

    @nn.nowrap
    def _bias_initializer(self):
        return initializers.get(self.bias_initializer)

    @nn.nowrap
    def _weights(self, input_dim: int):
        width = self.gates * self.units
        kernel = self.param("kernel", initializers.get(self.kernel_initializer), (input_dim, width), jnp.float32)
        recurrent = self.param("recurrent_kernel", initializers.get(self.recurrent_initializer),
                               (self.units, width), jnp.float32)
        bias = self.param("bias", self._bias_initializer(), self._bias_shape(), jnp.float32) if self.use_bias else None
        for regularizer, value in ((self.kernel_regularizer, kernel), (self.recurrent_regularizer, recurrent),
                                   (self.bias_regularizer, bias)):
            penalty = regularizers.get(regularizer)
            if penalty is not None and value is not None:
                add_loss(self, penalty(value))
        return kernel, recurrent, bias

    @nn.nowrap
    def _input_bias(self, bias):
        return bias

    @nn.nowrap
    def _step(self, xw, states, h_dropped, recurrent_kernel, bias):
        """One step: ``xw = x_t @ kernel (+ input bias)``, ``states`` the previous states,
        ``h_dropped`` the previous ``h`` times the recurrent dropout mask. Returns ``(h, new_states)``."""
        raise NotImplementedError

    # -------------------------------------------------------------- the loop
    @nn.compact
    def call(self, inputs, training: bool = False, mask=None, initial_state=None):
        inputs = jnp.asarray(inputs)
        if inputs.ndim != 3:
            raise ValueError(f"{type(self).__name__} expects inputs of shape (batch, time, features), got "
                             f"shape {inputs.shape}.")
        for what, rate in (("dropout", self.dropout), ("recurrent_dropout", self.recurrent_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{type(self).__name__}: {what} must be in [0, 1), got {rate}.")
        batch, steps, features = inputs.shape
        kernel, recurrent_kernel, bias = self._weights(features)
        inputs = inputs.astype(kernel.dtype)

        if training and self.dropout > 0.0:  # one mask per sequence, the same at every step
            inputs = inputs * _dropout_mask(self, self.dropout, (batch, 1, features))
        recurrent_mask = None
        if training and self.recurrent_dropout > 0.0:
            recurrent_mask = _dropout_mask(self, self.recurrent_dropout, (batch, self.units))

        xw = inputs @ kernel  # every step's input projection, outside the loop
        input_bias = self._input_bias(bias)
        if input_bias is not None:
            xw = xw + input_bias
        xs = jnp.swapaxes(xw, 0, 1)  # time-major for scan
        if mask is not None:
            mask = jnp.asarray(mask).astype(bool)
            if mask.shape != (batch, steps):
                raise ValueError(f"{type(self).__name__}: mask must have shape (batch, time) = {(batch, steps)}, "
                                 f"got {mask.shape}.")
            mask = jnp.swapaxes(mask, 0, 1)[..., None]

        states = self._initial_states(initial_state, batch, kernel.dtype)

        def body(states, step_inputs):
            x_t, m_t = step_inputs
            h_dropped = states[0] if recurrent_mask is None else states[0] * recurrent_mask
            output, new_states = self._step(x_t, states, h_dropped, recurrent_kernel, bias)
            if m_t is not None:  # masked step: keep the states, repeat (or zero) the output
                new_states = tuple(jnp.where(m_t, new, old) for new, old in zip(new_states, states))
                output = jnp.where(m_t, output, jnp.zeros_like(output) if self.zero_output_for_mask else states[0])
            return tuple(new_states), output

        states, outputs = jax.lax.scan(body, states, (xs, mask), reverse=self.go_backwards,
                                       unroll=steps if self.unroll else 1)
        if self.go_backwards:  # scan(reverse=True) leaves outputs at input positions; Keras returns them in
            outputs = outputs[::-1]  # processing order
        outputs = jnp.swapaxes(outputs, 0, 1)
        output = outputs if self.return_sequences else outputs[:, -1]
        if self.return_state:
            return [output, *states]
        return output

    @nn.nowrap
    def _initial_states(self, initial_state, batch: int, dtype):
        if initial_state is None:
            return tuple(jnp.zeros((batch, self.units), dtype) for _ in range(self.state_count))
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if len(initial_state) != self.state_count:
            raise ValueError(f"{type(self).__name__} has {self.state_count} state(s); initial_state gave "
                             f"{len(initial_state)}.")
        states = tuple(jnp.asarray(s, dtype) for s in initial_state)
        for s in states:
            if s.shape != (batch, self.units):
                raise ValueError(f"{type(self).__name__}: each initial state must have shape (batch, units) = "
                                 f"{(batch, self.units)}, got {s.shape}.")
        return states


class SimpleRNN(_RNN):
    """Fully connected recurrence: ``h_t = activation(x_t @ W + b + h_{t-1} @ U)``; the output is ``h_t``.

    ``W`` is ``kernel`` ``(features, units)``, ``U`` ``recurrent_kernel``
    ``(units, units)``, ``b`` ``bias`` ``(units,)``. See the module docstring
    for ``mask``, ``go_backwards``, dropout and ``return_state``.
    """

    units: int
    activation: Any = "tanh"
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    recurrent_initializer: Any = "orthogonal"
    bias_initializer: Any = "zeros"
    kernel_regularizer: Any = None
    recurrent_regularizer: Any = None
    bias_regularizer: Any = None
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    unroll: bool = False
    zero_output_for_mask: bool = False
    keras_name: ClassVar[str] = "simple_rnn"

    @nn.nowrap
    def _step(self, xw, states, h_dropped, recurrent_kernel, bias):
        h = activations.get(self.activation)(xw + h_dropped @ recurrent_kernel)
        return h, (h,)


class LSTM(_RNN):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), Keras' equations::

        i = sigma(x_t W_i + h_{t-1} U_i + b_i)        (sigma: recurrent_activation)
        f = sigma(x_t W_f + h_{t-1} U_f + b_f)
        g = act(x_t W_c + h_{t-1} U_c + b_c)          (act: activation)
        o = sigma(x_t W_o + h_{t-1} U_o + b_o)
        c_t = f * c_{t-1} + i * g
        h_t = o * act(c_t)                             (the output)

    ``kernel = [W_i | W_f | W_c | W_o]`` ``(features, 4 * units)``, likewise
    ``recurrent_kernel`` ``(units, 4 * units)`` and ``bias`` ``(4 * units,)``.
    ``unit_forget_bias`` initialises ``b_f`` to ones (Jozefowicz et al., 2015).
    States: ``[h, c]``.
    """

    units: int
    activation: Any = "tanh"
    recurrent_activation: Any = "sigmoid"
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    recurrent_initializer: Any = "orthogonal"
    bias_initializer: Any = "zeros"
    unit_forget_bias: bool = True
    kernel_regularizer: Any = None
    recurrent_regularizer: Any = None
    bias_regularizer: Any = None
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    unroll: bool = False
    zero_output_for_mask: bool = False
    keras_name: ClassVar[str] = "lstm"
    gates: ClassVar[int] = 4
    state_count: ClassVar[int] = 2

    @nn.nowrap
    def _bias_initializer(self):
        init, units = initializers.get(self.bias_initializer), self.units
        if not self.unit_forget_bias:
            return init

        def forget_ones(key, shape, dtype=jnp.float32):
            k1, k2 = jax.random.split(key)
            return jnp.concatenate([init(k1, (units,), dtype), jnp.ones((units,), dtype),
                                    init(k2, (2 * units,), dtype)])
        return forget_ones

    @nn.nowrap
    def _step(self, xw, states, h_dropped, recurrent_kernel, bias):
        _, c = states
        act, sigma = activations.get(self.activation), activations.get(self.recurrent_activation)
        z_i, z_f, z_c, z_o = jnp.split(xw + h_dropped @ recurrent_kernel, 4, axis=-1)
        c = sigma(z_f) * c + sigma(z_i) * act(z_c)
        h = sigma(z_o) * act(c)
        return h, (h, c)


class GRU(_RNN):
    """Gated recurrent unit (Cho et al., 2014), Keras' equations::

        z = sigma(x_t W_z + b_z + h_{t-1} U_z + b'_z)     (update gate; sigma: recurrent_activation)
        r = sigma(x_t W_r + b_r + h_{t-1} U_r + b'_r)     (reset gate)
        reset_after=True:  n = act(x_t W_h + b_h + r * (h_{t-1} U_h + b'_h))
        reset_after=False: n = act(x_t W_h + b_h + (r * h_{t-1}) U_h)
        h_t = z * h_{t-1} + (1 - z) * n                    (the output)

    ``kernel = [W_z | W_r | W_h]`` ``(features, 3 * units)``, likewise
    ``recurrent_kernel``. ``bias`` is ``[b; b']`` of shape ``(2, 3 * units)``
    with ``reset_after=True`` (Keras 3's default, cuDNN-compatible) and ``b``
    of shape ``(3 * units,)`` (no ``b'``) with ``reset_after=False``.
    """

    units: int
    activation: Any = "tanh"
    recurrent_activation: Any = "sigmoid"
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    recurrent_initializer: Any = "orthogonal"
    bias_initializer: Any = "zeros"
    kernel_regularizer: Any = None
    recurrent_regularizer: Any = None
    bias_regularizer: Any = None
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    unroll: bool = False
    reset_after: bool = True
    zero_output_for_mask: bool = False
    keras_name: ClassVar[str] = "gru"
    gates: ClassVar[int] = 3

    @nn.nowrap
    def _bias_shape(self) -> tuple:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    @nn.nowrap
    def _input_bias(self, bias):
        return bias[0] if bias is not None and self.reset_after else bias

    @nn.nowrap
    def _step(self, xw, states, h_dropped, recurrent_kernel, bias):
        (h_prev,) = states
        act, sigma = activations.get(self.activation), activations.get(self.recurrent_activation)
        u = self.units
        x_z, x_r, x_h = jnp.split(xw, 3, axis=-1)
        if self.reset_after:
            inner = h_dropped @ recurrent_kernel
            if bias is not None:
                inner = inner + bias[1]
            z, r = sigma(x_z + inner[:, :u]), sigma(x_r + inner[:, u:2 * u])
            n = act(x_h + r * inner[:, 2 * u:])
        else:
            inner = h_dropped @ recurrent_kernel[:, :2 * u]
            z, r = sigma(x_z + inner[:, :u]), sigma(x_r + inner[:, u:])
            n = act(x_h + (r * h_dropped) @ recurrent_kernel[:, 2 * u:])
        h = z * h_prev + (1.0 - z) * n
        return h, (h,)


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
