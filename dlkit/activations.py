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
    """Keras' ``linear`` (alias ``'identity'``): ``f(x) = x``; also what ``activation=None`` means.

    Args:
        x: Input array.

    Returns:
        ``x`` itself.
    """
    return x


def relu(x):
    """Keras' ``relu``: ``f(x) = max(x, 0)``.

    Args:
        x: Input array.

    Returns:
        An array of the shape of ``x``.
    """
    return jax.nn.relu(x)


def elu(x, alpha: float = 1.0):
    """Keras' ``elu`` (Clevert et al., 2016): ``f(x) = x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``.

    Args:
        x: Input array.
        alpha: Scale of the negative part (Keras' default 1).

    Returns:
        An array of the shape of ``x``.
    """
    return jax.nn.elu(x, alpha)


def selu(x):
    """Keras' ``selu`` (Klambauer et al., 2017): ``scale * elu(x, alpha)`` with the self-normalising
    constants ``alpha ~ 1.6733``, ``scale ~ 1.0507``.

    Args:
        x: Input array.

    Returns:
        An array of the shape of ``x``.
    """
    return jax.nn.selu(x)


def gelu(x, approximate: bool = False):
    """Keras' ``gelu`` (Hendrycks & Gimpel, 2016): ``f(x) = x * Phi(x)``, ``Phi`` the standard normal CDF.

    Args:
        x: Input array.
        approximate: Use the tanh approximation
            ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``; default exact, as in Keras.

    Returns:
        An array of the shape of ``x``.
    """
    return jax.nn.gelu(x, approximate=approximate)


def sigmoid(x):
    """Keras' ``sigmoid``: ``f(x) = 1 / (1 + exp(-x))``.

    Args:
        x: Input array.

    Returns:
        An array of the shape of ``x``.
    """
    return jax.nn.sigmoid(x)


def tanh(x):
    """Keras' ``tanh``: ``f(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))``.

    Args:
        x: Input array.

    Returns:
        An array of the shape of ``x``.
    """
    return jnp.tanh(x)


def softmax(x, axis: int = -1):
    """Keras' ``softmax``: ``f(x)_i = exp(x_i) / sum_j exp(x_j)`` along ``axis``.

    Args:
        x: Input array.
        axis: The axis that sums to 1 (default the last).

    Returns:
        An array of the shape of ``x``, non-negative, summing to 1 along ``axis``.
    """
    return jax.nn.softmax(x, axis=axis)


def softplus(x):
    """Keras' ``softplus``: ``f(x) = log(1 + exp(x))``.

    Args:
        x: Input array.

    Returns:
        An array of the shape of ``x``.
    """
    return jax.nn.softplus(x)


def leaky_relu(x, negative_slope: float = 0.2):
    """Keras' ``leaky_relu``: ``f(x) = x`` if ``x > 0`` else ``negative_slope * x``.

    Args:
        x: Input array.
        negative_slope: Slope for ``x <= 0`` (Keras' default 0.2; the ``LeakyReLU`` layer's is 0.3).

    Returns:
        An array of the shape of ``x``.
    """
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
    """Resolve a Keras activation name, ``None`` (linear) or a callable (Keras' ``activations.get``).

    Args:
        identifier: A name (``'relu'``, ``'gelu'``, ``'softmax'``...; any case), ``None`` or a callable.

    Returns:
        The activation function (a callable passes through unchanged).

    Raises:
        ValueError: An unknown name.
        TypeError: Neither a string, ``None`` nor a callable.
    """
    if identifier is None:
        return linear
    return lookup("activation", identifier, _ACTIVATIONS)


def name_of(fn) -> str:
    """The Keras name of an activation function (for error messages and summaries).

    Args:
        fn: An activation function.

    Returns:
        Its first name in the registry, else its ``__name__`` (or ``repr``).
    """
    for name, f in _ACTIVATIONS.items():
        if f is fn:
            return name
    return getattr(fn, "__name__", repr(fn))
