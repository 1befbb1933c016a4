"""``Sequential``: a stack of layers is itself a Linen module (``Input`` lives in ``dlkit.symbolic``)."""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Optional

import flax.linen as nn

from dlkit import masking, symbolic
from dlkit.layer_objects import LayerObject
from dlkit.layers.base import accepts_training
from dlkit.symbolic import Input  # noqa: F401  (re-exported: ``from dlkit.models.sequential import Input``)


def keras_name(layer: Any) -> str:
    """The Keras name of a layer's type: ``Dense`` -> ``dense``; a plain Linen module ``MyBlock`` -> ``my_block``.

    Args:
        layer: A layer or any Linen module.

    Returns:
        Its class's ``keras_name``, else the class name in snake case.
    """
    name = getattr(type(layer), "keras_name", None)
    if name:
        return name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(layer).__name__).lower()


def unique_names(layers: Sequence[Any]) -> list[str]:
    """Keras' naming: ``dense``, ``dense_1``, ``dense_2``…; a user-given ``name=`` is kept
    (and an automatic name skips the names users gave).

    Args:
        layers: The layers, in order.

    Returns:
        One unique name per layer, in order.

    Raises:
        ValueError: Two layers were given the same ``name=``.
    """
    given = [getattr(layer, "name", None) for layer in layers]
    repeated = sorted({n for n in given if n and given.count(n) > 1})
    if repeated:
        raise ValueError(f"Layer names must be unique within a model; {repeated} name more than one layer.")
    taken = {n for n in given if n}
    counts: dict[str, int] = {}
    names = []
    for layer, name in zip(layers, given):
        if name:
            names.append(name)
            continue
        base = keras_name(layer)
        while True:
            n = counts.get(base, 0)
            counts[base] = n + 1
            name = base if n == 0 else f"{base}_{n}"
            if name not in taken:
                break
        names.append(name)
    return names


class Sequential(LayerObject, nn.Module):
    """Keras' ``Sequential``: apply ``layers`` in order; any Linen module may be a layer.

    ``Sequential([Input((28, 28, 1)), Conv2D(32, 3, activation='relu'), ...])``

    Layers are named as Keras names them (``conv2d``, ``dense``, ``dense_1``... or their
    ``name=``), and those names key the parameters. Masks flow as in Keras and in the
    functional ``Model`` (``dlkit.masking``): an ``Embedding(mask_zero=True)``'s mask passes
    through the layers that keep the positions (``Dense``, ``Dropout``, ``TransformerEncoder``,
    ``LSTM(return_sequences=True)``...) and goes, as ``mask=``, to each layer whose ``call``
    takes one; a layer that ends the time axis (``LSTM()``, ``GlobalAveragePooling1D``) ends it.

    Args:
        layers: The layers; the first may be an ``Input(shape)``, which declares the sample shape.
        layer_names: The layers' names; ``None`` (default): derived from ``layers``.

    Call arguments:
        inputs: The batch for the first layer (or a symbolic tensor: the model is then a layer
            of a functional graph).
        training: Passed to each layer that takes ``training``; ``None`` means False.

    Returns:
        The last layer's output (a symbolic tensor for symbolic inputs).

    Raises:
        ValueError: An ``Input`` that is not first, a model without layers (when called), or two
            layers with the same ``name=``.
        TypeError: An entry that is not a layer (a string, a layer class).
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
        for i, layer in enumerate(layers):
            _check_layer(layer, i)
        object.__setattr__(self, "layers", layers)
        if self.layer_names is None:
            object.__setattr__(self, "layer_names", tuple(unique_names(layers)))
        super().__post_init__()

    def add(self, layer) -> None:
        """Append a layer (Keras ``model.add``); only before the model is trained.

        Args:
            layer: A layer or Linen module; an ``Input(shape)`` only while the model is empty.

        Raises:
            ValueError: An ``Input`` added to a non-empty model, or a duplicate ``name=``.
            TypeError: ``layer`` is not a layer.
        """
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("Input(...) may only be added to an empty Sequential.")
            object.__setattr__(self, "_input", layer)
            return
        _check_layer(layer, len(self.layers))
        object.__setattr__(self, "layers", tuple(self.layers) + (layer,))
        object.__setattr__(self, "layer_names", tuple(unique_names(self.layers)))

    def named_layers(self) -> list:
        """The layers with their names, which key the parameters (``dlkit.layer_objects`` walks them).

        Returns:
            ``[(name, layer), ...]`` in order.
        """
        return list(zip(self.layer_names, self.layers))

    @property
    def input_shape(self) -> Optional[tuple]:
        """The shape of one sample if the model declares it, else None."""
        if self._input is not None:
            return self._input.sample_shape
        if self.layers and getattr(self.layers[0], "input_shape", None) is not None:
            return tuple(self.layers[0].input_shape)
        return None

    def __call__(self, inputs, training: Optional[bool] = None):
        if symbolic.is_symbolic(inputs):  # a Sequential is a layer of a functional graph too
            return symbolic.call_layer(self, inputs, **({} if training is None else {"training": training}))
        return self.call(inputs, False if training is None else training)

    @nn.compact
    def call(self, inputs, training: bool = False):
        if not self.layers:
            raise ValueError("This Sequential has no layers; pass a list of layers or call add().")
        x, mask = inputs, None
        for layer, name in zip(self.layers, self.layer_names):
            module = layer.clone(parent=self, name=name)
            kwargs = {"training": training} if accepts_training(module) else {}
            kwargs, previous = masking.fill(layer, kwargs, [mask], {})
            y = module(x, **kwargs)
            out_masks = masking.output_masks(layer, x, previous, y)  # Keras' propagation, as in Model
            x, mask = y, (out_masks[0] if len(out_masks) == 1 else out_masks)
        return x


def _check_layer(layer, index: int) -> None:
    """A Sequential holds layers (Linen modules); name what else was given and what to write."""
    if isinstance(layer, nn.Module):
        return
    hint = f" For an activation write layers.Activation({layer!r})." if isinstance(layer, str) else ""
    if isinstance(layer, type) and issubclass(layer, nn.Module):
        hint = f" Write {layer.__name__}(...) with its arguments: the class itself is not a layer."
    raise TypeError(f"Sequential entry {index} is {type(layer).__name__} {layer!r}, not a layer.{hint}")
