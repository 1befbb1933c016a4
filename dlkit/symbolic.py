"""Symbolic tensors for Keras' functional API: ``Input(shape)`` and layers called on it.

(Filled in by the functional-API work; the layer base class dispatches here.)
"""
from __future__ import annotations


class SymbolicTensor:
    """A placeholder for a batch of tensors of a known per-sample shape (batch axis excluded)."""


def is_symbolic(value) -> bool:
    return isinstance(value, SymbolicTensor) or (
        isinstance(value, (tuple, list)) and any(isinstance(v, SymbolicTensor) for v in value))


def call_layer(layer, inputs, *args, **kwargs):
    raise NotImplementedError("The functional API is not available yet.")
