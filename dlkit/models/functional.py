"""``Model(inputs, outputs)``: Keras' functional API as a Flax Linen module.

::

    inputs = dlkit.Input((28, 28, 1))
    x = layers.Conv2D(8, 3, activation="relu")(inputs)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10)(x)
    model = dlkit.Model(inputs, outputs)

The model replays the recorded layer calls. Each distinct layer object is one
sub-module named as Keras names it (``conv2d``, ``dense``, ``dense_1``… or its
``name=``), so a layer called twice shares its weights. ``inputs`` may be one
``Input``, a list/tuple of them (then ``x`` is a tuple/list of arrays, or a dict
keyed by the inputs' names) or a dict of them (then ``x`` is a dict with the
same keys); ``outputs`` may be one tensor, a list/tuple, or a dict.

Masks flow as in Keras (``dlkit.masking``): a tensor carries the mask of the layer
that made it (``Embedding(mask_zero=True)``: ``tokens != 0``), layers that keep the
positions pass it on, and a layer whose ``call`` takes ``mask`` (``LSTM``, ``GRU``,
``Bidirectional``, ``TransformerEncoder``, ``GlobalAveragePooling1D``) receives it,
exactly as in a ``Sequential``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dlkit import masking, symbolic
from dlkit.layer_objects import LayerObject
from dlkit.layers.base import accepts_training
from dlkit.models.sequential import unique_names

_is_tensor = symbolic._is_tensor


def _leaves(tree, what: str) -> list:
    leaves = jax.tree.leaves(tree, is_leaf=_is_tensor)
    bad = [type(leaf).__name__ for leaf in leaves if not isinstance(leaf, symbolic.SymbolicTensor)]
    if bad or not leaves:
        raise ValueError(f"Model {what} must be symbolic tensors (dlkit.Input(...) or the result of calling a "
                         f"layer on one), or a list/dict of them; got {bad[0] if bad else 'nothing'}.")
    return leaves


def _input_names(inputs: list) -> list:
    """Keras 3 names inputs ``input_layer``, ``input_layer_1``… unless given ``name=``."""
    taken = {t.name for t in inputs if t.name}
    names, n = [], 0
    for t in inputs:
        if t.name:
            names.append(t.name)
            continue
        while (name := "input_layer" if n == 0 else f"input_layer_{n}") in taken:
            n += 1
        n += 1
        names.append(name)
    return names


class Model(LayerObject, nn.Module):
    """Keras' functional ``Model(inputs, outputs, name=None)``; see the module docstring.

    Args:
        inputs: One ``dlkit.Input``, or a list/tuple/dict of them.
        outputs: Symbolic tensors computed from ``inputs``: one, or a list/tuple/dict of them.
        layer_names: The layers' names, in graph order; ``None`` (default): Keras' naming.

    Call arguments:
        inputs: Arrays structured as the model's ``inputs`` (one array; a list/tuple or a dict
            keyed by the inputs' names; a dict for dict inputs), or symbolic tensors (the
            model is then a layer of a bigger graph).
        training: Passed to each layer that takes ``training``; ``None`` means False.

    Returns:
        The outputs' values, structured as ``outputs``.

    Raises:
        ValueError: ``inputs``/``outputs`` are not symbolic tensors or not ``Input`` tensors, an
            ``Input`` appears twice; when called, data that do not match the inputs' structure or shapes.
    """

    inputs: Any
    outputs: Any
    # Derived from the graph when the model is built by the user; a field so that
    # Flax's clones keep it.
    layer_names: Optional[Sequence[str]] = None
    keras_name: ClassVar[str] = "functional"

    def __post_init__(self):
        input_leaves = _leaves(self.inputs, "inputs")
        if isinstance(self.inputs, dict) and any(not _is_tensor(v) for v in self.inputs.values()):
            raise ValueError("A dict of model inputs must map names to dlkit.Input(...) tensors (one level).")
        for t in input_leaves:
            if t.node is not None:
                raise ValueError(f"Model inputs must be dlkit.Input(...) tensors; got the output of "
                                 f"{type(t.node.layer).__name__}. (Nested graphs: build a Model and call it.)")
        if len({id(t) for t in input_leaves}) != len(input_leaves):
            raise ValueError("The same Input appears twice in the model's inputs.")
        nodes = symbolic.graph(input_leaves, _leaves(self.outputs, "outputs"))
        layers, seen = [], set()
        for node in nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                layers.append(node.layer)
        object.__setattr__(self, "_nodes", nodes)
        object.__setattr__(self, "_layers", layers)
        if self.layer_names is None:
            object.__setattr__(self, "layer_names", tuple(unique_names(layers)))
        super().__post_init__()

    # ------------------------------------------------------------------ Keras' properties
    def named_layers(self) -> list:
        """The layers with their names, which key the parameters (``dlkit.layer_objects`` walks them).

        Returns:
            ``[(name, layer), ...]`` in graph order.
        """
        return list(zip(self.layer_names, self._layers))

    @property
    def input_shape(self):
        """The shape of one sample per input, structured as ``inputs`` (the Trainer builds from it)."""
        shapes = jax.tree.map(lambda t: t.sample_shape, self.inputs, is_leaf=_is_tensor)
        return tuple(shapes) if isinstance(shapes, list) else shapes  # fit turns a list of arrays into a tuple

    @property
    def output_shape(self):
        """The output shapes with the batch axis as ``None``, structured as ``outputs``."""
        return jax.tree.map(lambda t: t.shape, self.outputs, is_leaf=_is_tensor)

    @property
    def output_names(self) -> list:
        """Keras' ``model.output_names``: a dict's keys, else the names of the layers that compute the
        outputs (``loss={"digit": ...}`` keys them), ``output_0``… where two outputs share a layer."""
        if isinstance(self.outputs, dict):
            return list(self.outputs)
        names = dict(zip(map(id, self._layers), self.layer_names))
        leaves, (input_leaves, input_names) = _leaves(self.outputs, "outputs"), self._named_inputs()
        inputs = dict(zip(map(id, input_leaves), input_names))
        found = [names[id(t.node.layer)] if t.node is not None else inputs[id(t)] for t in leaves]
        return found if len(set(found)) == len(found) else [f"output_{i}" for i in range(len(found))]

    def _named_inputs(self) -> tuple:
        """The input tensors in flattening order and their names (a dict's keys, else Keras' names)."""
        leaves = _leaves(self.inputs, "inputs")
        if isinstance(self.inputs, dict):
            return leaves, sorted(self.inputs)
        return leaves, _input_names(leaves)

    @property
    def input_names(self) -> list:
        """The inputs' names: a dict's sorted keys, else ``name=`` or ``input_layer``, ``input_layer_1``…"""
        return self._named_inputs()[1]

    def summary_input_rows(self) -> list:
        """``(name, shape)`` of each input, for ``summary()``'s ``InputLayer`` rows.

        Returns:
            A list of ``(name, shape with None batch axis)`` pairs, in flattening order.
        """
        leaves, names = self._named_inputs()
        return list(zip(names, [t.shape for t in leaves]))

    # ------------------------------------------------------------------ running
    def __call__(self, inputs, training: Optional[bool] = None):
        if symbolic.is_symbolic(inputs):  # a model is a layer of a bigger graph
            return symbolic.call_layer(self, inputs, **({} if training is None else {"training": training}))
        return self.call(inputs, False if training is None else training)

    def _feed(self, x) -> dict:
        """``id(Input) -> array`` from the data ``x`` as the model's ``inputs`` are structured."""
        structure = self.inputs
        leaves, names = self._named_inputs()
        if isinstance(structure, symbolic.SymbolicTensor):
            if isinstance(x, (list, tuple)) and len(x) == 1:
                x = x[0]
            elif isinstance(x, dict) and len(x) == 1:
                x = next(iter(x.values()))
            arrays = [x]
        elif isinstance(structure, dict):
            if not isinstance(x, dict):
                raise ValueError(f"This model has named inputs {sorted(structure)}: pass x as a dict with those "
                                 f"keys, got {type(x).__name__}.")
            missing = [k for k in structure if k not in x]
            if missing:
                raise ValueError(f"x lacks the model inputs {missing}; it has keys {sorted(x)}.")
            arrays = [x[k] for k in sorted(structure)]
        else:
            if isinstance(x, dict):
                missing = [n for n in names if n not in x]
                if missing:
                    raise ValueError(f"x is a dict but lacks the model inputs {missing} (the inputs' names); "
                                     f"it has keys {sorted(x)}.")
                arrays = [x[n] for n in names]
            elif isinstance(x, (list, tuple)) and len(x) == len(leaves):
                arrays = list(x)
            else:
                got = f"{len(x)} arrays" if isinstance(x, (list, tuple)) else "one array"
                raise ValueError(f"This model has {len(leaves)} inputs; pass x as a list/tuple of {len(leaves)} "
                                 f"arrays (or a dict keyed by {names}), got {got}.")
        values = {}
        for tensor, name, array in zip(leaves, names, arrays):
            shape = tuple(np.shape(array))
            if shape[1:] + (1,) == tensor.sample_shape:  # Keras: a column (n,) feeds Input(shape=(1,))
                array, shape = jnp.expand_dims(array, -1), (*shape, 1)
            elif len(shape) > 1 and shape[1:] == tensor.sample_shape + (1,) and tensor.sample_shape:
                array, shape = jnp.squeeze(array, -1), shape[:-1]
            if shape[1:] != tensor.sample_shape:
                raise ValueError(f"Input '{name}' expects samples of shape {tensor.sample_shape}, got data of "
                                 f"shape {shape} (samples of shape {shape[1:]}).")
            values[id(tensor)] = array
        return values

    @nn.compact
    def call(self, inputs, training: bool = False):
        values = self._feed(inputs)
        modules = {id(layer): layer.clone(parent=self, name=name)
                   for layer, name in zip(self._layers, self.layer_names)}
        masks: dict = {}  # id(tensor) -> its mask (Keras' implicit masks, see dlkit.masking)
        for node in self._nodes:
            module = modules[id(node.layer)]
            args, kwargs = node.arguments(values)
            kwargs = dict(kwargs)
            if "training" not in kwargs and accepts_training(module):
                kwargs["training"] = training
            kwargs, previous = masking.fill(node.layer, kwargs, *node.argument_masks(masks))
            out = module(*args, **kwargs)
            out_leaves = jax.tree.leaves(out)
            out_masks = masking.output_masks(node.layer, args[0], previous, out, warn=False)  # warned when built
            for tensor, value, mask in zip(node.outputs, out_leaves, out_masks):
                values[id(tensor)] = value
                masks[id(tensor)] = mask
        return jax.tree.map(lambda t: values[id(t)], self.outputs, is_leaf=_is_tensor)
