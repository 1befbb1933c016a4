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
    """Keras' ``L1L2``: the penalty ``l1 * sum(|w|) + l2 * sum(w**2)``.

    Args:
        l1: Weight of the L1 term (0: none).
        l2: Weight of the L2 term (0: none; no factor 1/2, as in Keras).
    """

    l1: float = 0.0
    l2: float = 0.0

    def __call__(self, w):
        """The penalty of one weight array.

        Args:
            w: The weights.

        Returns:
            A float32 scalar.
        """
        penalty = jnp.zeros((), jnp.float32)
        if self.l1:
            penalty = penalty + self.l1 * jnp.sum(jnp.abs(w))
        if self.l2:
            penalty = penalty + self.l2 * jnp.sum(jnp.square(w))
        return penalty


def l1(l1: float = 0.01) -> L1L2:  # noqa: D103 - Keras signature
    """Keras' ``l1`` (``L1``): the penalty ``l1 * sum(|w|)``.

    Args:
        l1: The weight of the penalty (Keras' default 0.01).

    Returns:
        ``L1L2(l1=l1)``.
    """
    return L1L2(l1=l1)


def l2(l2: float = 0.01) -> L1L2:  # noqa: D103
    """Keras' ``l2`` (``L2``): the penalty ``l2 * sum(w**2)`` (gradient ``2 * l2 * w``).

    Args:
        l2: The weight of the penalty (Keras' default 0.01).

    Returns:
        ``L1L2(l2=l2)``.
    """
    return L1L2(l2=l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:  # noqa: D103
    """Keras' ``l1_l2``: the penalty ``l1 * sum(|w|) + l2 * sum(w**2)``.

    Args:
        l1: The weight of the L1 term (Keras' default 0.01).
        l2: The weight of the L2 term (Keras' default 0.01).

    Returns:
        ``L1L2(l1=l1, l2=l2)``.
    """
    return L1L2(l1=l1, l2=l2)


L1 = l1
L2 = l2

_REGULARIZERS = {"l1": l1(), "l2": l2(), "l1_l2": l1_l2()}


def get(identifier):
    """Resolve ``None``, a name (``'l2'`` uses Keras' default 0.01) or a callable (Keras' ``regularizers.get``).

    Args:
        identifier: ``None``, ``'l1'``, ``'l2'``, ``'l1_l2'`` (any case), or a callable ``w -> scalar``.

    Returns:
        The penalty function, or ``None`` for ``None``.

    Raises:
        ValueError: An unknown name.
        TypeError: Neither ``None``, a string nor a callable.
    """
    if identifier is None:
        return None
    return lookup("regularizer", identifier, _REGULARIZERS)
