"""``Sequential`` and ``Input``: a stack of layers is itself a Linen module."""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional, Sequence

import flax.linen as nn

from dlkit.layers.base import call_with_training


@dataclasses.dataclass(frozen=True)
class Input:
    """The shape of one sample (no batch axis), as Keras' ``Input(shape)``.

    Put it first in a ``Sequential`` (or give the first layer ``input_shape=``)
    so the model can be built and summarised before it sees data.
    """

    shape: Sequence[int]
    dtype: str = "float32"
    name: Optional[str] = None

    def __post_init__(self):
        shape = (self.shape,) if isinstance(self.shape, int) else tuple(self.shape)
        object.__setattr__(self, "shape", shape)


def keras_name(layer: Any) -> str:
    """``Dense`` -> ``dense``; a plain Linen module ``MyBlock`` -> ``my_block``."""
    name = getattr(type(layer), "keras_name", None)
    if name:
        return name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(layer).__name__).lower()


def unique_names(layers: Sequence[Any]) -> list[str]:
    """Keras' naming: ``dense``, ``dense_1``, ``dense_2``…; a user-given ``name=`` is kept."""
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        if getattr(layer, "name", None):
            names.append(layer.name)
            continue
        base = keras_name(layer)
        n = counts.get(base, 0)
        counts[base] = n + 1
        names.append(base if n == 0 else f"{base}_{n}")
    return names


class Sequential(nn.Module):
    """Apply ``layers`` in order (Keras ``Sequential``); any Linen module may be a layer.

    ``Sequential([Input((28, 28, 1)), Conv2D(32, 3, activation='relu'), ...])``
    """

    layers: Sequence[Any] = ()
    # Derived from ``layers`` when the model is built by the user; kept as a field
    # because Flax renames the held layers ``layers_<i>`` when it binds them.
    layer_names: Optional[Sequence[str]] = None

    def __post_init__(self):
        layers = tuple(self.layers)
        if layers and isinstance(layers[0], Input):
            object.__setattr__(self, "_input", layers[0])
            layers = layers[1:]
        elif not hasattr(self, "_input"):
            object.__setattr__(self, "_input", None)
        if any(isinstance(layer, Input) for layer in layers):
            raise ValueError("Input(...) may only be the first entry of a Sequential.")
        object.__setattr__(self, "layers", layers)
        if self.layer_names is None:
            object.__setattr__(self, "layer_names", tuple(unique_names(layers)))
        super().__post_init__()

    def add(self, layer) -> None:
        """Append a layer (Keras ``model.add``); only before the model is trained."""
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("Input(...) may only be added to an empty Sequential.")
            object.__setattr__(self, "_input", layer)
            return
        object.__setattr__(self, "layers", tuple(self.layers) + (layer,))
        object.__setattr__(self, "layer_names", tuple(unique_names(self.layers)))

    @property
    def input_shape(self) -> Optional[tuple]:
        """The shape of one sample if the model declares it, else None."""
        if self._input is not None:
            return self._input.shape
        if self.layers and getattr(self.layers[0], "input_shape", None) is not None:
            return tuple(self.layers[0].input_shape)
        return None

    @nn.compact
    def __call__(self, inputs, training: bool = False):
        if not self.layers:
            raise ValueError("This Sequential has no layers; pass a list of layers or call add().")
        x = inputs
        for layer, name in zip(self.layers, self.layer_names):
            x = call_with_training(layer.clone(parent=self, name=name), x, training)
        return x
