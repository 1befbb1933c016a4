"""Names for the classes and functions a saved model refers to (Keras' ``register_keras_serializable``).

A saved config names every class (a layer, a model, a loss) and every function (an activation
given as a callable) it holds. Loading finds each name again, in this order:

1. a name registered with ``@register_serializable()`` (``'Custom>MyBlock'``): your own modules
   and functions, loadable in any process that imports the module defining them;
2. ``custom_objects`` given to ``load_model``, by registered name or by class/function name;
3. dlkit's own objects and those of the libraries it builds on (``flax``, ``jax``, ``optax``,
   ``numpy``), imported by module and name.

Anything else (a class defined in the script that saved the model, say) is not imported
by its module name: ``load_model`` raises an error naming it and the decorator.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Optional

# Packages whose objects load by module and name: dlkit and the libraries it is built on.
TRUSTED = ("dlkit", "flax", "jax", "jaxlib", "optax", "numpy")

_BY_NAME: dict = {}  # registered name -> object
_NAMES: dict = {}  # id(object) -> (object, registered name)


class SerializationError(ValueError):
    """A model (or compile argument) that cannot be saved as a config, or a config that cannot be
    loaded: the message names the field or the class and what to do."""


def register_serializable(package: str = "Custom", name: Optional[str] = None) -> Callable:
    """Keras' ``register_keras_serializable``: make a class or function loadable by ``load_model``.

    ``@dlkit.saving.register_serializable()`` above a Linen module (or a function) records it
    as ``'<package>>ClassName'``; a process that imports the module defining it can load models
    holding it. Registering a name again replaces the earlier object (a reloaded module).

    Args:
      package: the first part of the registered name (Keras' default ``'Custom'``).
      name: the second part; default the class's or function's ``__name__``.

    Returns:
      A decorator that registers its argument and returns it unchanged.

    Raises:
      ValueError: ``package`` contains ``'>'``.
    """
    if ">" in package:
        raise ValueError(f"register_serializable(package={package!r}): the package may not contain '>'.")

    def decorator(obj):
        registered = f"{package}>{name or obj.__name__}"
        old = _BY_NAME.get(registered)
        if old is not None:
            _NAMES.pop(id(old), None)
        _BY_NAME[registered] = obj
        _NAMES[id(obj)] = (obj, registered)
        return obj

    return decorator


def get_registered_name(obj) -> Optional[str]:
    """Keras' ``get_registered_name``: the name ``obj`` was registered under.

    Args:
      obj: a class or function.

    Returns:
      ``'<package>>Name'``, or ``None`` if ``obj`` is not registered.
    """
    found = _NAMES.get(id(obj))
    return found[1] if found is not None and found[0] is obj else None


def get_registered_object(name: str, custom_objects: Optional[dict] = None) -> Any:
    """Keras' ``get_registered_object``: the object registered (or given in ``custom_objects``) as ``name``.

    Args:
      name: a registered name (``'Custom>MyBlock'``) or a plain class/function name.
      custom_objects: ``{name: object}`` looked up first.

    Returns:
      The object, or ``None`` if neither knows the name.
    """
    custom_objects = custom_objects or {}
    if name in custom_objects:
        return custom_objects[name]
    return _BY_NAME.get(name)


def describe(obj, where: str) -> dict:
    """How a config names the class or function ``obj``.

    Args:
      obj: a class or a named function.
      where: the field holding it, for the error.

    Returns:
      ``{"module", "name", "registered_name"}`` (``registered_name`` ``None`` if unregistered).

    Raises:
      SerializationError: ``obj`` is a lambda or a function defined inside another, which no
        name can find again, or a trusted library's object that its name does not lead back to.
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", getattr(obj, "__name__", None))
    if module is None or qualname is None or "<lambda>" in qualname or "<locals>" in qualname:
        what = "a lambda" if qualname and "<lambda>" in qualname else \
            "defined inside a function" if qualname and "<locals>" in qualname else "unnamed"
        raise SerializationError(
            f"Cannot save {where}: {obj!r} is {what}, and a saved model names each function it holds. Use a "
            f"name ('relu', 'glorot_uniform'), or a function defined at module level and decorated with "
            f"@dlkit.saving.register_serializable().")
    registered = get_registered_name(obj)
    if registered is None and module.split(".")[0] in TRUSTED and _import(module, qualname) is not obj:
        raise SerializationError(f"Cannot save {where}: {obj!r} is not found again as {module}.{qualname}.")
    return {"module": module, "name": qualname, "registered_name": registered}


def resolve(ref: dict, custom_objects: Optional[dict], what: str) -> Any:
    """The class or function a config names (``describe``'s record), found as the module docstring says.

    Args:
      ref: ``{"module", "name", "registered_name"}``.
      custom_objects: ``{name: object}`` given to ``load_model``.
      what: ``'class'`` or ``'function'``, for the error.

    Returns:
      The object.

    Raises:
      SerializationError: nothing of that name is registered, given or importable from dlkit and
        its libraries (the message names it and the decorator).
    """
    custom_objects = custom_objects or {}
    registered, module, name = ref.get("registered_name"), ref["module"], ref["name"]
    for key in (registered, name, name.rpartition(".")[2]):
        if key is not None and key in custom_objects:
            return custom_objects[key]
    if registered is not None and registered in _BY_NAME:
        return _BY_NAME[registered]
    if module.split(".")[0] in TRUSTED:
        found = _import(module, name)
        if found is not None:
            return found
    label = registered or f"{module}.{name}"
    raise SerializationError(
        f"Cannot load the {what} {name!r} ({label}): it is not registered. Decorate it with "
        f"@dlkit.saving.register_serializable() in a module that the loading process imports before "
        f"load_model, or pass load_model(..., custom_objects={{{name.rpartition('.')[2]!r}: {name}}}).")


def _import(module: str, qualname: str) -> Any:
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj
