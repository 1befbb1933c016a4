"""The pure steps: ``(state, batch) -> (state, totals)``.

A batch is ``(x, y, weight, mask)``: ``weight`` is each sample's weight
(Keras' ``sample_weight``), ``mask`` is 1 for real rows and 0 for padding, so
every step reports *sums* over real samples (``totals``) plus their count, and
an epoch's mean is exact whatever the batch sizes. The loss that is
differentiated is

    loss = sum_i m_i * w_i * l(y_i, f(x_i)) / sum_i m_i  +  sum(added losses)

(summed over the outputs with their ``loss_weights``, see ``objective.py``)

where the added losses are the ``'losses'`` collection (weight penalties and
other ``add_loss`` terms).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from dlkit.layers.base import LOSSES
from dlkit.training.objective import Objective
from dlkit import freezing
from dlkit.training.state import TrainState

COUNT = "_count"


def added_losses(updates: dict):
    """The sum of every term sown into the ``'losses'`` collection."""
    leaves = jax.tree.leaves(updates.get(LOSSES, {}))
    return sum((jnp.sum(v) for v in leaves), jnp.zeros((), jnp.float32))


def apply_model(apply_fn: Callable, state: TrainState, params, x, training: bool, rng, pass_training: bool):
    """Run the model; return outputs, updated non-param collections and added losses."""
    mutable = [LOSSES, *state.model_state.keys()] if training else [LOSSES]
    kwargs = {"training": training} if pass_training else {}
    with freezing.active(state.frozen):
        outputs, updates = apply_fn(
            {"params": params, **state.model_state}, x, rngs={"dropout": rng}, mutable=mutable, **kwargs)
    updates = dict(updates)
    extra = added_losses(updates)
    updates.pop(LOSSES, None)
    return outputs, updates, extra


def _totals(loss_value, sums: dict, mask) -> dict:
    count = jnp.sum(mask)
    return {"loss": loss_value * count, COUNT: count, **sums}


def make_train_step(apply_fn: Callable, objective: Objective, pass_training: bool = True):
    """Build the pure training step ``(state, (x, y, weight, mask)) -> (state, totals)``."""

    def train_step(state: TrainState, batch):
        x, y, weight, mask = batch
        rng, step_rng = jax.random.split(state.rng)

        def loss_fn(params):
            outputs, updates, extra = apply_model(apply_fn, state, params, x, True, step_rng, pass_training)
            data_loss, sums = objective(y, outputs, weight, mask)
            return data_loss + extra, (sums, updates)

        (loss_value, (sums, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, param_updates),
            opt_state=opt_state,
            model_state={**state.model_state, **updates},
            rng=rng,
        )
        return new_state, _totals(loss_value, sums, mask)

    return train_step


def make_eval_step(apply_fn: Callable, objective: Objective, pass_training: bool = True):
    """Build the pure evaluation step ``(state, (x, y, weight, mask)) -> (state, totals)``
    (inference mode; the state is returned unchanged, so both steps share one shape)."""

    def eval_step(state: TrainState, batch):
        x, y, weight, mask = batch
        outputs, _, extra = apply_model(apply_fn, state, state.params, x, False, state.rng, pass_training)
        data_loss, sums = objective(y, outputs, weight, mask)
        return state, _totals(data_loss + extra, sums, mask)

    return eval_step


def means(totals: dict) -> dict:
    """Turn summed totals into per-sample means (the logs Keras shows)."""
    count = totals[COUNT]
    return {k: v / count for k, v in totals.items() if k != COUNT}
