"""Weight initializers under their Keras names, resolved to Flax initializers.

Each is a function ``init(key, shape, dtype=float32) -> array``. For a kernel of shape
``(..., n_in_channels, n_out_channels)`` the fans are ``n_in = r * shape[-2]`` and
``n_out = r * shape[-1]``, ``r`` the product of the leading (receptive-field) axes, as in Keras.
"Truncated normal" means drawn within two standard deviations and rescaled so that its
standard deviation is the one given:

* ``glorot_uniform`` (alias ``xavier_uniform``; Glorot & Bengio, 2010), the default kernel
  initializer: ``U(-l, l)`` with ``l = sqrt(6 / (n_in + n_out))``;
* ``glorot_normal`` (``xavier_normal``): truncated normal, std ``sqrt(2 / (n_in + n_out))``;
* ``he_normal`` (He et al., 2015): truncated normal, std ``sqrt(2 / n_in)``;
* ``he_uniform``: ``U(-l, l)`` with ``l = sqrt(6 / n_in)``;
* ``lecun_normal`` (LeCun et al., 1998): truncated normal, std ``sqrt(1 / n_in)``;
* ``lecun_uniform``: ``U(-l, l)`` with ``l = sqrt(3 / n_in)``;
* ``zeros`` and ``ones``: constant 0 and 1;
* ``orthogonal`` (Saxe et al., 2014): an orthogonal matrix (below);
* ``random_normal`` ``N(0, 0.05^2)``, ``random_uniform`` and ``uniform`` ``U(-0.05, 0.05)``: the
  defaults of the factories of the same names.
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
    """Keras' ``Constant``: every entry equals ``value``.

    Args:
        value: The fill value.

    Returns:
        An initializer ``(key, shape, dtype) -> array``.
    """
    return _init.constant(value)


def random_normal(mean: float = 0.0, stddev: float = 0.05):
    """Keras' ``RandomNormal``: entries drawn from ``N(mean, stddev**2)`` (Keras' defaults).

    Args:
        mean: Mean of the normal.
        stddev: Standard deviation of the normal.

    Returns:
        An initializer ``(key, shape, dtype=float32) -> array``.
    """
    normal = _init.normal(stddev)
    return lambda key, shape, dtype=jnp.float32: normal(key, shape, dtype) + mean


def random_uniform(minval: float = -0.05, maxval: float = 0.05):
    """Keras' ``RandomUniform``: entries drawn from ``U(minval, maxval)`` (Keras' defaults).

    Args:
        minval: Lower bound.
        maxval: Upper bound.

    Returns:
        An initializer ``(key, shape, dtype=float32) -> array``.
    """
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
    """Keras' ``initializers.get``: resolve an initializer name, or pass a callable ``(key, shape, dtype)``
    through.

    Args:
        identifier: A name from the module docstring (any case) or a callable.

    Returns:
        The initializer.

    Raises:
        ValueError: An unknown name.
        TypeError: Neither a string nor a callable.
    """
    return lookup("initializer", identifier, _INITIALIZERS)
