"""What a checkpoint records of each saved array, and the checks made with the record.

Each array is recorded by its path (``'params/dense/kernel'``), shape, dtype and the
SHA-256 of its bytes. Orbax checks none of the bytes it reads back, so the digest is
what finds a damaged file; the shapes name the first parameter that differs when a
checkpoint is loaded into another architecture.
"""
from __future__ import annotations

import hashlib
from typing import Optional

import jax
import numpy as np


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


_PARTS = ("params", "model_state", "opt_state", "step", "rng")  # the order errors look in: weights first


def _leaves(tree) -> list:
    """``[(path, leaf)]`` of ``tree``, the path as ``'params/dense/kernel'``, the weights first."""
    leaves = [("/".join(_key_name(k) for k in path), leaf)
              for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]
    rank = {part: i for i, part in enumerate(_PARTS)}
    return sorted(leaves, key=lambda item: rank.get(item[0].split("/")[0], len(rank)))


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def describe_arrays(tree) -> dict:
    """The record of every array of ``tree`` that a checkpoint stores and checks on load.

    Args:
      tree: the tree to save (``to_tree``); device arrays are fetched to the host once.

    Returns:
      ``{path: {"shape": [...], "dtype": "float32", "sha256": hex}}``, the path as
      ``'params/dense/kernel'``, in the tree's order.
    """
    host = jax.device_get(tree)
    return {path: {"shape": list(np.shape(leaf)), "dtype": str(np.asarray(leaf).dtype),
                   "sha256": _digest(np.asarray(leaf))} for path, leaf in _leaves(host)}


def first_nonfinite(tree) -> Optional[str]:
    """The path of the first floating-point array of ``tree`` holding a NaN or an infinity.

    Args:
      tree: a tree of arrays (``to_tree`` of a state); device arrays are fetched to the host.

    Returns:
      Its path (``'params/dense/kernel'``), or ``None`` if every array is finite.
    """
    for path, leaf in _leaves(jax.device_get(tree)):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.inexact) and not np.isfinite(leaf).all():
            return path
    return None


def layout_mismatch(saved: dict, target: dict) -> Optional[str]:
    """What differs between a checkpoint's record of its arrays and the arrays of ``target``.

    Args:
      saved: the record (``describe_arrays`` of what was saved).
      target: the tree to restore into (its shapes and dtypes).

    Returns:
      The first difference, weights first, naming the path and both shapes or dtypes; ``None``
      if the two agree.
    """
    wanted = {path: (tuple(np.shape(leaf)), str(np.dtype(leaf.dtype))) for path, leaf in _leaves(target)}
    for path, (shape, dtype) in wanted.items():
        if path not in saved:
            extra = next((p for p in saved if p not in wanted), None)
            found = f"; it holds {extra!r} instead" if extra else ""
            return f"the model has {path!r} {shape}, which the checkpoint lacks{found}"
        saved_shape, saved_dtype = tuple(saved[path]["shape"]), saved[path]["dtype"]
        if saved_shape != shape:
            return f"{path!r} has shape {saved_shape} in the checkpoint but {shape} in this model"
        if saved_dtype != dtype:
            return f"{path!r} is {saved_dtype} in the checkpoint but {dtype} in this model"
    extra = next((p for p in saved if p not in wanted), None)
    if extra is not None:
        return f"the checkpoint holds {extra!r} {tuple(saved[extra]['shape'])}, which this model lacks"
    return None


def first_changed(saved: dict, restored) -> Optional[str]:
    """The path of the first restored array whose SHA-256 differs from the saved record.

    Args:
      saved: the record (``describe_arrays`` of what was saved).
      restored: the tree read back.

    Returns:
      The path, or ``None`` if every array matches its digest.
    """
    for path, leaf in _leaves(jax.device_get(restored)):
        if _digest(np.asarray(leaf)) != saved[path]["sha256"]:
            return path
    return None
