"""The explicit training state: one pytree holding everything training changes."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Optional

import flax.core
import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
    """``params`` (trainable), ``model_state`` (other collections, e.g. ``batch_stats``),
    ``opt_state`` (optax), ``step`` (batches trained on) and ``rng`` (every random draw of
    training, shuffling included, derives from it and ``step``, so a saved state resumes
    exactly).

    ``tx`` is one optax transformation, or a dict of them keyed by top-level parameter
    groups (``{'generator': ..., 'discriminator': ...}``): each group then has its own
    optimizer state, and ``apply_gradients(grads, part='generator')`` updates that group
    alone, leaving every other parameter and optimizer state bitwise unchanged.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array
    tx: Any = flax.struct.field(pytree_node=False)
    apply_fn: Optional[Callable] = flax.struct.field(pytree_node=False, default=None)
    frozen: tuple = flax.struct.field(pytree_node=False, default=())  # freezing rules ((path, trainable), ...)

    @classmethod
    def create(cls, variables: dict, tx, rng: jax.Array, apply_fn: Optional[Callable] = None) -> TrainState:
        variables = dict(variables)
        params = variables.pop("params", {})
        return cls(
            step=jax.numpy.zeros((), jax.numpy.int32),
            params=params,
            model_state=variables,
            opt_state=init_optimizer(tx, params),
            rng=rng,
            tx=hashable(tx),
            apply_fn=apply_fn,
        )

    @property
    def variables(self) -> dict:
        """What ``model.apply`` takes: ``{'params': ..., **model_state}``."""
        return {"params": self.params, **self.model_state}

    def apply_gradients(self, grads, part: Optional[str] = None) -> TrainState:
        """One optimizer update: ``params <- params + tx.update(grads)``.

        With several optimizers, ``part`` names the parameter group ``grads`` are for.
        """
        if not isinstance(self.tx, Mapping):
            if part is not None:
                raise ValueError(f"apply_gradients(part={part!r}) needs one optimizer per parameter group, "
                                 f"e.g. Trainer(..., optimizer={{{part!r}: 'adam', ...}}).")
            updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
            return self.replace(params=optax.apply_updates(self.params, updates), opt_state=opt_state)
        if part not in self.tx:
            raise ValueError(f"apply_gradients needs part= one of the optimizer's parameter groups "
                             f"{sorted(self.tx)}, got {part!r}.")
        updates, opt_state = self.tx[part].update(grads, self.opt_state[part], self.params[part])
        return self.replace(params={**self.params, part: optax.apply_updates(self.params[part], updates)},
                            opt_state={**self.opt_state, part: opt_state})


def hashable(tx):
    """A dict of optimizers as a ``FrozenDict`` (a static field of a jitted pytree must hash)."""
    return flax.core.FrozenDict(tx) if isinstance(tx, Mapping) else tx


def init_optimizer(tx, params):
    """The optimizer state for ``params``: one state, or one per parameter group."""
    if not isinstance(tx, Mapping):
        return tx.init(params)
    missing = set(tx) - set(params)
    if missing or set(params) - set(tx):
        raise ValueError(f"One optimizer per parameter group: the optimizer dict has {sorted(tx)}, the model's "
                         f"top-level parameter groups are {sorted(params)}. Give each group exactly one optimizer.")
    return {part: tx[part].init(params[part]) for part in tx}
