"""How dlkit calls a module: Keras' ``training`` argument is passed only where it is accepted.

A dlkit layer's ``call(self, inputs, training=False)`` takes it; a plain Linen
module written without it is called without it, so any module can be a layer.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Optional


def accepts_training(target: Any, method: Optional[Any] = None) -> bool:
    """Whether calling ``target`` (a Linen module, or a module's bound ``apply``) takes ``training``.

    Args:
      target: a module, or a bound method of one (``model.apply``), whose module is checked.
      method: ``None`` for ``__call__``, or the method's name or function (as Flax's
        ``apply(..., method=...)`` takes it).

    Returns:
      True if the method has a ``training`` parameter or takes ``**kwargs``.
    """
    module = getattr(target, "__self__", target)
    function: Callable = type(module).__call__ if method is None else (
        getattr(type(module), method) if isinstance(method, str) else method)
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return "training" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def call_with_training(module: Any, inputs: Any, training: bool) -> Any:
    """Call ``module(inputs, training=training)``, or ``module(inputs)`` if it takes no ``training``.

    Args:
      module: a Linen module.
      inputs: its inputs.
      training: Keras' training flag (dropout and batch statistics on).

    Returns:
      The module's outputs.
    """
    if accepts_training(module):
        return module(inputs, training=training)
    return module(inputs)
