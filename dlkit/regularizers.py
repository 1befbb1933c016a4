"""Weight penalties: ``l1(a)(w) = a * sum|w|``, ``l2(a)(w) = a * sum(w**2)``.

A layer adds a penalty to the training loss through ``dlkit.layers.add_loss``;
the loop sums every such term into the loss it differentiates.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from dlkit._registry import lookup


@dataclasses.dataclass(frozen=True)
class L1L2:
    """``l1 * sum(|w|) + l2 * sum(w**2)``."""

    l1: float = 0.0
    l2: float = 0.0

    def __call__(self, w):
        penalty = jnp.zeros((), jnp.float32)
        if self.l1:
            penalty = penalty + self.l1 * jnp.sum(jnp.abs(w))
        if self.l2:
            penalty = penalty + self.l2 * jnp.sum(jnp.square(w))
        return penalty


def l1(l1: float = 0.01) -> L1L2:  # noqa: D103 - Keras signature
    return L1L2(l1=l1)


def l2(l2: float = 0.01) -> L1L2:  # noqa: D103
    return L1L2(l2=l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:  # noqa: D103
    return L1L2(l1=l1, l2=l2)


L1 = l1
L2 = l2

_REGULARIZERS = {"l1": l1(), "l2": l2(), "l1_l2": l1_l2()}


def get(identifier):
    """Resolve ``None``, a name (``'l2'`` uses Keras' default 0.01) or a callable."""
    if identifier is None:
        return None
    return lookup("regularizer", identifier, _REGULARIZERS)
