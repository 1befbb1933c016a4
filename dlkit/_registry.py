"""Name lookup shared by activations, initializers, losses, metrics and optimizers."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def lookup(kind: str, identifier: Any, table: Mapping[str, Any]) -> Any:
    """Return ``table[identifier]`` or raise a ValueError that lists valid names.

    Callables pass through unchanged, so a user's own function works anywhere a
    name does.
    """
    if callable(identifier) and not isinstance(identifier, str):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(
            f"{kind} must be a name (str) or a callable, got {type(identifier).__name__}: "
            f"{identifier!r}. Valid names: {', '.join(sorted(table))}."
        )
    key = identifier.lower()
    if key not in table:
        raise ValueError(
            f"Unknown {kind} {identifier!r}. Valid names: {', '.join(sorted(table))}; "
            f"or pass a callable."
        )
    return table[key]


Fn = Callable[..., Any]
