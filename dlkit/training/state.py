"""The explicit training state: one pytree holding everything training changes."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
    """``params`` (trainable), ``model_state`` (other collections, e.g. ``batch_stats``),
    ``opt_state`` (optax), ``step`` (optimizer steps taken) and ``rng`` (every random
    draw of training, shuffling included, derives from it, so a saved state resumes exactly)."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    frozen: tuple = flax.struct.field(pytree_node=False, default=())  # freezing rules ((path, trainable), ...)

    @classmethod
    def create(cls, variables: dict, tx: optax.GradientTransformation, rng: jax.Array) -> "TrainState":
        variables = dict(variables)
        params = variables.pop("params", {})
        return cls(
            step=jax.numpy.zeros((), jax.numpy.int32),
            params=params,
            model_state=variables,
            opt_state=tx.init(params),
            rng=rng,
            tx=tx,
        )

    @property
    def variables(self) -> dict:
        """What ``model.apply`` takes: ``{'params': ..., **model_state}``."""
        return {"params": self.params, **self.model_state}
