"""Optimizers under Keras' names and defaults, resolved to optax.

Every constructor wraps its optax transformation in ``optax.inject_hyperparams``
so the learning rate lives in the optimizer state: callbacks can change it
without recompiling the step. ``learning_rate`` may be a float or an optax
schedule (a function of the step count). Any ``optax.GradientTransformation``
is accepted as is wherever an optimizer is.
"""
from __future__ import annotations

import optax

from dlkit._registry import lookup


def SGD(learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False):  # noqa: N802 - Keras name
    """``v = momentum * v + g; w -= lr * v`` (Keras' default lr 0.01)."""
    return optax.inject_hyperparams(optax.sgd)(
        learning_rate=learning_rate, momentum=momentum or None, nesterov=nesterov)


def Adam(learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):  # noqa: N802
    """Adam with Keras' defaults."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)


def AdamW(learning_rate=0.001, weight_decay: float = 0.004, beta_1: float = 0.9, beta_2: float = 0.999,  # noqa: N802
          epsilon: float = 1e-7):
    """Adam with decoupled weight decay, Keras' defaults."""
    return optax.inject_hyperparams(optax.adamw)(
        learning_rate=learning_rate, b1=beta_1, b2=beta_2, eps=epsilon, weight_decay=weight_decay)


def RMSprop(learning_rate=0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,  # noqa: N802
            centered: bool = False):
    """RMSprop with Keras' defaults."""
    return optax.inject_hyperparams(optax.rmsprop)(
        learning_rate=learning_rate, decay=rho, eps=epsilon, momentum=momentum or None, centered=centered)


def Adagrad(learning_rate=0.001, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7):  # noqa: N802
    """Adagrad with Keras' defaults."""
    return optax.inject_hyperparams(optax.adagrad)(
        learning_rate=learning_rate, initial_accumulator_value=initial_accumulator_value, eps=epsilon)


def Nadam(learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):  # noqa: N802
    """Adam with Nesterov momentum, Keras' defaults."""
    return optax.inject_hyperparams(optax.nadam)(learning_rate=learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)


_OPTIMIZERS = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "nadam": Nadam,
}


def get(identifier) -> optax.GradientTransformation:
    """Resolve an optimizer name (Keras defaults) or pass an optax transformation through."""
    if isinstance(identifier, optax.GradientTransformation):
        return identifier
    if isinstance(identifier, str):
        return lookup("optimizer", identifier, _OPTIMIZERS)()
    raise TypeError(
        f"optimizer must be a name ({', '.join(sorted(_OPTIMIZERS))}) or an optax.GradientTransformation, "
        f"got {identifier!r}."
    )


def learning_rate_of(opt_state):
    """The current learning rate held in an ``inject_hyperparams`` state, or None."""
    hyperparams = getattr(opt_state, "hyperparams", None)
    return None if hyperparams is None else hyperparams.get("learning_rate")
