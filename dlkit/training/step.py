"""The step contract, its helpers, and the supervised step built on them.

A *train step* is a pure function ``(state, batch) -> (state, logs)``; a *test
step* (Keras' word) is ``(state, batch) -> logs``. ``state`` is a ``TrainState``;
``batch`` is a ``Batch(x, y, sample_weight, mask)``; ``logs`` is a dict of scalar
means over the batch's real rows. ``Trainer`` runs any such step in its loop
(devices, callbacks, checkpoints, History): it increments ``state.step`` after each
call and weights each batch's logs by its number of real rows, so an epoch's logs
are exact means. Pass one as ``Trainer(model, train_step=..., test_step=...)``, or
define ``train_step(self, state, batch)`` / ``test_step`` on the model's class.

``mask`` is 1 for real rows and 0 for rows that pad a short last batch. A step that
uses it (weights every per-row term by it, as ``masked_mean`` does) may run padded
batches: the supervised step does. Other steps get short batches of their own size.

Helpers for the common parts: ``step_rng`` (this step's random key), ``apply`` (the
model with mutable collections, the ``'dropout'`` stream and the added losses),
``masked_mean``, and ``TrainState.apply_gradients`` (the optimizer update, per
parameter group when there are several optimizers).

The supervised step differentiates

    loss = sum_i m_i * w_i * l(y_i, f(x_i)) / sum_i m_i  +  sum(added losses)

(summed over the outputs with their ``loss_weights``, see ``objective.py``) where
the added losses are the ``'losses'`` collection (weight penalties and other
``add_loss`` terms).
"""
from __future__ import annotations

import inspect
import zlib
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from dlkit import freezing
from dlkit.layers.base import LOSSES
from dlkit.training.objective import Objective
from dlkit.training.state import TrainState

COUNT = "_count"


class Batch(NamedTuple):
    """One batch as steps see it; ``sample_weight`` and ``mask`` have one entry per row."""

    x: Any
    y: Any
    sample_weight: jax.Array
    mask: jax.Array


class Applied(NamedTuple):
    """What ``apply`` returns: the outputs, the updated non-parameter collections
    (``batch_stats``; empty in inference), the sum of the added losses, and the
    ``'losses'`` collection itself (each ``add_loss`` term by its module path and name)."""

    outputs: Any
    model_state: dict
    added_loss: jax.Array
    losses: dict


def step_rng(state: TrainState, name: Optional[str] = None) -> jax.Array:
    """This step's random key: a function of the state's key and step count (and ``name``,
    for a second independent stream), so a restored state draws the same numbers."""
    key = jax.random.fold_in(state.rng, state.step)
    if name is not None:
        key = jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)
    return key


def apply(state: TrainState, x, params=None, training: bool = True, rng: Optional[jax.Array] = None,
          method: Any = None, **kwargs) -> Applied:
    """Run ``state.apply_fn`` on ``x`` with ``params`` (default ``state.params``).

    In training, every non-parameter collection is mutable and returned updated, and
    ``rng`` (default ``step_rng(state)``) feeds the ``'dropout'`` stream. ``training``
    is passed to modules (or ``method``) that accept it; freezing rules apply.
    """
    params = state.params if params is None else params
    rng = step_rng(state) if rng is None else rng
    mutable = [LOSSES, *state.model_state.keys()] if training else [LOSSES]
    if _accepts_training(state.apply_fn, method):
        kwargs["training"] = training
    with freezing.active(state.frozen):
        outputs, updates = state.apply_fn({"params": params, **state.model_state}, x, rngs={"dropout": rng},
                                          mutable=mutable, method=method, **kwargs)
    updates = dict(updates)
    losses = updates.pop(LOSSES, {})
    total = sum((jnp.sum(v) for v in jax.tree.leaves(losses)), jnp.zeros((), jnp.float32))
    return Applied(outputs, updates, total, losses)


def _accepts_training(apply_fn: Callable, method: Any) -> bool:
    module = getattr(apply_fn, "__self__", None)
    if module is None:
        return False
    function = type(module).__call__ if method is None else (
        getattr(type(module), method) if isinstance(method, str) else method)
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return "training" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """The mean of per-row ``values`` over the real rows (``mask`` 1)."""
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _means(loss_value, sums: dict, mask) -> dict:
    count = jnp.maximum(jnp.sum(mask), 1.0)
    return {"loss": loss_value, **{k: v / count for k, v in sums.items()}}


def make_train_step(objective: Objective) -> Callable:
    """The supervised train step: fit ``f(x)`` to ``y`` under ``objective``."""

    def train_step(state: TrainState, batch: Batch):
        def loss_fn(params):
            out = apply(state, batch.x, params, training=True)
            data_loss, sums = objective(batch.y, out.outputs, batch.sample_weight, batch.mask)
            return data_loss + out.added_loss, (sums, out.model_state)

        (loss_value, (sums, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads).replace(model_state={**state.model_state, **updates})
        return state, _means(loss_value, sums, batch.mask)

    return train_step


def make_test_step(objective: Objective) -> Callable:
    """The supervised test step: the same loss and metrics in inference mode."""

    def test_step(state: TrainState, batch: Batch):
        out = apply(state, batch.x, training=False, rng=state.rng)
        data_loss, sums = objective(batch.y, out.outputs, batch.sample_weight, batch.mask)
        return _means(data_loss + out.added_loss, sums, batch.mask)

    return test_step


def counted_train(train_step: Callable) -> Callable:
    """``train_step`` that also counts the step and turns its logs into sums (``COUNT`` rows)."""

    def run(state: TrainState, batch: Batch):
        state, logs = train_step(state, batch)
        return state.replace(step=state.step + 1), _sums(logs, batch.mask)

    return run


def counted_test(test_step: Callable) -> Callable:
    def run(state: TrainState, batch: Batch):
        return state, _sums(test_step(state, batch), batch.mask)

    return run


def _sums(logs: dict, mask) -> dict:
    count = jnp.sum(mask)
    return {**{k: jnp.asarray(v, jnp.float32) * count for k, v in logs.items()}, COUNT: count}


def means(totals: dict) -> dict:
    """Turn summed totals into per-sample means (the logs Keras shows)."""
    count = totals[COUNT]
    return {k: v / count for k, v in totals.items() if k != COUNT}
