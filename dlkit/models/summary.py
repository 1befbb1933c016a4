"""Keras' ``model.summary()`` table for any Linen module.

Rows are the module's direct sub-modules in call order, with the output shape
of each (batch axis shown as ``None``) and its parameter count; totals split
trainable (``params``) from non-trainable (other collections, e.g. the
moving statistics of batch normalization).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dlkit.layers.base import LOSSES, accepts_training


def _count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _shape(tree) -> str:
    shapes = [("None",) + tuple(str(d) for d in leaf.shape[1:]) for leaf in jax.tree.leaves(tree)]
    text = ["(" + ", ".join(s) + ("," if len(s) == 1 else "") + ")" for s in shapes]
    return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"


def layer_outputs(model, variables: dict, sample_shape) -> dict:
    """``name -> (type name, output shape)`` of the direct sub-modules, in call order.

    Nothing is computed: ``jax.eval_shape`` traces the model once.
    """
    sample = jax.tree.map(lambda s: jax.ShapeDtypeStruct((2, *s), jnp.float32), sample_shape,
                          is_leaf=lambda s: isinstance(s, tuple))
    kwargs = {"training": False} if accepts_training(model) else {}
    types = {}

    def direct_child(mdl, _method) -> bool:
        if len(mdl.scope.path) != 1:
            return False
        types[mdl.scope.path[0]] = type(mdl).__name__
        return True

    def run(v, x):
        _, state = model.apply(v, x, mutable=["intermediates", LOSSES], capture_intermediates=direct_child, **kwargs)
        return state["intermediates"]

    captured = jax.eval_shape(run, variables, sample)
    return {name: (kind, captured[name]["__call__"][0]) for name, kind in types.items() if name in captured}


def render(model, variables: dict, sample_shape) -> str:
    outputs = layer_outputs(model, variables, sample_shape)
    rows = []
    for name, (kind, out) in outputs.items():
        params = sum(_count(c.get(name, {})) for c in variables.values())
        rows.append((name, kind, _shape(out), params))
    trainable = _count(variables.get("params", {}))
    total = _count(variables)
    width = (max([14, *(len(f"{n} ({k})") + 2 for n, k, _, _ in rows)]),
             max([14, *(len(r[2]) + 2 for r in rows)]), 12)
    line = "─" * sum(width)
    text = [f'Model: "{type(model).__name__.lower()}"', line,
            f"{'Layer (type)':<{width[0]}}{'Output Shape':<{width[1]}}{'Param #':>{width[2]}}", line]
    for name, kind, shape, params in rows:
        text.append(f"{name + ' (' + kind + ')':<{width[0]}}{shape:<{width[1]}}{params:>{width[2]},}")
    text += [line, f" Total params: {total:,}", f" Trainable params: {trainable:,}",
             f" Non-trainable params: {total - trainable:,}", line]
    return "\n".join(text)
