"""What a layer object carries from model to model, as in Keras: its trained weights and its
``trainable`` flag.

In Keras the weights belong to the layer object: train a convolutional base inside one model,
put the same ``base`` object under a new head, and the new model starts from the trained
base. dlkit keeps its state an explicit pytree held by a ``Trainer``, and Flax clones a
module whenever it binds one, so a layer object never holds arrays itself. Instead each
layer (and sub-model) object records its **owner**: the trainer that last built or updated
a model holding it, and where in that trainer's variables the object's own variables lie.

* A new ``Trainer`` starts every object of its model that has an owner from the owner's
  current variables (copied when it builds, the most recent owner first applied last, so
  the latest trainer to update an object wins), then becomes the owner itself.
* ``layer.get_weights()`` / ``layer.set_weights(...)`` read and write the owner's variables
  at the object's place, in Keras' order.
* ``layer.trainable = False`` (settable although Linen modules are frozen dataclasses) is
  a flag on the object and on every layer inside it, as Keras propagates it; a new
  ``Trainer`` or ``trainer.compile()`` turns the flags into freezing rules.

An object's place in a model follows the names the model gives it: a ``Sequential`` or
``Model`` names its layers (``named_layers``); any other Linen module's sub-modules are the
modules in its dataclass fields, named as Flax names them (``encoder``; ``blocks_0`` for
the first of a tuple field). Only objects users hold are tracked: modules a ``setup``
creates are new objects in every model.
"""
from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_OWNER = "_dlkit_owner"  # the Owner record, set with object.__setattr__ on the user's object
_TRAINABLE = "_dlkit_trainable"  # the trainable flag, when the user has set one
_STAMPS = itertools.count()  # orders owners: the most recent claim wins
_LAST_CLAIM: list = [None, None]  # (trainer, model) of the latest claim; a repeat of it changes nothing


@dataclasses.dataclass(frozen=True)
class Owner:
    """The trainer that last built or updated a model holding an object, and the object's place there.

    Args:
      stamp: when the trainer claimed the object (a larger stamp is more recent).
      trainer: the trainer; it provides ``_layer_variables(path)``, ``_layer_weights(path)`` and
        ``_set_layer_weights(path, values)``.
      path: the object's sub-module names in the trainer's model (``()`` for the model itself).
    """

    stamp: int
    trainer: Any
    path: tuple


def named_children(module) -> list:
    """The sub-module objects of ``module`` with the names they get in its variables.

    Args:
      module: a Linen module as the user built it (unbound).

    Returns:
      ``[(name, child), ...]``: a container's ``named_layers()``, else the modules found in
      the dataclass fields, named as Flax adopts them (field name, ``_<index>``/``_<key>``
      appended for a tuple, list or dict field).
    """
    if hasattr(type(module), "named_layers"):
        return list(module.named_layers())
    children = []
    for field in dataclasses.fields(module):
        if field.name not in ("parent", "name"):
            children += _modules_in(field.name, getattr(module, field.name, None))
    return children


def _modules_in(prefix: str, value) -> list:
    if isinstance(value, nn.Module):
        return [(prefix, value)]
    if isinstance(value, (list, tuple)):
        return [found for i, item in enumerate(value) for found in _modules_in(f"{prefix}_{i}", item)]
    if isinstance(value, Mapping):
        return [found for key, item in value.items() for found in _modules_in(f"{prefix}_{key}", item)]
    return []


def walk(model, path: tuple = ()) -> Iterator[tuple]:
    """Every module object of ``model`` with its path, the model first, each object once.

    Args:
      model: the user's model (unbound Linen module).
      path: the model's own path (``()`` at the root).

    Yields:
      ``(path, module)`` pairs, depth first; an object held twice (a shared layer) comes at
      its first place only.
    """
    seen: set = set()

    def visit(module, where):
        if id(module) in seen:
            return
        seen.add(id(module))
        yield where, module
        for name, child in named_children(module):
            yield from visit(child, (*where, name))

    yield from visit(model, path)


def subtree(variables: Mapping, path: tuple) -> dict:
    """The variables of the sub-module at ``path``, per collection.

    Args:
      variables: ``{collection: {name: ...}}``.
      path: sub-module names.

    Returns:
      ``{collection: variables under path}`` for the collections that hold the path (empty if none).
    """
    found = {}
    for collection, tree in variables.items():
        node = tree
        for name in path:
            node = node.get(name) if isinstance(node, Mapping) else None
            if node is None:
                break
        if node is not None and jax.tree.leaves(node):
            found[collection] = node
    return found


def claim(trainer, model, variables: Mapping) -> None:
    """Make ``trainer`` the owner of every object of ``model`` that holds variables.

    Args:
      trainer: the trainer that just built or updated its state.
      model: its model, as the user built it.
      variables: its variables (to find which objects hold some).
    """
    if _LAST_CLAIM[0] is trainer and _LAST_CLAIM[1] is model:  # no other claim since: the owners stand
        return
    _LAST_CLAIM[:] = [trainer, model]
    stamp = next(_STAMPS)
    for path, module in walk(model):
        if not path or subtree(variables, path):
            object.__setattr__(module, _OWNER, Owner(stamp, trainer, path))


def carried(trainer, model) -> list:
    """The variables the objects of ``model`` carry from other trainers, oldest claim first.

    Args:
      trainer: the trainer building ``model`` (its own claims are skipped).
      model: the model, as the user built it.

    Returns:
      ``[(path in model, {collection: numpy variables}), ...]``, so applying them in order
      lets the most recent owner win.
    """
    found = []
    for path, module in walk(model):
        owner = _owner(module)
        if owner is not None and owner.trainer is not trainer and owner.trainer.state is not None:
            tree = jax.device_get(owner.trainer._layer_variables(owner.path))
            if tree:
                found.append((owner.stamp, path, type(module).__name__, tree))
    return [(path, kind, tree) for _, path, kind, tree in sorted(found, key=lambda item: item[0])]


def place(variables: dict, plan: list) -> dict:
    """``variables`` with each carried sub-tree of ``plan`` put at its path (``model.init``'s fresh
    variables in, the carried weights out).

    Args:
      variables: ``{collection: ...}`` from ``model.init`` (arrays or tracers).
      plan: ``[(path, layer type, {collection: variables}), ...]`` from ``carried``.

    Returns:
      A copy of ``variables`` with the carried values (cast to the fresh dtypes).

    Raises:
      ValueError: a carried sub-tree whose structure or shapes differ from the fresh one
        (the layer object is used on inputs of another shape), naming the layer.
    """
    out = {collection: _thaw(tree) for collection, tree in variables.items()}
    for path, kind, tree in plan:
        name = "/".join(path) or "the model"
        fresh = subtree(out, path)
        if not fresh:
            warnings.warn(f"{kind} {name!r} carries trained weights from another model but holds no variables "
                          f"here; it starts fresh.", stacklevel=3)
            continue
        if _shapes(fresh) != _shapes(tree):
            raise ValueError(
                f"{kind} {name!r} carries trained weights of shapes {_shapes(tree)} from the model it was "
                f"trained in, but this model needs {_shapes(fresh)}. A layer object keeps its weights in "
                f"every model that uses it (as in Keras): feed it inputs of the same shape, or build a new "
                f"layer object here.")
        for collection, values in tree.items():
            fresh_values = fresh[collection]
            cast = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), values, fresh_values)
            _put(out[collection], path, cast)
    return out


def _thaw(tree):
    return {k: _thaw(v) for k, v in tree.items()} if isinstance(tree, Mapping) else tree


def _put(tree: dict, path: tuple, value) -> None:
    if not path:
        tree.clear()
        tree.update(value)
        return
    node = tree
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value


def _shapes(tree) -> dict:
    """The shape of each array, as nested dicts (compared by ``==``: key order does not matter)."""
    return jax.tree.map(lambda a: tuple(np.shape(a)), tree)


def _owner(module):
    try:
        return object.__getattribute__(module, _OWNER)
    except AttributeError:
        return None


# ---------------------------------------------------------------------- Keras' per-object words
def set_trainable(module, value: bool) -> None:
    """Keras' ``layer.trainable = value``: set the flag on ``module`` and every layer inside it.

    Args:
      module: a layer or model object.
      value: False freezes it in the next ``Trainer`` or ``trainer.compile()``.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"trainable must be True or False, got {value!r}.")
    for _, each in walk(module):
        object.__setattr__(each, _TRAINABLE, bool(value))


def is_trainable(module) -> bool:
    """Keras' ``layer.trainable``: True unless set False.

    Args:
      module: a layer or model object.

    Returns:
      The flag.
    """
    try:
        return object.__getattribute__(module, _TRAINABLE)
    except AttributeError:
        return True


def trainable_rules(model) -> tuple:
    """The freezing rules (``dlkit.training.freezing``) the flags set on the objects of ``model``.

    Args:
      model: the model, as the user built it.

    Returns:
      ``(("/".join(path), flag), ...)`` for each object whose flag was set, outermost first.
    """
    rules = []
    for path, module in walk(model):
        try:
            rules.append(("/".join(path), bool(object.__getattribute__(module, _TRAINABLE))))
        except AttributeError:
            continue
    return tuple(rules)


def get_weights(module) -> list:
    """Keras' ``layer.get_weights()``: the object's weights in its latest model, in Keras' order.

    Args:
      module: a layer or model object.

    Returns:
      A list of numpy arrays (kernel, bias, …, then moving statistics); ``[]`` for an object no
      trainer has built yet, as Keras returns for an unbuilt layer.
    """
    owner = _owner(module)
    return [] if owner is None else owner.trainer._layer_weights(owner.path)


def set_weights(module, values: list) -> None:
    """Keras' ``layer.set_weights(values)``: write the object's weights in its latest model.

    Args:
      module: a layer or model object.
      values: arrays in the order ``get_weights()`` returns them.

    Raises:
      ValueError: for an object no trainer has built yet, a wrong count or a wrong shape.
    """
    owner = _owner(module)
    if owner is None:
        raise ValueError(f"set_weights: this {type(module).__name__} has no weights yet; build a Trainer on a model "
                         f"holding it first (Trainer(model, input_shape=...) or fit/predict).")
    owner.trainer._set_layer_weights(owner.path, values)


class LayerObject:
    """Keras' per-object words on a Linen module class: a settable ``trainable`` and the
    ``get_weights``/``set_weights`` of the weights the object carries (see the module docstring).

    Linen modules are frozen once built, so ``__setattr__`` lets ``trainable`` through to its
    flag and hands every other name to Flax.
    """

    def __setattr__(self, name: str, value) -> None:
        if name == "trainable":
            set_trainable(self, value)
            return
        super().__setattr__(name, value)

    @property
    def trainable(self) -> bool:
        """Keras' ``layer.trainable``: False after ``layer.trainable = False`` (on it or a model holding it)."""
        return is_trainable(self)

    def get_weights(self) -> list:
        """Keras' ``layer.get_weights()``.

        Returns:
          The weights in Keras' order (``[]`` before a trainer builds a model holding the object).
        """
        return get_weights(self)

    def set_weights(self, weights: list) -> None:
        """Keras' ``layer.set_weights(weights)``.

        Args:
          weights: arrays in the order ``get_weights()`` returns them.
        """
        set_weights(self, weights)

    def get_layer(self, name: str):
        """Keras' ``model.get_layer(name)``, for a model (a module with ``named_layers``).

        Args:
          name: a layer's name (``"dense_1"``), or ``"outer/inner"`` into a sub-model.

        Returns:
          The layer object (its ``get_weights()`` are those of its latest trainer).
        """
        return find(self, name)


def find(model, name: str):
    """Keras' ``model.get_layer(name)``: the layer object named ``name`` (or ``"outer/inner"``).

    Args:
      model: the model, as the user built it.
      name: a layer's name among the model's layers, or a ``/``-joined path into sub-models.

    Returns:
      The layer object.

    Raises:
      ValueError: no layer has that name (the model's layer names are listed).
    """
    module = model
    for part in name.split("/"):
        children = dict(named_children(module))
        if part not in children:
            raise ValueError(f"No layer named {part!r} in this {type(module).__name__}; its layers are "
                             f"{list(children)}.")
        module = children[part]
    return module
