"""Which dlkit constructor made an object, with which arguments: how a config names what no class
describes. An optimizer is an optax ``GradientTransformation``, a tuple of closures; the
``dlkit.optimizers`` constructors are ``@recorded``, so ``trainer.save`` saves ``Adam`` and its
arguments, and ``load_model`` calls ``Adam(**arguments)`` again.

The record keeps each object it describes (so that its ``id`` is not reused): a few small
objects per optimizer made.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Optional

_MADE: dict = {}  # id(object) -> (object, the recorded constructor, {argument: value})
_CONSTRUCTORS: set = set()  # the recorded constructors: the only functions a config may have called on load


def recorded(constructor: Callable) -> Callable:
    """Decorate a constructor so that ``recipe`` finds what each object it returns was made by.

    Args:
      constructor: a function returning a new object (keyword arguments ``**options`` are
        recorded as arguments of their own).

    Returns:
      The constructor, recording its calls (same name, docstring and signature).
    """
    signature = inspect.signature(constructor)

    @functools.wraps(constructor)
    def make(*args, **kwargs):
        made = constructor(*args, **kwargs)
        arguments = {}
        for name, value in signature.bind(*args, **kwargs).arguments.items():
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            elif signature.parameters[name].kind is not inspect.Parameter.VAR_POSITIONAL:
                arguments[name] = value
            elif value:  # extra positional arguments: not recorded, so the object has no recipe
                return made
        _MADE[id(made)] = (made, make, arguments)
        return made

    _CONSTRUCTORS.add(make)
    return make


def is_recorded(constructor) -> bool:
    """Whether ``constructor`` is one that ``recorded`` decorated (``load_model`` calls no other function).

    Args:
      constructor: a function a config names.

    Returns:
      True for a recorded constructor.
    """
    return constructor in _CONSTRUCTORS


def recipe(obj) -> Optional[tuple]:
    """The recorded constructor that made ``obj``, and its arguments.

    Args:
      obj: any object.

    Returns:
      ``(constructor, {argument: value})``, or ``None`` if no recorded constructor made ``obj``.
    """
    found = _MADE.get(id(obj))
    return None if found is None or found[0] is not obj else found[1:]
