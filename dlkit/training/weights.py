"""Weights as Keras lists them (``get_weights``/``set_weights``), their files
(``save_weights``/``load_weights``), and sample shapes.

Keras' order is layer by layer in call order, each layer's trainable weights
first (``kernel, bias``; ``gamma, beta``) then its non-trainable ones
(``moving_mean, moving_variance``).
"""
from __future__ import annotations

import os
import tempfile

import flax.serialization
import jax
import numpy as np


def keras_order(variables: dict) -> list:
    """Key paths of every variable in Keras' order.

    Call this on the fresh output of ``model.init``, whose dicts still hold
    creation order (any later pytree operation sorts the keys).

    Args:
      variables: ``{collection: {layer: ...}}`` as ``model.init`` returns it.

    Returns:
      ``[(collection, layer, path), ...]``: layer by layer in creation order, each layer's
      ``'params'`` first, then its other collections.
    """
    layers: dict = {}
    for collection, tree in variables.items():
        for layer, sub in tree.items():
            layers.setdefault(layer, {})[collection] = list(_insertion_paths(sub))
    order = []
    for layer, by_collection in layers.items():
        collections = ["params", *(c for c in by_collection if c != "params")]
        order += [(c, layer, path) for c in collections for path in by_collection.get(c, [])]
    return order


def _insertion_paths(node, prefix=()):
    """Leaf paths of nested dicts in insertion order (``jax.tree`` would sort them)."""
    if not isinstance(node, dict):
        yield prefix
        return
    for key, child in node.items():
        yield from _insertion_paths(child, (*prefix, key))


def is_shape(value) -> bool:
    """Whether ``value`` is one sample shape, as opposed to a tuple/list/dict of them.

    Args:
      value: a shape or a structure of shapes.

    Returns:
      True for a tuple or list of ints (``()`` included).
    """
    return isinstance(value, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in value)


def zeros_batch(sample_shape, rows: int = 1):
    """A float32 batch of zeros for a sample shape (or a tuple/list/dict of them, one per input).

    Args:
      sample_shape: the shape of one sample, or a structure of them.
      rows: the batch size.

    Returns:
      numpy zeros of shape ``(rows, *sample_shape)`` in the same structure.
    """
    return jax.tree.map(lambda s: np.zeros((rows, *s), np.float32), sample_shape, is_leaf=is_shape)


def _get(variables: dict, key):
    collection, layer, path = key
    node = variables[collection][layer]
    for entry in path:
        node = node[entry]
    return node


def flatten(variables: dict, order: list) -> list:
    """The variables as a list of numpy arrays (``get_weights``).

    Args:
      variables: ``{collection: {layer: ...}}``.
      order: the key paths, from ``keras_order``.

    Returns:
      One numpy array per key of ``order``, in that order.
    """
    return [np.asarray(_get(variables, key)) for key in order]


def unflatten(variables: dict, order: list, weights: list) -> dict:
    """A copy of ``variables`` holding ``weights`` (``set_weights``).

    Args:
      variables: the current variables (give structure, shapes and dtypes).
      order: the key paths, from ``keras_order``.
      weights: one array per key of ``order``, in that order.

    Returns:
      The variables as numpy arrays, each replaced by its weight cast to the old dtype.

    Raises:
      ValueError: for a wrong number of arrays, or an array of the wrong shape (named).
    """
    weights = list(weights)
    if len(weights) != len(order):
        raise ValueError(f"set_weights expects {len(order)} arrays (as get_weights() returns), got {len(weights)}.")
    out = jax.tree.map(np.asarray, jax.device_get(variables))
    for i, (key, new) in enumerate(zip(order, weights)):
        old = _get(out, key)
        if np.shape(new) != old.shape:
            name = "/".join([key[0], key[1], *key[2]])
            raise ValueError(f"Weight {i} ({name}) has shape {np.shape(new)}, but the model's has shape {old.shape}.")
        collection, layer, path = key
        if not path:  # a variable of the model itself, not of a sub-module
            out[collection][layer] = np.asarray(new, old.dtype)
            continue
        _get(out, (collection, layer, path[:-1]))[path[-1]] = np.asarray(new, old.dtype)
    return out


def under(order: list, path: tuple) -> list:
    """The positions in ``order`` of the variables inside the sub-module at ``path``.

    Args:
      order: the key paths, from ``keras_order``.
      path: sub-module names (``()``: the whole model).

    Returns:
      The indices, in Keras' order.
    """
    path = tuple(path)
    return [i for i, (_, layer, rest) in enumerate(order) if (layer, *rest)[:len(path)] == path]


def replaced(values: list, positions: list, new: list) -> list:
    """``values`` with the arrays at ``positions`` replaced by ``new`` (a layer's ``set_weights``).

    Args:
      values: every weight of the model, in Keras' order.
      positions: the layer's positions, from ``under``.
      new: the layer's new weights, in Keras' order.

    Returns:
      The model's weights with the layer's replaced.

    Raises:
      ValueError: ``new`` has another length than the layer has weights.
    """
    new = list(new)
    if len(new) != len(positions):
        raise ValueError(f"set_weights expects {len(positions)} arrays for this layer (as its get_weights() "
                         f"returns), got {len(new)}.")
    out = list(values)
    for i, value in zip(positions, new):
        out[i] = value
    return out


def save(path: str, variables: dict) -> None:
    """Write ``variables`` to ``path`` (Flax msgpack), atomically: a crash mid-write leaves the
    previous file intact.

    Args:
      path: the file to write (its directory is created if missing).
      variables: a pytree of arrays.
    """
    data = flax.serialization.to_bytes(jax.device_get(variables))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str, like: dict) -> dict:
    """Variables read from a file written by ``save``.

    Args:
      path: the file.
      like: variables of the same structure (``flax.serialization.from_bytes``' target).

    Returns:
      The variables read, as numpy arrays in ``like``'s structure.
    """
    with open(path, "rb") as f:
        return flax.serialization.from_bytes(jax.device_get(like), f.read())
