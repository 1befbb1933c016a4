"""Freezing parts of a model (Keras' ``layer.trainable = False``), done with optax masks.

The Trainer holds ``Rules`` (an alias of ``tuple``): pairs ``(path, trainable)``, where
a path names a sub-module by its names joined with ``/`` (``"base"``,
``"base/conv2d_2"``). A variable follows the rule of the longest path that contains
it, trainable by default. Frozen parameters get a zero update (``optax.set_to_zero``
through ``optax.multi_transform``), so they stay bitwise unchanged.

As in Keras, a frozen ``BatchNormalization`` runs in inference mode (its moving
statistics, not the batch's) while the rest of the frozen part, dropout
included, still sees ``training=True``. The layer is told so by its ``training``
argument: ``inference_where_frozen`` intercepts its calls (Flax's
``nn.intercept_methods``) and passes ``training=False`` to each such layer that
lies in a frozen part.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import flax.linen as nn
import jax
import optax

Rules = tuple  # ((path, trainable), ...)


def trainable(path: str, rules: Rules) -> bool:
    """Whether the sub-module or variable at ``path`` trains under ``rules``.

    Args:
      path: names joined by ``/``, e.g. ``"base/dense_1"`` or ``"base/dense_1/kernel"``.
      rules: ``((path, trainable), ...)``; the longest rule path containing ``path`` decides.

    Returns:
      True unless the deciding rule says frozen.
    """
    best, result = -1, True
    for prefix, value in rules:  # "" is the model itself: it contains every path
        if (not prefix or path == prefix or path.startswith(prefix + "/")) and len(prefix) > best:
            best, result = len(prefix), value
    return result


def with_rule(params, rules: Rules, paths, value: bool) -> Rules:
    """``rules`` with each of ``paths`` set trainable (``value`` True) or frozen.

    Args:
      params: the model's parameters (to check each path names a sub-module holding some).
      rules: the current rules.
      paths: sub-module paths (``"base"``, ``"base/dense_1"``).
      value: True to unfreeze, False to freeze.

    Returns:
      The new rules; a later rule for the same path replaces the earlier one.

    Raises:
      ValueError: for a path that holds no parameters (the known ones are listed).
    """
    known = {"/".join(str(getattr(k, "key", k)) for k in path[:-1])
             for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    for path in paths:
        if not any(k == path or k.startswith(path + "/") for k in known):
            raise ValueError(f"No sub-module {path!r} holds parameters. Known: {', '.join(sorted(known))}.")
    return merged(rules, tuple((p, value) for p in paths))


def merged(rules: Rules, new: Rules) -> Rules:
    """``rules`` with the rules of ``new`` added; a rule of ``new`` replaces one for the same path.

    Args:
      rules: the current rules.
      new: ``((path, trainable), ...)`` to add (a path may hold no parameters: it then decides nothing).

    Returns:
      The combined rules.
    """
    paths = {p for p, _ in new}
    return tuple((p, v) for p, v in rules if p not in paths) + tuple(new)


def labels(params, rules: Rules):
    """The optax ``multi_transform`` labels of the parameters.

    Args:
      params: the parameters.
      rules: freezing rules.

    Returns:
      A pytree shaped like ``params`` holding ``'trainable'`` or ``'frozen'`` for each one.
    """
    def label(path, _):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        return "trainable" if trainable(name, rules) else "frozen"

    return jax.tree_util.tree_map_with_path(label, params)


def masked(tx, params, rules: Rules):
    """``tx`` for trainable parameters, a zero update for frozen ones.

    Args:
      tx: an optax transformation, or a dict of them, one per top-level parameter group.
      params: the parameters the rules refer to.
      rules: freezing rules.

    Returns:
      ``tx`` itself when nothing is frozen, else ``optax.multi_transform`` of ``tx`` and
      ``optax.set_to_zero()`` (per group for a dict).
    """
    if not rules or all(value for _, value in rules):
        return tx
    marks = labels(params, rules)
    if isinstance(tx, Mapping):
        return type(tx)({part: _masked(each, marks[part]) for part, each in tx.items()})
    return _masked(tx, marks)


def _masked(tx: optax.GradientTransformation, marks) -> optax.GradientTransformation:
    return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, marks)


@contextlib.contextmanager
def inference_where_frozen(rules: Rules) -> Iterator[None]:
    """Within this context, layers whose class sets ``inference_when_frozen = True``
    (``BatchNormalization``) get ``training=False`` when they lie in a frozen part.

    Args:
      rules: freezing rules; with none frozen this does nothing.

    Yields:
      ``None``, once: the block runs with the interceptor installed.
    """
    if not rules or all(value for _, value in rules):
        yield
        return

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if (context.method_name == "__call__" and getattr(type(module), "inference_when_frozen", False)
                and module.scope is not None and not trainable("/".join(module.scope.path), rules)):
            args, kwargs = args[:1], {**kwargs, "training": False}
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        yield
