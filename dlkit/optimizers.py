"""Optimizers under Keras' names and defaults, resolved to optax.

Every constructor wraps its optax transformation in ``optax.inject_hyperparams``
so the learning rate lives in the optimizer state: callbacks can change it
without recompiling the step. ``learning_rate`` may be a float or an optax
schedule (a function of the step count). Any ``optax.GradientTransformation``
is accepted as is wherever an optimizer is.

Keras' gradient clipping arguments, applied to the gradients before the update:
``clipvalue=v`` clips each element to ``[-v, v]``; ``clipnorm=c`` rescales each
weight's gradient ``g`` to ``g * min(1, c / ||g||)``; ``global_clipnorm=c`` rescales
all of them together by ``min(1, c / sqrt(sum ||g||^2))``.

Keras' weight averaging: ``use_ema=True`` keeps ``average = ema_momentum * average +
(1 - ema_momentum) * weights`` after every update (``average = weights`` after the first);
``ema_overwrite_frequency=n`` sets the weights to the average every ``n`` updates, and
``Trainer.fit`` sets them to it when training ends (Keras' ``finalize_variable_values``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from dlkit._registry import lookup


def clip_by_norm(max_norm: float) -> optax.GradientTransformation:
    """Keras' ``clipnorm``: each gradient array is rescaled to L2 norm at most ``max_norm``."""
    def clip(g):
        norm = jnp.sqrt(jnp.sum(jnp.square(g)))
        return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))

    return optax.stateless(lambda updates, params=None: jax.tree.map(clip, updates))


class EmaState(NamedTuple):
    inner: Any
    average: Any
    count: jax.Array


def ema_weights(inner: optax.GradientTransformation, momentum: float = 0.99,
                overwrite_frequency: Optional[int] = None) -> optax.GradientTransformation:
    """``inner`` plus Keras' ``use_ema``: the state keeps a moving average of the updated weights."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"ema_momentum must be in [0, 1], got {momentum}.")
    if overwrite_frequency is not None and (not isinstance(overwrite_frequency, int) or overwrite_frequency < 1):
        raise ValueError(f"ema_overwrite_frequency must be an integer >= 1 or None, got {overwrite_frequency!r}.")

    def init(params):
        return EmaState(inner.init(params), jax.tree.map(jnp.copy, params), jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("use_ema needs the weights: call update(grads, state, params).")
        updates, inner_state = inner.update(updates, state.inner, params)
        weights = optax.apply_updates(params, updates)
        average = optax.incremental_update(weights, state.average, jnp.where(state.count == 0, 1.0, 1.0 - momentum))
        count = state.count + 1
        if overwrite_frequency:
            overwrite = count % overwrite_frequency == 0
            updates = jax.tree.map(lambda u, a, p: jnp.where(overwrite, a - p, u), updates, average, params)
        return updates, EmaState(inner_state, average, count)

    return optax.GradientTransformation(init, update)


def averaged_weights(tx, opt_state, params):
    """``params`` with every weight that a ``use_ema`` optimizer averages replaced by its average
    (``params`` itself when there is none): Keras' ``finalize_variable_values``."""
    if isinstance(tx, Mapping):
        return {part: averaged_weights(tx[part], opt_state[part], params[part]) for part in params}
    found = _find(opt_state, EmaState)
    if found is None:
        return params
    return jax.tree.map(lambda a, p: p if isinstance(a, optax.MaskedNode) else a, found.average,
                        params, is_leaf=lambda a: isinstance(a, optax.MaskedNode))  # MaskedNode: a frozen weight


def _find(opt_state, kind):
    if isinstance(opt_state, kind):
        return opt_state
    parts = opt_state.values() if isinstance(opt_state, dict) else opt_state if isinstance(opt_state, tuple) else ()
    return next((found for part in parts if (found := _find(part, kind)) is not None), None)


_OPTIONS = ("clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum", "ema_overwrite_frequency")


def _build(optimizer, options: dict, **hyperparams) -> optax.GradientTransformation:
    """``optimizer``'s transformation with Keras' ``options`` (named in ``_OPTIONS``) around it."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"Unknown optimizer argument(s) {unknown}; besides its own, an optimizer takes "
                        f"{', '.join(_OPTIONS)}.")
    return _wrap(optax.inject_hyperparams(optimizer)(**hyperparams), **options)


def _wrap(inner, clipnorm: Optional[float] = None, clipvalue: Optional[float] = None,
          global_clipnorm: Optional[float] = None, use_ema: bool = False, ema_momentum: float = 0.99,
          ema_overwrite_frequency: Optional[int] = None) -> optax.GradientTransformation:
    if clipnorm is not None and global_clipnorm is not None:
        raise ValueError("Pass clipnorm (per weight) or global_clipnorm (all weights together), not both.")
    clipping = [t for t in (None if clipvalue is None else optax.clip(clipvalue),
                            None if clipnorm is None else clip_by_norm(clipnorm),
                            None if global_clipnorm is None else optax.clip_by_global_norm(global_clipnorm))
                if t is not None]
    tx = optax.chain(*clipping, inner) if clipping else inner
    return ema_weights(tx, ema_momentum, ema_overwrite_frequency) if use_ema else tx


def SGD(learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False, **options):  # noqa: N802
    """``v = momentum * v + g; w -= lr * v`` (Keras' default lr 0.01)."""
    return _build(optax.sgd, options,
                  learning_rate=learning_rate, momentum=momentum or None, nesterov=nesterov)


def Adam(learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,  # noqa: N802
         **options):
    """Adam with Keras' defaults."""
    return _build(optax.adam, options,
                  learning_rate=learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)


def AdamW(learning_rate=0.001, weight_decay: float = 0.004, beta_1: float = 0.9, beta_2: float = 0.999,  # noqa: N802
          epsilon: float = 1e-7, **options):
    """Adam with decoupled weight decay, Keras' defaults."""
    return _build(optax.adamw, options,
                  learning_rate=learning_rate, b1=beta_1, b2=beta_2, eps=epsilon, weight_decay=weight_decay)


def RMSprop(learning_rate=0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,  # noqa: N802
            centered: bool = False, **options):
    """RMSprop with Keras' defaults."""
    return _build(optax.rmsprop, options,
                  learning_rate=learning_rate, decay=rho, eps=epsilon, momentum=momentum or None, centered=centered)


def Adagrad(learning_rate=0.001, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7,  # noqa: N802
            **options):
    """Adagrad with Keras' defaults."""
    return _build(optax.adagrad, options, learning_rate=learning_rate,
                  initial_accumulator_value=initial_accumulator_value, eps=epsilon)


def Nadam(learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,  # noqa: N802
          **options):
    """Adam with Nesterov momentum, Keras' defaults."""
    return _build(optax.nadam, options,
                  learning_rate=learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)


_OPTIMIZERS = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "nadam": Nadam,
}


def get(identifier):
    """Resolve an optimizer name (Keras defaults) or pass an optax transformation through.

    A dict ``{group: optimizer}`` gives each top-level parameter group (a GAN's
    ``'generator'`` and ``'discriminator'``) its own optimizer and state.
    """
    if isinstance(identifier, dict):
        return {part: get(each) for part, each in identifier.items()}
    if isinstance(identifier, optax.GradientTransformation):
        return identifier
    if isinstance(identifier, str):
        return lookup("optimizer", identifier, _OPTIMIZERS)()
    raise TypeError(
        f"optimizer must be a name ({', '.join(sorted(_OPTIMIZERS))}) or an optax.GradientTransformation, "
        f"got {identifier!r}."
    )


def _with_hyperparams(opt_state, replace=None):
    """Find the first ``inject_hyperparams`` state inside chains, masks and multi-transforms;
    return it and ``opt_state`` with it replaced by ``replace(it)`` (if given)."""
    if hasattr(opt_state, "hyperparams"):
        return opt_state, (replace(opt_state) if replace else opt_state)
    if isinstance(opt_state, dict):
        parts = list(opt_state.items())
    elif isinstance(opt_state, tuple):
        parts = list(zip(getattr(opt_state, "_fields", range(len(opt_state))), opt_state))
    else:
        return None, opt_state
    for key, part in parts:
        found, new = _with_hyperparams(part, replace)
        if found is not None:
            if isinstance(opt_state, dict):
                return found, {**opt_state, key: new}
            if hasattr(opt_state, "_fields"):
                return found, opt_state._replace(**{key: new})
            return found, opt_state[:key] + (new,) + opt_state[key + 1:]
    return None, opt_state


def learning_rate_of(opt_state):
    """The current learning rate held in an ``inject_hyperparams`` state, or None."""
    found, _ = _with_hyperparams(opt_state)
    return None if found is None else found.hyperparams.get("learning_rate")


def with_learning_rate(opt_state, value):
    """``opt_state`` with its learning rate set to ``value`` (same dtype and placement)."""
    def replace(state):
        hyperparams = dict(state.hyperparams)
        old = hyperparams["learning_rate"]
        hyperparams["learning_rate"] = jax.device_put(jnp.asarray(value, old.dtype), old.sharding)
        return state._replace(hyperparams=hyperparams)

    return _with_hyperparams(opt_state, replace)[1]
