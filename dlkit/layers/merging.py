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
    """Keras' ``Add``: the element-wise sum, ``x_1 + x_2 + ... + x_n``.

    Args:
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: a list of at least one tensor, of equal (or broadcastable) shapes.
        training: Unused; Keras' flag.

    Returns:
        An array of the broadcast shape of the inputs.

    Raises:
        ValueError: ``inputs`` is not a list, or the shapes do not broadcast.
    """

    keras_name: ClassVar[str] = "add"

    def _merge(self, inputs):
        return functools.reduce(jnp.add, inputs)


class Subtract(_Merge):
    """Keras' ``Subtract``: the element-wise difference, ``inputs[0] - inputs[1]``.

    Args:
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: A list of exactly two tensors, of equal (or broadcastable) shapes.
        training: Unused; Keras' flag.

    Returns:
        An array of the broadcast shape of the inputs.

    Raises:
        ValueError: ``inputs`` is not a list of two, or the shapes do not broadcast.
    """

    exact_inputs: ClassVar[int] = 2
    keras_name: ClassVar[str] = "subtract"

    def _merge(self, inputs):
        return inputs[0] - inputs[1]


class Multiply(_Merge):
    """Keras' ``Multiply``: the element-wise product, ``x_1 * x_2 * ... * x_n``.

    Args:
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: a list of at least one tensor, of equal (or broadcastable) shapes.
        training: Unused; Keras' flag.

    Returns:
        An array of the broadcast shape of the inputs.

    Raises:
        ValueError: ``inputs`` is not a list, or the shapes do not broadcast.
    """

    keras_name: ClassVar[str] = "multiply"

    def _merge(self, inputs):
        return functools.reduce(jnp.multiply, inputs)


class Average(_Merge):
    """Keras' ``Average``: the element-wise mean, ``(x_1 + ... + x_n) / n``.

    Args:
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: a list of at least one tensor, of equal (or broadcastable) shapes.
        training: Unused; Keras' flag.

    Returns:
        An array of the broadcast shape of the inputs.

    Raises:
        ValueError: ``inputs`` is not a list, or the shapes do not broadcast.
    """

    keras_name: ClassVar[str] = "average"

    def _merge(self, inputs):
        return functools.reduce(jnp.add, inputs) / len(inputs)


class Maximum(_Merge):
    """Keras' ``Maximum``: the element-wise maximum, ``max(x_1, ..., x_n)``.

    Args:
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: a list of at least one tensor, of equal (or broadcastable) shapes.
        training: Unused; Keras' flag.

    Returns:
        An array of the broadcast shape of the inputs.

    Raises:
        ValueError: ``inputs`` is not a list, or the shapes do not broadcast.
    """

    keras_name: ClassVar[str] = "maximum"

    def _merge(self, inputs):
        return functools.reduce(jnp.maximum, inputs)


class Minimum(_Merge):
    """Keras' ``Minimum``: the element-wise minimum, ``min(x_1, ..., x_n)``.

    Args:
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: a list of at least one tensor, of equal (or broadcastable) shapes.
        training: Unused; Keras' flag.

    Returns:
        An array of the broadcast shape of the inputs.

    Raises:
        ValueError: ``inputs`` is not a list, or the shapes do not broadcast.
    """

    keras_name: ClassVar[str] = "minimum"

    def _merge(self, inputs):
        return functools.reduce(jnp.minimum, inputs)


class Concatenate(_Merge):
    """Keras' ``Concatenate``: join a list of tensors along ``axis``.

    Args:
        axis: The axis to join along (default the last); not the batch axis 0.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: A list of at least one tensor of equal rank, whose shapes match except on ``axis``.
        training: Unused; Keras' flag.

    Returns:
        An array whose ``axis`` is the sum of the inputs' sizes along it.

    Raises:
        ValueError: ``inputs`` is not a list, the ranks differ, ``axis`` is out of range or 0, or
            the other axes do not match.
    """

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
    """Functional form of ``Add`` (Keras' ``layers.add``): ``add([a, b])`` is ``a + b``.

    Args:
        inputs: A list of tensors (arrays, or symbolic tensors of a functional graph).
        **kwargs: Keyword arguments of ``Add`` (``name=``...).

    Returns:
        ``Add(**kwargs)(inputs)``: an array, or a symbolic tensor.
    """
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """Functional form of ``Subtract`` (Keras' ``layers.subtract``): ``subtract([a, b])`` is ``a - b``.

    Args:
        inputs: A list of tensors (arrays, or symbolic tensors of a functional graph).
        **kwargs: Keyword arguments of ``Subtract`` (``name=``...).

    Returns:
        ``Subtract(**kwargs)(inputs)``: an array, or a symbolic tensor.
    """
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Functional form of ``Multiply`` (Keras' ``layers.multiply``): ``multiply([a, b])`` is ``a * b``.

    Args:
        inputs: A list of tensors (arrays, or symbolic tensors of a functional graph).
        **kwargs: Keyword arguments of ``Multiply`` (``name=``...).

    Returns:
        ``Multiply(**kwargs)(inputs)``: an array, or a symbolic tensor.
    """
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Functional form of ``Average`` (Keras' ``layers.average``): ``average([a, b])`` is ``(a + b) / 2``.

    Args:
        inputs: A list of tensors (arrays, or symbolic tensors of a functional graph).
        **kwargs: Keyword arguments of ``Average`` (``name=``...).

    Returns:
        ``Average(**kwargs)(inputs)``: an array, or a symbolic tensor.
    """
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Functional form of ``Maximum`` (Keras' ``layers.maximum``): the element-wise maximum.

    Args:
        inputs: A list of tensors (arrays, or symbolic tensors of a functional graph).
        **kwargs: Keyword arguments of ``Maximum`` (``name=``...).

    Returns:
        ``Maximum(**kwargs)(inputs)``: an array, or a symbolic tensor.
    """
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """Functional form of ``Minimum`` (Keras' ``layers.minimum``): the element-wise minimum.

    Args:
        inputs: A list of tensors (arrays, or symbolic tensors of a functional graph).
        **kwargs: Keyword arguments of ``Minimum`` (``name=``...).

    Returns:
        ``Minimum(**kwargs)(inputs)``: an array, or a symbolic tensor.
    """
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis: int = -1, **kwargs):
    """Functional form of ``Concatenate`` (Keras' ``layers.concatenate``): ``concatenate([a, b], axis=-1)``.

    Args:
        inputs: A list of tensors (arrays, or symbolic tensors of a functional graph).
        axis: The axis to join along (default the last).
        **kwargs: Other keyword arguments of ``Concatenate`` (``name=``...).

    Returns:
        ``Concatenate(axis=axis, **kwargs)(inputs)``: an array, or a symbolic tensor.
    """
    return Concatenate(axis=axis, **kwargs)(inputs)
