"""Activation functions under their Keras names.

Numerics follow Keras where JAX defaults differ: ``gelu`` is the exact
``x * Phi(x)`` (``jax.nn.gelu`` defaults to the tanh approximation) and ``elu``
uses ``alpha = 1``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dlkit._registry import lookup


def linear(x):
    """Identity: ``f(x) = x``."""
    return x


def relu(x):
    """``max(x, 0)``."""
    return jax.nn.relu(x)


def elu(x, alpha: float = 1.0):
    """``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``."""
    return jax.nn.elu(x, alpha)


def selu(x):
    """``scale * elu(x, alpha)`` with the self-normalising constants."""
    return jax.nn.selu(x)


def gelu(x, approximate: bool = False):
    """``x * Phi(x)``, exact by default as in Keras."""
    return jax.nn.gelu(x, approximate=approximate)


def sigmoid(x):
    """``1 / (1 + exp(-x))``."""
    return jax.nn.sigmoid(x)


def tanh(x):
    """Hyperbolic tangent."""
    return jnp.tanh(x)


def softmax(x, axis: int = -1):
    """``exp(x_i) / sum_j exp(x_j)`` along ``axis``."""
    return jax.nn.softmax(x, axis=axis)


def softplus(x):
    """``log(1 + exp(x))``."""
    return jax.nn.softplus(x)


def leaky_relu(x, negative_slope: float = 0.2):
    """``x`` if ``x > 0`` else ``negative_slope * x``."""
    return jax.nn.leaky_relu(x, negative_slope)


_ACTIVATIONS = {
    "linear": linear,
    "identity": linear,
    "relu": relu,
    "elu": elu,
    "selu": selu,
    "gelu": gelu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softmax": softmax,
    "softplus": softplus,
    "leaky_relu": leaky_relu,
}


def get(identifier):
    """Resolve a Keras activation name, ``None`` (linear) or a callable."""
    if identifier is None:
        return linear
    return lookup("activation", identifier, _ACTIVATIONS)


def name_of(fn) -> str:
    """The Keras name of an activation function (for error messages and summaries)."""
    for name, f in _ACTIVATIONS.items():
        if f is fn:
            return name
    return getattr(fn, "__name__", repr(fn))
