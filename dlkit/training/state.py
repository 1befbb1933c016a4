"""The explicit training state: one pytree holding everything training changes."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Optional

import flax.core
import flax.struct
import jax
import optax

from dlkit import mixed_precision


@flax.struct.dataclass
class TrainState:
    """The explicit training state: what a Keras model and its optimizer hold as variables, as one pytree.

    A ``flax.struct`` dataclass: its array fields are leaves, ``tx``, ``apply_fn`` and
    ``frozen`` static.

    ``tx`` is one optax transformation, or a dict of them keyed by top-level parameter
    groups (``{'generator': ..., 'discriminator': ...}``): each group then has its own
    optimizer state, and ``apply_gradients(grads, part='generator')`` updates that group
    alone, leaving every other parameter and optimizer state bitwise unchanged.
    ``replace(**fields)`` (from ``flax.struct``) returns a copy with those fields replaced.

    Args:
      step: the number of batches trained on, an int32 scalar.
      params: the parameters, the ``'params'`` collection (frozen ones included).
      model_state: the other collections, e.g. ``batch_stats``.
      opt_state: the optax state (a dict of them with several optimizers).
      rng: the key every random draw of training derives from, with ``step`` (shuffling
        included), so a saved state resumes exactly.
      tx: the optax transformation, or a ``FrozenDict`` of them.
      apply_fn: the model's ``apply``.
      frozen: the freezing rules ``((path, trainable), ...)`` (``dlkit.training.freezing``).
      loss_scale: Keras' ``LossScaleOptimizer`` state under ``"mixed_float16"`` (a Flax
        ``DynamicScale``: the scale and the count of finite steps), else ``None``.
      dtype_policy: the ``Trainer``'s ``dtype_policy`` (static), the policy ``apply`` runs the
        model under for layers without a ``dtype=`` of their own; ``None``: theirs.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array
    tx: Any = flax.struct.field(pytree_node=False)
    apply_fn: Optional[Callable] = flax.struct.field(pytree_node=False, default=None)
    frozen: tuple = flax.struct.field(pytree_node=False, default=())  # freezing rules ((path, trainable), ...)
    loss_scale: Any = None
    dtype_policy: Any = flax.struct.field(pytree_node=False, default=None)

    @classmethod
    def create(cls, variables: dict, tx, rng: jax.Array, apply_fn: Optional[Callable] = None,
               dtype_policy: Any = None, loss_scaling: bool = False) -> TrainState:
        """The state before training: step 0 and a fresh optimizer state.

        Args:
          variables: the output of ``model.init``; ``'params'`` become ``params``, the rest ``model_state``.
          tx: an optax transformation, or a dict of them, one per top-level parameter group.
          rng: the training key.
          apply_fn: the model's ``apply``.
          dtype_policy: the ``dtype_policy`` field (``dlkit.mixed_precision``), or ``None``.
          loss_scaling: start Keras' dynamic loss scale (``"mixed_float16"``).

        Returns:
          The new ``TrainState``.

        Raises:
          ValueError: for a dict of optimizers that does not match the parameter groups.
        """
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
            loss_scale=mixed_precision.initial_loss_scale() if loss_scaling else None,
            dtype_policy=dtype_policy,
        )

    @property
    def variables(self) -> dict:
        """What ``model.apply`` takes: ``{'params': ..., **model_state}``."""
        return {"params": self.params, **self.model_state}

    def apply_gradients(self, grads, part: Optional[str] = None) -> TrainState:
        """One optimizer update: ``params <- params + tx.update(grads)``.

        Args:
          grads: gradients shaped like ``params`` (like ``params[part]`` with ``part``).
          part: with several optimizers, the parameter group ``grads`` are for; else ``None``.

        Returns:
          The state with new ``params`` and ``opt_state`` (``step`` is left to the loop).

        Raises:
          ValueError: for ``part`` with one optimizer, or a ``part`` that is not a group.
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
    """A dict of optimizers as a ``FrozenDict`` (a static field of a jitted pytree must hash).

    Args:
      tx: an optax transformation, or a dict of them.

    Returns:
      ``tx`` itself, or the dict as a ``flax.core.FrozenDict``.
    """
    return flax.core.FrozenDict(tx) if isinstance(tx, Mapping) else tx


def init_optimizer(tx, params):
    """The optimizer state for ``params``: one state, or one per parameter group.

    Args:
      tx: an optax transformation, or a dict of them keyed by top-level parameter group.
      params: the parameters.

    Returns:
      ``tx.init(params)``, or ``{part: tx[part].init(params[part])}``.

    Raises:
      ValueError: unless the dict's keys are exactly the top-level parameter groups.
    """
    if not isinstance(tx, Mapping):
        return tx.init(params)
    missing = set(tx) - set(params)
    if missing or set(params) - set(tx):
        raise ValueError(f"One optimizer per parameter group: the optimizer dict has {sorted(tx)}, the model's "
                         f"top-level parameter groups are {sorted(params)}. Give each group exactly one optimizer.")
    return {part: tx[part].init(params[part]) for part in tx}
