"""``Lambda``: Keras' layer wrapping a function of arrays (``jnp`` operations), with no weights."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Optional

from dlkit.layers.base import Layer


class Lambda(Layer):
    """Keras' ``Lambda``: ``outputs = function(inputs, **arguments)``, a layer without weights.

    ``function`` is written with ``jnp`` (it is traced and compiled with the model), e.g.
    ``Lambda(lambda x: x / 255.0)`` or, on several inputs of a functional graph,
    ``Lambda(lambda xs: xs[0] * xs[1])([a, b])``. A function with a ``training`` parameter is
    given Keras' flag. It works in a ``Sequential``, in ``dlkit.Model`` graphs (output shapes are
    worked out by tracing it) and shows in ``summary()`` as ``lambda (Lambda)``.

    Args:
        function: A function of the inputs (an array, or the list/dict a graph passes) returning arrays.
        output_shape: Optional check of the output's shape: a tuple without the batch axis (``None``
            entries match any size), or a function of the full input shape returning the full output
            shape, as in Keras. ``None``: no check (the shape is inferred).
        arguments: Optional keyword arguments passed to ``function``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: What ``function`` takes.
        training: Passed on when ``function`` takes ``training``; otherwise unused.

    Returns:
        ``function(inputs, **arguments)``.

    Raises:
        TypeError: ``function`` is not callable (when the layer is made).
        ValueError: The output's shape differs from ``output_shape``.
    """

    function: Callable
    output_shape: Any = None
    arguments: Optional[dict] = None
    keras_name: ClassVar[str] = "lambda"

    def __post_init__(self):
        if not callable(self.function):
            raise TypeError(f"Lambda takes a function, e.g. Lambda(lambda x: x * 2); got {self.function!r}.")
        super().__post_init__()

    def call(self, inputs, training: bool = False):
        kwargs = dict(self.arguments or {})
        if _takes_training(self.function):
            kwargs["training"] = training
        outputs = self.function(inputs, **kwargs)
        if self.output_shape is not None and hasattr(outputs, "shape"):
            if callable(self.output_shape):
                wanted = tuple(self.output_shape(_shape_of(inputs)))
                got = tuple(outputs.shape)
            else:
                wanted, got = tuple(self.output_shape), tuple(outputs.shape[1:])
            if len(wanted) != len(got) or any(w is not None and w != g for w, g in zip(wanted, got)):
                raise ValueError(f"Lambda's function returned shape {tuple(outputs.shape)}, which does not match "
                                 f"output_shape={self.output_shape!r} (a tuple leaves out the batch axis).")
        return outputs


def _takes_training(function) -> bool:
    try:
        return "training" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _shape_of(inputs):
    """The input's shape (a list of them for several inputs), as Keras passes it to ``output_shape``."""
    if hasattr(inputs, "shape"):
        return tuple(inputs.shape)
    if isinstance(inputs, dict):
        return {k: tuple(v.shape) for k, v in inputs.items()}
    return [tuple(v.shape) for v in inputs]
