"""Merge layers (Keras ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``,
``Minimum``, ``Concatenate``) and their functional forms (``add([a, b])``…).

Each takes a list of tensors: arrays, or symbolic tensors in a functional graph
(``x = layers.add([x, block(x)])``). Element-wise merges need shapes that are
equal or broadcast (Keras' rule); ``Concatenate`` needs equal shapes except on
``axis``. A mismatch raises a ``ValueError`` naming the shapes (for symbolic
inputs, where the graph is built).
"""
from __future__ import annotations

import functools
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from dlkit.layers.base import Layer


def _shape_text(shape) -> str:
    shape = ("None", *shape[1:])
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class _Merge(Layer):
    """Shared checks of the element-wise merges; subclasses define ``_merge(list) -> array``."""

    min_inputs: ClassVar[int] = 1
    exact_inputs: ClassVar[int] = 0

    def call(self, inputs, training: bool = False):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{type(self).__name__} must be called on a list of tensors, e.g. "
                             f"{type(self).__name__}()([a, b]); got a single {type(inputs).__name__}.")
        inputs = list(inputs)
        if self.exact_inputs and len(inputs) != self.exact_inputs:
            raise ValueError(f"{type(self).__name__} must be called on exactly {self.exact_inputs} tensors, "
                             f"got {len(inputs)}.")
        if len(inputs) < self.min_inputs:
            raise ValueError(f"{type(self).__name__} must be called on a list of at least {self.min_inputs} "
                             f"tensors, got {len(inputs)}.")
        self._check(inputs)
        return self._merge([jnp.asarray(x) for x in inputs])

    def _check(self, inputs) -> None:
        shapes = [tuple(np.shape(x)) for x in inputs]
        try:
            np.broadcast_shapes(*shapes)
        except ValueError:
            raise ValueError(f"{type(self).__name__} needs inputs of the same shape (or shapes that broadcast); "
                             f"got {', '.join(_shape_text(s) for s in shapes)}.") from None

    def _merge(self, inputs):
        raise NotImplementedError


class Add(_Merge):
    """The element-wise sum of a list of tensors."""

    keras_name: ClassVar[str] = "add"

    def _merge(self, inputs):
        return functools.reduce(jnp.add, inputs)


class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (exactly two tensors)."""

    exact_inputs: ClassVar[int] = 2
    keras_name: ClassVar[str] = "subtract"

    def _merge(self, inputs):
        return inputs[0] - inputs[1]


class Multiply(_Merge):
    """The element-wise product of a list of tensors."""

    keras_name: ClassVar[str] = "multiply"

    def _merge(self, inputs):
        return functools.reduce(jnp.multiply, inputs)


class Average(_Merge):
    """The element-wise mean of a list of tensors."""

    keras_name: ClassVar[str] = "average"

    def _merge(self, inputs):
        return functools.reduce(jnp.add, inputs) / len(inputs)


class Maximum(_Merge):
    """The element-wise maximum of a list of tensors."""

    keras_name: ClassVar[str] = "maximum"

    def _merge(self, inputs):
        return functools.reduce(jnp.maximum, inputs)


class Minimum(_Merge):
    """The element-wise minimum of a list of tensors."""

    keras_name: ClassVar[str] = "minimum"

    def _merge(self, inputs):
        return functools.reduce(jnp.minimum, inputs)


class Concatenate(_Merge):
    """Join a list of tensors along ``axis`` (default the last); other axes must match."""

    axis: int = -1
    keras_name: ClassVar[str] = "concatenate"

    def _check(self, inputs) -> None:
        shapes = [tuple(np.shape(x)) for x in inputs]
        ranks = {len(s) for s in shapes}
        text = ", ".join(_shape_text(s) for s in shapes)
        if len(ranks) != 1:
            raise ValueError(f"Concatenate needs inputs of the same rank; got shapes {text}.")
        rank = ranks.pop()
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"Concatenate axis={self.axis} is out of range for inputs of shape {text} (the batch "
                             f"axis 0 cannot be joined).")
        axis = self.axis % rank
        rest = {s[:axis] + s[axis + 1:] for s in shapes}
        if len(rest) != 1:
            raise ValueError(f"Concatenate(axis={self.axis}) needs inputs whose shapes match except on that axis; "
                             f"got {text}.")

    def _merge(self, inputs):
        return jnp.concatenate(inputs, axis=self.axis)


def add(inputs, **kwargs):
    """Functional form of ``Add``: ``add([a, b])``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """Functional form of ``Subtract``: ``subtract([a, b])`` is ``a - b``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Functional form of ``Multiply``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Functional form of ``Average``."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Functional form of ``Maximum``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """Functional form of ``Minimum``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis: int = -1, **kwargs):
    """Functional form of ``Concatenate``: ``concatenate([a, b], axis=-1)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)
