"""Per-row weights and the weighted sums that metric states are made of.

Every metric weighs a batch's rows by ``w = sample_weight * mask``: ``sample_weight``
is the user's (Keras' ``sample_weight`` / ``class_weight``), ``mask`` is 0 for the rows
that only pad a short last batch. A masked row gets weight exactly 0 and its values
are replaced by 0 before summing, so padding never reaches a state, even when its
values or weights are inf or NaN.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def row_weights(batch: int, sample_weight=None, mask=None) -> jax.Array:
    """One weight per batch row: Keras' ``sample_weight`` times the batch ``mask`` (each defaults to ones).

    A row whose mask is 0 gets weight exactly 0, whatever its sample weight (even NaN).

    Args:
      batch: the number of rows.
      sample_weight: ``None`` or per-row weights, shape ``(batch,)`` or ``(batch, 1)``.
      mask: ``None`` or per-row 0/1, 0 for rows that only pad a short last batch.

    Returns:
      A float32 array of shape ``(batch,)``.
    """
    parts = {}
    for what, part in (("sample_weight", sample_weight), ("mask", mask)):
        if part is None:
            continue
        part = jnp.asarray(part, jnp.float32)
        if part.ndim and part.size != batch:
            raise ValueError(f"A metric's {what} must hold one value per row ({batch} rows); got shape "
                             f"{part.shape}.")
        parts[what] = jnp.broadcast_to(part.reshape(-1) if part.ndim else part, (batch,))
    weight = parts.get("sample_weight", jnp.ones((batch,), jnp.float32))
    if "mask" in parts:
        weight = jnp.where(parts["mask"] == 0, 0.0, weight * parts["mask"])
    return weight


def broadcast_rows(weight: jax.Array, shape: tuple) -> jax.Array:
    """``weight`` (shape ``(batch,)``, or any leading part of ``shape``) broadcast over the
    trailing axes of ``shape``: one row's weight for each of its values (as Keras expands a
    ``sample_weight`` over time steps and pixels).

    Args:
      weight: per-row (or per-leading-axes) weights.
      shape: the shape of the values, batch axis first.

    Returns:
      ``weight`` broadcast to ``shape``.
    """
    weight = jnp.asarray(weight, jnp.float32)
    return jnp.broadcast_to(weight.reshape(weight.shape + (1,) * (len(shape) - weight.ndim)), shape)


def weighted(values: jax.Array, weight: jax.Array) -> jax.Array:
    """``values * weight`` (Keras' weighting of values by ``sample_weight``), exactly 0 where
    ``weight`` is 0 (so that rows padding a short batch contribute nothing even when their
    values are inf or NaN).

    Args:
      values: an array, batch axis first.
      weight: per-row weights (or weights of the leading axes of ``values``).

    Returns:
      The weighted values, float32, with the shape of ``values``.
    """
    values = jnp.asarray(values, jnp.float32)
    weight = broadcast_rows(weight, values.shape)
    return jnp.where(weight == 0, 0.0, values * weight)


def add_to_mean(state, values: jax.Array, weight: jax.Array):
    """A (Keras) ``Mean`` state plus ``sum(w * v)`` and ``sum(w)`` of ``values`` (every value of a row has the
    row's weight, so a row's further axes are averaged within the row, as Keras does).

    Args:
      state: ``{"total", "count"}``.
      values: the values, batch axis first.
      weight: per-row weights, shape ``(batch,)`` (or the leading axes of ``values``).

    Returns:
      The new state.
    """
    values = jnp.asarray(values, jnp.float32)
    weight = broadcast_rows(weight, values.shape)
    return {"total": state["total"] + jnp.sum(weighted(values, weight)).astype(state["total"].dtype),
            "count": state["count"] + jnp.sum(weight).astype(state["count"].dtype)}
