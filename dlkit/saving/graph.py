"""A functional ``Model``'s graph in a config: its inputs, its layers once each, and the recorded calls.

A tensor is referred to as ``["input", k]`` (the model's ``k``-th input) or ``[j, i]`` (the
``i``-th output of the ``j``-th call). Loading makes new ``Input`` tensors and replays each
call on them in the recorded order, with the same arguments (``dlkit.symbolic.call_layer``),
so a layer called twice is one object again and shares its weights.
"""
from __future__ import annotations

from collections.abc import Callable

import jax

from dlkit import symbolic
from dlkit.saving.registry import SerializationError

GRAPH_FIELDS = ("inputs", "outputs")  # the Model's fields the graph replaces in its config


def _is_tensor(value) -> bool:
    return isinstance(value, symbolic.SymbolicTensor)


def is_functional(module) -> bool:
    """Whether ``module`` is a functional model: it replays a recorded graph of layer calls.

    Args:
      module: a Linen module.

    Returns:
      True for ``dlkit.Model`` (and its subclasses).
    """
    return isinstance(getattr(module, "_nodes", None), list) and all(hasattr(module, f) for f in GRAPH_FIELDS)


def encode(model, where: str, serialize: Callable) -> dict:
    """The graph of a functional model as a config.

    Args:
      model: a functional ``Model``.
      where: how errors name the model.
      serialize: ``dlkit.saving.serialization.serialize``.

    Returns:
      ``{"inputs", "input_structure", "layers", "nodes", "outputs"}``.

    Raises:
      SerializationError: a layer or call argument cannot be saved (named).
    """
    inputs = jax.tree.leaves(model.inputs, is_leaf=_is_tensor)
    input_at = {id(t): k for k, t in enumerate(inputs)}
    node_at = {id(node): j for j, node in enumerate(model._nodes)}
    layer_at = {id(layer): i for i, layer in enumerate(model._layers)}

    def ref(tensor) -> list:
        if id(tensor) in input_at:
            return ["input", input_at[id(tensor)]]
        if tensor.node is None or id(tensor.node) not in node_at:
            raise SerializationError(f"Cannot save {where}: a tensor of its graph comes from outside the model.")
        return [node_at[id(tensor.node)], tensor.index]

    return {
        "inputs": [{"shape": list(t.sample_shape), "dtype": t.dtype.name, "name": t.name} for t in inputs],
        "input_structure": serialize(model.inputs, f"{where}.inputs", ref),
        "layers": [serialize(layer, f"{where}.layers[{i}]") for i, layer in enumerate(model._layers)],
        "nodes": [{"layer": layer_at[id(node.layer)],
                   "arguments": serialize(jax.tree.unflatten(node.treedef, node.leaves), f"{where} call {j}", ref)}
                  for j, node in enumerate(model._nodes)],
        "outputs": serialize(model.outputs, f"{where}.outputs", ref),
    }


def decode(config: dict, build: Callable, deserialize: Callable):
    """Replay a saved graph and build the model on it.

    Args:
      config: what ``encode`` returned.
      build: ``build({"inputs": ..., "outputs": ...})`` makes the model from the new tensors.
      deserialize: ``deserialize(config, tensors)``, ``tensors`` mapping a reference to its tensor.

    Returns:
      What ``build`` returns.
    """
    inputs = [symbolic.Input(tuple(s["shape"]), s["dtype"], s["name"]) for s in config["inputs"]]
    layers = [deserialize(layer, None) for layer in config["layers"]]
    made: list = []  # the flat outputs of each replayed call

    def tensor(ref: list):
        return inputs[ref[1]] if ref[0] == "input" else made[ref[0]][ref[1]]

    for node in config["nodes"]:
        (call_args, call_kwargs) = deserialize(node["arguments"], tensor)
        out = symbolic.call_layer(layers[node["layer"]], *call_args, **call_kwargs)
        made.append(jax.tree.leaves(out, is_leaf=_is_tensor))
    return build({"inputs": deserialize(config["input_structure"], tensor),
                  "outputs": deserialize(config["outputs"], tensor)})
