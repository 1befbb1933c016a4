"""Keras' ``model.summary()`` table for any Linen module.

Rows are the module's direct sub-modules in call order, with the output shape
of each (batch axis shown as ``None``; ``-`` for one the forward pass does not
call) and its parameter count; totals split
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
    text = [_shape_of(leaf.shape) for leaf in jax.tree.leaves(tree)]
    return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"


def _is_shape(value) -> bool:
    """One sample shape (a tuple of ints), as opposed to a tuple/list/dict of them."""
    return isinstance(value, (tuple, list)) and all(isinstance(d, int) for d in value)


def _shape_of(shape) -> str:
    s = ("None",) + tuple(str(d) for d in shape[1:])
    return "(" + ", ".join(s) + ("," if len(s) == 1 else "") + ")"


def layer_outputs(model, variables: dict, sample_shape) -> dict:
    """``name -> (type name, output shape)`` of the direct sub-modules, in call order.

    Nothing is computed: ``jax.eval_shape`` traces the model once.

    Args:
        model: The Linen module.
        variables: Its variables (``{'params': ..., 'batch_stats': ...}``).
        sample_shape: One sample's shape, or a tuple/list/dict of them for several inputs.

    Returns:
        ``{sub-module name: (class name, output shape structs)}`` of the direct sub-modules called.
    """
    sample = jax.tree.map(lambda s: jax.ShapeDtypeStruct((2, *s), jnp.float32), sample_shape, is_leaf=_is_shape)
    kwargs = {"training": False} if accepts_training(model) else {}
    types = {}

    def direct_child(mdl, method) -> bool:
        # Only a layer's call: Flax also runs this filter on helper methods, some called while the layer is
        # still being made and has no scope yet (the ``Random*`` layers check their factors then).
        if method != "__call__" or mdl.scope is None or len(mdl.scope.path) != 1:
            return False
        types[mdl.scope.path[0]] = type(mdl).__name__
        return True

    def run(v, x):
        _, state = model.apply(v, x, mutable=["intermediates", LOSSES], capture_intermediates=direct_child, **kwargs)
        return state["intermediates"]

    captured = jax.eval_shape(run, variables, sample)
    return {name: (kind, captured[name]["__call__"][0]) for name, kind in types.items() if name in captured}


def render(model, variables: dict, sample_shape, labels=None) -> str:
    """Keras' ``model.summary()`` table as text.

    Args:
        model: The Linen module.
        variables: Its variables; every collection but ``params`` counts as non-trainable.
        sample_shape: One sample's shape (or a structure of them), as for ``layer_outputs``.
        labels: Optional pytree like ``params`` of ``'trainable'``/``'frozen'``; frozen params
            count as non-trainable.

    Returns:
        The table: a title, one row per sub-module (name, type, output shape, parameter count), totals.
    """
    outputs = layer_outputs(model, variables, sample_shape)
    # A functional model lists its inputs first, as Keras' InputLayer rows.
    input_rows = getattr(model, "summary_input_rows", None)
    rows = [(name, "InputLayer", _shape_of(shape), 0) for name, shape in (input_rows() if input_rows else [])]
    for name, (kind, out) in outputs.items():
        params = sum(_count(c.get(name, {})) for c in variables.values())
        rows.append((name, kind, _shape(out), params))
    # Sub-modules with weights that ``__call__`` does not reach (a GAN's discriminator).
    for name in [n for c in variables.values() for n in c if n not in outputs]:
        kind = type(getattr(model, name, None)).__name__ if hasattr(model, name) else "?"
        rows.append((name, kind, "-", sum(_count(c.get(name, {})) for c in variables.values())))
    params = variables.get("params", {})
    if labels is None:
        trainable = _count(params)
    else:
        trainable = sum(math.prod(p.shape) for p, label in zip(jax.tree.leaves(params), jax.tree.leaves(labels))
                        if label == "trainable")
    total = _count(variables)
    width = (max([14, *(len(f"{n} ({k})") + 2 for n, k, _, _ in rows)]),
             max([14, *(len(r[2]) + 2 for r in rows)]), 12)
    line = "─" * sum(width)
    title = getattr(model, "name", None) or getattr(type(model), "keras_name", None) or type(model).__name__.lower()
    text = [f'Model: "{title}"', line,
            f"{'Layer (type)':<{width[0]}}{'Output Shape':<{width[1]}}{'Param #':>{width[2]}}", line]
    for name, kind, shape, params in rows:
        text.append(f"{name + ' (' + kind + ')':<{width[0]}}{shape:<{width[1]}}{params:>{width[2]},}")
    text += [line, f" Total params: {total:,}", f" Trainable params: {trainable:,}",
             f" Non-trainable params: {total - trainable:,}", line]
    return "\n".join(text)
