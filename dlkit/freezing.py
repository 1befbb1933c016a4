"""Freezing parts of a model (Keras' ``layer.trainable = False``), done with optax masks.

Linen modules are frozen dataclasses, so trainability is not an attribute of the
layer: the Trainer holds rules ``(path, trainable)``, where a path names a
sub-module by its names joined with ``/`` (``"base"``, ``"base/conv2d_2"``). A
variable follows the rule of the longest path that contains it, trainable by
default. Frozen parameters get a zero update (``optax.set_to_zero`` through
``optax.multi_transform``), so they stay bitwise unchanged; batch normalization
inside a frozen part runs in inference mode, as in Keras.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Mapping
from typing import Iterator

import jax
import optax

Rules = tuple  # ((path, trainable), ...)

_ACTIVE: contextvars.ContextVar[Rules] = contextvars.ContextVar("dlkit_freeze_rules", default=())


def trainable(path: str, rules: Rules) -> bool:
    best, result = -1, True
    for prefix, value in rules:
        if (path == prefix or path.startswith(prefix + "/")) and len(prefix) > best:
            best, result = len(prefix), value
    return result


def labels(params, rules: Rules):
    """``'trainable'`` or ``'frozen'`` for every parameter."""
    def label(path, _):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        return "trainable" if trainable(name, rules) else "frozen"

    return jax.tree_util.tree_map_with_path(label, params)


def masked(tx, params, rules: Rules):
    """``tx`` for trainable parameters, a zero update for frozen ones (per group when ``tx``
    is a dict of optimizers, one per top-level parameter group)."""
    if not rules or all(value for _, value in rules):
        return tx
    marks = labels(params, rules)
    if isinstance(tx, Mapping):
        return type(tx)({part: _masked(each, marks[part]) for part, each in tx.items()})
    return _masked(tx, marks)


def _masked(tx: optax.GradientTransformation, marks) -> optax.GradientTransformation:
    return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, marks)


@contextlib.contextmanager
def active(rules: Rules) -> Iterator[None]:
    """Make ``rules`` visible to layers while a step is traced."""
    token = _ACTIVE.set(rules)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def module_is_frozen(module) -> bool:
    """Whether ``module`` (a bound Linen module) lies in a frozen part of the model being traced."""
    rules = _ACTIVE.get()
    return bool(rules) and not trainable("/".join(module.scope.path), rules)
