"""Sequence-to-sequence helpers: teacher-forcing inputs and greedy (autoregressive) decoding.

An encoder-decoder is trained with teacher forcing (Chollet, ch. 11): the
decoder reads the target shifted right by one step behind a start token and
learns to predict the target itself::

    decoder_inputs = shift_right(targets, start_token)    # [s, y0, y1, ..., y_{T-2}]
    trainer.fit([encoder_inputs, decoder_inputs], targets, ...)

At inference there is no target to read: the decoder is fed its own previous
predictions, one step at a time. ``greedy_decode`` does that with a fixed-size
buffer of ``length`` tokens and ``jax.lax.fori_loop``, so the whole decode is
one traced loop (one compilation, whatever ``length``), not one program per
step. Each step re-runs the model (encoder included) on the full buffer and
reads position ``t``: ``length`` full forward passes, cheap for short
sequences and free of any per-model cache logic. That is correct for any
*causal* decoder (a Transformer decoder's causal self-attention, a forward
LSTM), whose output at ``t`` does not depend on the not-yet-filled positions
after ``t``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlkit.layers.base import accepts_training


def shift_right(targets, start_token: int):
    """``[start_token, y_0, ..., y_{T-2}]`` per row of ``targets (B, T)``: the teacher-forcing decoder input.

    Numpy in, numpy out (for preparing data); jax arrays otherwise.

    Args:
        targets: Token array ``(B, T)``.
        start_token: The token put in front.

    Returns:
        Array ``(B, T)`` of ``targets``' dtype.
    """
    xp = np if isinstance(targets, np.ndarray) else jnp
    start = xp.full((targets.shape[0], 1), start_token, targets.dtype)
    return xp.concatenate([start, targets[:, :-1]], axis=1)


def greedy_decode(predict_fn: Callable, encoder_inputs: Any, start_token: int, length: int):
    """Decode ``length`` tokens greedily: ``y_t = argmax predict_fn(encoder_inputs, [s, y_0..y_{t-1}, ...])[:, t]``.

    ``predict_fn(encoder_inputs, decoder_inputs)`` maps the source (any pytree
    whose leaves have the batch axis first) and int32 decoder tokens
    ``(B, length)`` to scores ``(B, length, vocabulary)`` (logits or
    probabilities: only the argmax is used), and must be causal (see the
    module docstring). Returns the decoded tokens, int32 ``(B, length)``.

    Traceable: call it inside ``jax.jit`` (``greedy_decoder`` does) so the
    loop body is compiled once.

    Args:
        predict_fn: ``(encoder_inputs, decoder_inputs) -> scores (B, length, vocabulary)``, causal.
        encoder_inputs: The source, a pytree of arrays with the batch axis first.
        start_token: The token that starts every decoder input.
        length: Number of tokens to decode.

    Returns:
        The decoded tokens, int32 ``(B, length)``.
    """
    batch = jax.tree.leaves(encoder_inputs)[0].shape[0]

    def step(t, tokens):
        # Positions > t of the buffer still hold start tokens; a causal decoder never looks at them.
        scores = predict_fn(encoder_inputs, shift_right(tokens, start_token))
        scores_t = jax.lax.dynamic_index_in_dim(scores, t, axis=1, keepdims=False)
        next_token = jnp.argmax(scores_t, axis=-1).astype(jnp.int32)
        return jax.lax.dynamic_update_index_in_dim(tokens, next_token, t, axis=1)

    tokens = jnp.full((batch, length), start_token, jnp.int32)
    return jax.lax.fori_loop(0, length, step, tokens)


def greedy_decoder(model, start_token: int, length: int) -> Callable:
    """A jitted ``decode(variables, encoder_inputs) -> tokens (B, length)`` for a two-input model.

    ``model`` is called as in training, ``model.apply(variables, (encoder_inputs,
    decoder_inputs), training=False)`` (a ``dlkit.Model([encoder_input,
    decoder_input], scores)`` fit with ``fit([enc, dec], targets)``), and
    decoded with ``greedy_decode``. Pass ``trainer.state.variables``; a new
    batch shape compiles once more. For other calling conventions, wrap the
    model in a ``predict_fn`` and call ``greedy_decode`` directly.

    Args:
        model: A Linen module called as ``model((encoder_inputs, decoder_inputs))``.
        start_token: The token that starts every decoder input.
        length: Number of tokens to decode.

    Returns:
        The jitted function ``decode(variables, encoder_inputs) -> int32 tokens (B, length)``.
    """
    kwargs = {"training": False} if accepts_training(model) else {}

    @jax.jit
    def decode(variables, encoder_inputs):
        def predict_fn(source, decoder_inputs):
            return model.apply(variables, (source, decoder_inputs), **kwargs)
        return greedy_decode(predict_fn, encoder_inputs, start_token, length)

    return decode
