"""The recurrence engine under ``SimpleRNN``/``LSTM``/``GRU``: one ``jax.lax.scan`` over time,
with a backward pass written by hand (``recurrence``).

Step ``t`` computes ``z_t = linear(x_t, h_{t-1})`` (``x_t @ kernel + h_{t-1} @ recurrent_kernel``)
then the cell (elementwise gates). The backward loop runs each step's elementwise gradient and
``dz_t @ recurrent_kernel.T`` only, and the kernel gradients are one matmul each over all
``time * batch`` rows, where JAX's own accumulates them step by step inside the loop (a training
step 1.25x slower on CPU). ``x_t @ kernel`` stays inside the loop: hoisted, its
``(time, batch, k * units)`` result and gradient are 18x the MNIST-rows input, and the passes over
them cost more than the loop saves (``scripts/bench_lstm.py``). Forward-mode differentiation
(``jax.jvp``) does not go through a ``custom_vjp``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def project(v, mask, kernel):
    """``v @ kernel`` with ``v`` first multiplied by a dropout ``mask`` (if any) of shape
    ``(batch, gates, dim)``: one mask per gate block of ``kernel``'s columns (``gates == 1``: one for all).

    Args:
        v: Array ``(batch, dim)``.
        mask: Dropout multipliers ``(batch, gates, dim)``, or ``None``.
        kernel: Array ``(dim, gates * units)``.

    Returns:
        Array ``(batch, gates * units)``.
    """
    if mask is None:
        return v @ kernel
    blocks = jnp.split(kernel, mask.shape[1], axis=-1)
    return jnp.concatenate([(v * mask[:, g]) @ block for g, block in enumerate(blocks)], axis=-1)


def plus_bias(z, bias):
    """``z + bias``, in ``_step`` rather than ``_linear``: the bias gradient then sums up inside the
    backward loop (0.1 ms a training step; a sum over every step's ``dz`` afterwards took 3 ms).

    Args:
        z: The step's pre-activations.
        bias: Array broadcastable to ``z``, or ``None``.

    Returns:
        ``z + bias``, or ``z`` when ``bias`` is ``None``.
    """
    return z if bias is None else z + bias


def _scan(linear, cell, sequences, reverse, unroll, weights, xs, states, consts, keep=False):
    """``z_t = linear(masks, x_t, h_{t-1}, kernel, recurrent_kernel, fused=True)``, then ``output_t, states_t =
    cell(masks, weights, z_t, states_{t-1}, m_t)``, with ``consts = (masks, m)`` (``m``: the time-major
    sequence mask or ``None``). Returns ``(final states, outputs or None)`` and, if ``keep``, every
    step's ``(z_t, states_{t-1})``."""
    masks, seq_mask = consts

    def body(states, inputs):
        x_t, m_t = inputs
        z = linear(masks, x_t, states[0], *weights[:2], fused=True)
        output, new_states = cell(masks, weights, z, states, m_t)
        return new_states, (output if sequences else None, (z, states) if keep else None)

    final, (outputs, saved) = jax.lax.scan(body, states, (xs, seq_mask), reverse=reverse, unroll=unroll)
    return (final, outputs), saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def recurrence(linear, cell, sequences, reverse, unroll, weights, xs, states, consts):
    """``_scan`` with the backward pass of the module docstring (``linear`` must be linear).

    Args:
        linear: ``(masks, x_t, h, kernel, recurrent_kernel, fused=False) -> z_t`` (static).
        cell: ``(masks, weights, z_t, states, m_t) -> (output_t, new_states)`` (static).
        sequences: Whether to collect every step's output (static).
        reverse: Scan from the last step to the first (static).
        unroll: ``jax.lax.scan``'s ``unroll`` (static).
        weights: ``(kernel, recurrent_kernel, bias)``.
        xs: Time-major inputs ``(time, batch, features)``.
        states: Tuple of initial states, each ``(batch, units)``, ``h`` first.
        consts: ``(dropout masks, time-major sequence mask or None)``.

    Returns:
        ``(final states, outputs)``, ``outputs`` time-major ``(time, batch, units)`` (at input
        positions) or ``None`` without ``sequences``.
    """
    return _scan(linear, cell, sequences, reverse, unroll, weights, xs, states, consts)[0]


def _recurrence_fwd(linear, cell, sequences, reverse, unroll, weights, xs, states, consts):
    out, saved = _scan(linear, cell, sequences, reverse, unroll, weights, xs, states, consts, keep=True)
    return out, (weights, xs, consts, saved)


def _recurrence_bwd(linear, cell, sequences, reverse, unroll, residuals, cotangents):
    weights, xs, (masks, seq_mask), (zs, previous) = residuals
    (d_states, d_outputs), (kernel, recurrent_kernel) = cotangents, weights[:2]
    recurrent_t = recurrent_kernel.T  # materialised: on CPU a matmul by it runs 1.8x faster than by U.T

    def body(carry, inputs):
        d_states, d_weights, zs = carry
        t, x_t, states, m_t, d_out = inputs
        z = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, t, keepdims=False), zs)
        _, cell_vjp = jax.vjp(lambda w, z, s: cell(masks, w, z, s, m_t), weights, z, states)
        dw, dz, ds = cell_vjp((jnp.zeros_like(states[0]) if d_out is None else d_out, d_states))
        _, h_vjp = jax.vjp(lambda h: linear(masks, x_t, h, kernel, recurrent_t.T), states[0])
        zs = jax.tree.map(lambda a, d: jax.lax.dynamic_update_index_in_dim(a, d, t, 0), zs, dz)
        return ((ds[0] + h_vjp(dz)[0], *ds[1:]), jax.tree.map(jnp.add, d_weights, dw), zs), None

    # dz_t overwrites z_t in the forward's buffer (read just before): no zero-filled (time, batch, k * units)
    # scan output for the dzs and no copy of it (scripts/bench_lstm.py's LSTM, jitted training step on CPU:
    # 2% faster with the Trainer's compiler options, 5-8% with XLA's defaults)
    (d_states, d_weights, dzs), _ = jax.lax.scan(
        body, (d_states, jax.tree.map(jnp.zeros_like, weights), zs),
        (jnp.arange(len(xs)), xs, previous, seq_mask, d_outputs), reverse=not reverse, unroll=unroll)
    rows = functools.partial(jax.tree.map, lambda a: a.reshape(-1, *a.shape[2:]))  # (time * batch, ...)
    tiled = jax.tree.map(lambda m: jnp.tile(m, (len(xs),) + (1,) * (m.ndim - 1)), masks)
    _, linear_vjp = jax.vjp(lambda x, k, r: linear(tiled, x, rows(previous[0]), k, r), rows(xs), kernel,
                            recurrent_kernel)
    dxs, dk, dr = linear_vjp(rows(dzs))
    return (dk + d_weights[0], dr + d_weights[1], d_weights[2]), dxs.reshape(xs.shape), d_states, None


recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
