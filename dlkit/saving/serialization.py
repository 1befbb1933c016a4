"""Configs: a Linen model (or a loss, a metric, any value it holds) as JSON, and back.

A module is saved as its class (named as ``dlkit.saving.registry`` describes) and its
dataclass fields, recursively: modules, tuples, lists and dicts of them, strings, numbers,
``None``, dtypes, small arrays, and functions or classes by name (an activation given as a
callable, say). Frozen dataclasses that are not modules (dlkit's losses, metrics and
regularizers) are saved the same way. A ``Sequential`` keeps its ``Input``; a functional
``Model`` is saved as its graph (``dlkit.saving.graph``). Keras' ``trainable = False`` on a
layer object is saved with it.

What cannot be named (a lambda, a function defined inside another, an arbitrary object)
raises ``SerializationError`` at save time, naming the field that holds it. Loading builds
only Linen modules and dataclasses, and calls no function but the recorded constructors.

JSON holds lists, string-keyed dicts and scalars, so the other values are tagged dicts:
``{"__tuple__": [...]}``, ``{"__dict__": [[key, value], ...]}``, ``{"__object__": class,
"config": {...}}``, ``{"__function__": ...}``, ``{"__type__": ...}``, ``{"__dtype__": "float32"}``,
``{"__array__": ...}``, ``{"__partial__": ...}``, ``{"__input__": ...}``, ``{"__tensor__": ...}``, and
``{"__made__": ...}`` for an object a recorded constructor made (an optimizer, ``dlkit.saving.recipes``).
"""
from __future__ import annotations

import base64
import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dlkit import symbolic
from dlkit.saving import graph as graph_lib
from dlkit.saving import recipes
from dlkit.saving.registry import SerializationError, describe, resolve

_SKIPPED_FIELDS = ("parent",)  # Flax's link to an enclosing module: not configuration


def serialize(value: Any, where: str = "the model", tensors: Optional[Callable] = None) -> Any:
    """``value`` as a JSON-able config (Keras' ``serialize_keras_object``).

    Args:
      value: a Linen module, a dataclass (loss, metric, regularizer), a function or class, or a
        structure of such values and scalars.
      where: how errors name ``value`` (``'the model'``; a field path below it).
      tensors: inside a functional graph, maps a symbolic tensor to its reference.

    Returns:
      Lists, string-keyed dicts and scalars (the tags of the module docstring).

    Raises:
      SerializationError: something in ``value`` cannot be named; the field is named.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    made = recipes.recipe(value)
    if made is not None:  # made by a recorded dlkit constructor (an optimizer): the call again
        return {"__made__": {"by": describe(made[0], where),
                             "arguments": serialize(made[1], f"{where} ({made[0].__name__} argument)", tensors)}}
    if isinstance(value, symbolic.SymbolicTensor):
        return _tensor(value, where, tensors)
    if isinstance(value, np.generic):  # a numpy scalar: its Python value
        return value.item()
    if isinstance(value, np.dtype) or _is_dtype_class(value):
        return {"__dtype__": np.dtype(value).name}
    if isinstance(value, nn.Module):
        return _module(value, where)
    if isinstance(value, list):
        return [serialize(v, f"{where}[{i}]", tensors) for i, v in enumerate(value)]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return {"__tuple__": [serialize(v, f"{where}[{i}]", tensors) for i, v in enumerate(value)]}
    if isinstance(value, Mapping):
        return {"__dict__": [[serialize(k, f"{where} key", tensors), serialize(v, f"{where}[{k!r}]", tensors)]
                             for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass(value, where, tensors)
    if isinstance(value, functools.partial):
        return {"__partial__": {"func": serialize(value.func, f"{where}.func"),
                                "args": serialize(value.args, f"{where}.args", tensors),
                                "keywords": serialize(value.keywords, f"{where}.keywords", tensors)}}
    if isinstance(value, type):
        return {"__type__": describe(value, where)}
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a numpy or jax array
        array = np.ascontiguousarray(np.asarray(value))
        return {"__array__": {"dtype": array.dtype.name, "shape": list(array.shape),
                              "data": base64.b64encode(array.tobytes()).decode("ascii")}}
    if callable(value):
        return {"__function__": describe(value, where)}
    raise SerializationError(
        f"Cannot save {where}: a {type(value).__name__} ({value!r}) is not one of what a config holds (layers, "
        f"numbers, strings, tuples/lists/dicts, dtypes, arrays, named functions). Give it as a name or a "
        f"number, or register its class with @dlkit.saving.register_serializable().")


def deserialize(config: Any, custom_objects: Optional[dict] = None, tensors: Optional[Callable] = None) -> Any:
    """The value a config describes (Keras' ``deserialize_keras_object``).

    Args:
      config: what ``serialize`` returned (read back from JSON).
      custom_objects: ``{name: class or function}`` for names that are not registered.
      tensors: inside a functional graph, maps a tensor reference to the symbolic tensor.

    Returns:
      A new value: modules are new objects, built by their constructors.

    Raises:
      SerializationError: a class or function the config names cannot be found (named, with
        the decorator that registers it).
    """
    if isinstance(config, list):
        return [deserialize(v, custom_objects, tensors) for v in config]
    if not isinstance(config, dict):
        return config
    tag, body = next(iter(config.items())) if config else (None, None)
    if tag == "__tuple__":
        return tuple(deserialize(v, custom_objects, tensors) for v in body)
    if tag == "__dict__":
        return {_hashable(deserialize(k, custom_objects, tensors)): deserialize(v, custom_objects, tensors)
                for k, v in body}
    if tag == "__object__":
        return _build(config, custom_objects, tensors)
    if tag in ("__function__", "__type__"):
        return resolve(body, custom_objects, "function" if tag == "__function__" else "class")
    if tag == "__dtype__":
        return jnp.dtype(body)
    if tag == "__array__":
        return np.frombuffer(base64.b64decode(body["data"]), jnp.dtype(body["dtype"])).reshape(body["shape"]).copy()
    if tag == "__made__":
        constructor = resolve(body["by"], custom_objects, "function")
        if not recipes.is_recorded(constructor):
            raise SerializationError(f"A saved config asks to call {body['by']['name']!r}, which is not a recorded "
                                     f"dlkit constructor (dlkit.saving.recipes); refusing to call it.")
        return constructor(**deserialize(body["arguments"], custom_objects))
    if tag == "__partial__":
        return functools.partial(deserialize(body["func"], custom_objects), *deserialize(body["args"], custom_objects),
                                 **deserialize(body["keywords"], custom_objects))
    if tag == "__input__":
        return symbolic.Input(tuple(body["shape"]), body["dtype"], body["name"])
    if tag == "__tensor__" and tensors is not None:
        return tensors(body)
    raise SerializationError(f"Unknown entry {tag!r} in a saved config: was it written by a newer dlkit?")


def _hashable(key):
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _is_dtype_class(value) -> bool:
    return isinstance(value, type) and (issubclass(value, np.generic) or isinstance(getattr(value, "dtype", None),
                                                                                   np.dtype))


def _tensor(value: symbolic.SymbolicTensor, where: str, tensors) -> dict:
    if tensors is not None:  # inside a functional graph: a reference to the tensor
        return {"__tensor__": tensors(value)}
    if isinstance(value, symbolic.Input):  # a Sequential's Input
        return {"__input__": {"shape": list(value.sample_shape), "dtype": value.dtype.name, "name": value.name}}
    raise SerializationError(f"Cannot save {where}: a symbolic tensor outside a functional Model's graph.")


def _has_trainable_flag(cls) -> bool:
    """Whether the class has Keras' settable ``trainable`` (``dlkit.layer_objects.LayerObject``)."""
    return isinstance(getattr(cls, "trainable", None), property)


def _fields(value, where: str, init_only: bool = True) -> dict:
    """The dataclass fields of ``value`` (those its constructor takes, less Flax's ``parent``)."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
            if f.name not in _SKIPPED_FIELDS and (f.init or not init_only) and hasattr(value, f.name)}


def _module(module: nn.Module, where: str) -> dict:
    kind = type(module).__name__
    fields = _fields(module, where)
    if fields.get("name") is None:
        fields.pop("name", None)
    config: dict = {"__object__": describe(type(module), where)}
    if graph_lib.is_functional(module):
        config["graph"] = graph_lib.encode(module, where, serialize)
        for name in graph_lib.GRAPH_FIELDS:
            fields.pop(name, None)
    elif isinstance(getattr(module, "_input", None), symbolic.Input) and "layers" in fields:
        fields["layers"] = (module._input, *fields["layers"])  # a Sequential's Input, which __post_init__ takes out
    config["config"] = {name: serialize(v, f"{where} ({kind}).{name}") for name, v in fields.items()}
    if _has_trainable_flag(type(module)) and module.trainable is False:
        config["trainable"] = False
    return config


def _dataclass(value, where: str, tensors) -> dict:
    kind = type(value).__name__
    generated_init = type(value).__dataclass_params__.init
    fields = _fields(value, where, init_only=generated_init)
    return {"__object__": describe(type(value), where), "set_fields": not generated_init,
            "config": {name: serialize(v, f"{where} ({kind}).{name}", tensors) for name, v in fields.items()}}


def _build(config: dict, custom_objects: Optional[dict], tensors) -> Any:
    cls = resolve(config["__object__"], custom_objects, "class")
    if not (isinstance(cls, type) and (issubclass(cls, nn.Module) or dataclasses.is_dataclass(cls))):
        raise SerializationError(f"A saved config asks to build {cls!r}, which is neither a Linen module nor a "
                                 f"dataclass; refusing to call it.")
    if "graph" in config:
        def build(graph_fields: dict):
            fields = {k: deserialize(v, custom_objects) for k, v in config["config"].items()}
            return cls(**graph_fields, **fields)
        return graph_lib.decode(config["graph"], build, lambda c, refs: deserialize(c, custom_objects, refs))
    fields = {k: deserialize(v, custom_objects, tensors) for k, v in config["config"].items()}
    if config.get("set_fields"):  # a dataclass with its own __init__ (MeanMetricWrapper): restore its fields
        value = cls.__new__(cls)
        for name, v in fields.items():
            object.__setattr__(value, name, v)
        return value
    try:
        value = cls(**fields)
    except TypeError as error:
        raise SerializationError(f"Cannot rebuild {cls.__name__} from its saved fields {sorted(fields)}: "
                                 f"{error}") from error
    if config.get("trainable") is False and _has_trainable_flag(cls):
        value.trainable = False
    return value
