"""Weight initializers under their Keras names, resolved to Flax initializers.

For a kernel with fan-in ``n_in`` and fan-out ``n_out``:
``glorot_uniform`` draws from ``U(-l, l)`` with ``l = sqrt(6 / (n_in + n_out))``;
``he_normal`` from a normal truncated at two standard deviations with std
``sqrt(2 / n_in)``; ``lecun_normal`` likewise with std ``sqrt(1 / n_in)``.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax.linen import initializers as _init

from dlkit._registry import lookup

glorot_uniform = _init.glorot_uniform()
glorot_normal = _init.glorot_normal()
he_normal = _init.he_normal()
he_uniform = _init.he_uniform()
lecun_normal = _init.lecun_normal()
lecun_uniform = _init.lecun_uniform()
zeros = _init.zeros_init()
ones = _init.ones_init()
# ``orthogonal``: the kernel reshaped to ``(prod(shape[:-1]), shape[-1])`` is ``Q`` (or ``Q^T``) of the QR
# decomposition of a standard-normal matrix, sign-corrected so the draw is uniform over orthogonal
# matrices (Keras' ``Orthogonal(gain=1.0)``; the default recurrent kernel of LSTM, GRU and SimpleRNN).
orthogonal = _init.orthogonal()


def constant(value: float):
    """Every entry equals ``value``."""
    return _init.constant(value)


def random_normal(mean: float = 0.0, stddev: float = 0.05):
    """``N(mean, stddev**2)`` (Keras' defaults)."""
    normal = _init.normal(stddev)
    return lambda key, shape, dtype=jnp.float32: normal(key, shape, dtype) + mean


def random_uniform(minval: float = -0.05, maxval: float = 0.05):
    """``U(minval, maxval)`` (Keras' defaults)."""
    uniform = _init.uniform(maxval - minval)
    return lambda key, shape, dtype=jnp.float32: uniform(key, shape, dtype) + minval


_INITIALIZERS = {
    "glorot_uniform": glorot_uniform,
    "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "zeros": zeros,
    "ones": ones,
    "random_normal": random_normal(),
    "random_uniform": random_uniform(),
    "uniform": random_uniform(),  # Keras' alias of RandomUniform(-0.05, 0.05)
    "orthogonal": orthogonal,
}


def get(identifier):
    """Resolve a Keras initializer name or pass a callable ``(key, shape, dtype)`` through."""
    return lookup("initializer", identifier, _INITIALIZERS)
