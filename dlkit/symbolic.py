"""Symbolic tensors for Keras' functional API: ``Input(shape)`` and layers called on it.

``inputs = dlkit.Input((28, 28, 1))`` is a :class:`SymbolicTensor`: a placeholder
for a batch of samples of a known shape. Calling a layer on symbolic tensors
runs nothing: it records a :class:`Node` (the layer, its inputs, its call
arguments) and returns new symbolic tensors whose shapes ``jax.eval_shape``
works out on a dummy batch, so a shape mistake surfaces where the graph is
built, as in Keras. ``dlkit.Model(inputs, outputs)`` replays the graph.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dlkit import masking
from dlkit.calling import accepts_training

# The batch size of the dummy batch that shapes are worked out on (shown as None).
_DUMMY_BATCH = 2


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class SymbolicTensor:
    """A placeholder for a batch of tensors of a known per-sample shape (Keras' ``KerasTensor``).

    ``shape`` shows the batch axis as ``None`` (Keras' ``(None, 28, 28, 1)``);
    ``sample_shape`` is the shape of one sample. It has no value: ``bool()`` and numpy
    conversion raise ``TypeError``.

    Args:
      sample_shape: the shape of one sample (no batch axis).
      dtype: the dtype of the tensor.
      node: the layer call that produced it (``None`` for an ``Input``).
      index: its place among that call's flat outputs.
      name: an optional name (an ``Input``'s key in a functional model's dict inputs).

    A tensor made by a layer may carry a mask (Keras' ``_keras_mask``, see ``dlkit.masking``):
    ``mask_shape`` is its shape, batch axis ``None`` (``None``: no mask). The mask's values are
    computed with the tensor's when the model runs.
    """

    def __init__(self, sample_shape: Sequence[int], dtype: Any = "float32", node: Optional[Node] = None,
                 index: int = 0, name: Optional[str] = None):
        self.sample_shape = tuple(sample_shape)
        self.dtype = jnp.dtype(dtype)
        self.node = node
        self.index = index
        self.name = name
        self.mask_spec: Optional[jax.ShapeDtypeStruct] = None  # one sample's mask, set by ``call_layer``

    @property
    def mask_shape(self) -> Optional[tuple]:
        """The shape of the mask this tensor carries, batch axis ``None``; ``None`` if it carries none."""
        return None if self.mask_spec is None else (None, *self.mask_spec.shape)

    @property
    def shape(self) -> tuple:
        """Keras' shape: ``(None, *sample_shape)``, the batch axis as ``None``."""
        return (None, *self.sample_shape)

    @property
    def ndim(self) -> int:
        """The number of axes, the batch axis included."""
        return len(self.shape)

    def dummy(self) -> jax.ShapeDtypeStruct:
        """A stand-in batch for ``jax.eval_shape``.

        Returns:
          A ``jax.ShapeDtypeStruct`` of shape ``(2, *sample_shape)`` (a dummy batch of 2).
        """
        return jax.ShapeDtypeStruct((_DUMMY_BATCH, *self.sample_shape), self.dtype)

    def __repr__(self) -> str:
        made_by = f", made by {type(self.node.layer).__name__}" if self.node is not None else ""
        name = f", name={self.name!r}" if self.name else ""
        return f"<SymbolicTensor shape={_shape_text(self.shape)}, dtype={self.dtype}{name}{made_by}>"

    # A Python bool or a numpy conversion of a placeholder is a mistake worth naming.
    def __bool__(self):
        raise TypeError("A symbolic tensor (from dlkit.Input or a layer called on one) has no value; it can only "
                        "be passed to dlkit layers and to dlkit.Model(inputs, outputs).")

    def __array__(self, *args, **kwargs):
        raise TypeError("A symbolic tensor (from dlkit.Input or a layer called on one) has no value. Apply "
                        "jnp/numpy operations inside a layer; in a functional graph use dlkit layers, e.g. "
                        "layers.add([a, b]) instead of a + b.")


class Input(SymbolicTensor):
    """Keras' ``Input(shape)``: the start of a functional graph, or the first entry of a ``Sequential``.

    ``Input((28, 28, 1)).shape`` is ``(None, 28, 28, 1)`` as in Keras; ``.sample_shape``
    is ``(28, 28, 1)``.

    Args:
      shape: the shape of one sample (no batch axis), an int or a tuple of ints.
      dtype: the inputs' dtype.
      name: the input's name (a functional model's dict inputs are keyed by it).
      batch_size: not supported (the batch size is set by fit/predict); passing one raises.

    Raises:
      ValueError: for a missing or non-integer shape, or a batch size.
    """

    def __init__(self, shape: Any = None, dtype: Any = "float32", name: Optional[str] = None, *,
                 batch_size: Optional[int] = None):
        if shape is None:
            raise ValueError("Input needs the shape of one sample, e.g. dlkit.Input((28, 28, 1)).")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
            raise ValueError(f"Input shape must be non-negative ints (the shape of one sample, batch axis "
                             f"excluded; dlkit does not support None dimensions), got {shape!r}.")
        if batch_size is not None:
            raise ValueError("Input(batch_size=...) is not supported: the batch size is set by fit/predict.")
        super().__init__(tuple(int(d) for d in shape), dtype, None, 0, name)


class Node:
    """One recorded layer call, ``layer(*args, **kwargs)``, where some leaves of
    ``(args, kwargs)`` are symbolic tensors (Keras' ``Node``).

    Nodes are numbered in creation order (``order``), which is a valid call order.

    Args:
      layer: the layer called.
      leaves: the flat leaves of ``(args, kwargs)``, symbolic tensors among them.
      treedef: the structure of ``(args, kwargs)``.
      outputs: the flat output tensors (filled in by ``call_layer``).
      out_tree: the structure of the outputs.
    """

    _created = itertools.count()

    def __init__(self, layer, leaves: list, treedef, outputs: list, out_tree):
        self.order = next(Node._created)  # nodes in creation order are in a valid call order
        self.layer = layer
        self.leaves = leaves
        self.treedef = treedef
        self.outputs = outputs
        self.out_tree = out_tree

    @property
    def parents(self) -> list:
        """The symbolic tensors this call reads, in argument order."""
        return [leaf for leaf in self.leaves if isinstance(leaf, SymbolicTensor)]

    def arguments(self, values: dict):
        """The call's arguments with real values in place of the symbolic tensors.

        Args:
          values: ``{id(tensor): value}`` for every symbolic tensor of the call.

        Returns:
          ``(args, kwargs)`` with each symbolic tensor replaced by ``values[id(tensor)]``.
        """
        leaves = [values[id(leaf)] if isinstance(leaf, SymbolicTensor) else leaf for leaf in self.leaves]
        return jax.tree.unflatten(self.treedef, leaves)

    def argument_masks(self, masks: dict) -> tuple:
        """The masks of the call's arguments, laid out as ``masking.argument_masks`` does.

        Args:
          masks: ``{id(tensor): mask or None}`` for the symbolic tensors of the call (missing: unmasked).

        Returns:
          ``(positional, keyword)`` mask structures, ``masking.NOT_TENSOR`` for arguments without tensors.
        """
        leaf_masks = [masks.get(id(leaf)) if isinstance(leaf, SymbolicTensor) else masking.NOT_TENSOR
                      for leaf in self.leaves]
        positional, keyword = masking.argument_masks(self.treedef, leaf_masks)
        return positional, keyword


def is_symbolic(value) -> bool:
    """Whether a layer's input is symbolic: a ``SymbolicTensor``, or a tuple/list/dict holding one.

    Args:
      value: a layer's first call argument.

    Returns:
      True when the call is to be recorded (``call_layer``) rather than run.
    """
    return isinstance(value, SymbolicTensor) or (
        isinstance(value, (tuple, list)) and any(isinstance(v, SymbolicTensor) for v in value)) or (
        isinstance(value, dict) and any(isinstance(v, SymbolicTensor) for v in value.values()))


def _is_tensor(value) -> bool:
    return isinstance(value, SymbolicTensor)


def _describe(tree) -> str:
    shapes = [_shape_text(t.shape) if isinstance(t, SymbolicTensor) else _shape_text(np.shape(t))
              for t in jax.tree.leaves(tree, is_leaf=_is_tensor)]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _weights_text(shapes) -> str:
    return ", ".join(f"{'/'.join(str(getattr(k, 'key', k)) for k in path)} {shape}"
                     for path, shape in jax.tree_util.tree_leaves_with_path(
                         shapes, is_leaf=lambda s: isinstance(s, tuple)))


def call_layer(layer, inputs, *args, **kwargs):
    """Record ``layer(inputs, *args, **kwargs)`` in a functional graph (Keras' symbolic call).

    The output shapes come from ``jax.eval_shape`` of the layer's ``init`` on a dummy
    batch (``training=False`` where the layer takes it); nothing runs.

    Args:
      layer: the Linen layer called.
      inputs: a symbolic tensor, or a structure of them.
      *args: further call arguments (symbolic tensors or constants such as flags).
      **kwargs: keyword call arguments.

    Returns:
      Symbolic tensors of the outputs, in the structure the layer returns.

    Raises:
      ValueError: for inputs mixing symbolic tensors and arrays, a shape error of the layer
        (naming it and the input shapes), a shared layer called on inputs that need
        other weight shapes, or an output without the batch axis first.
    """
    leaves, treedef = jax.tree.flatten(((inputs, *args), kwargs), is_leaf=_is_tensor)
    for leaf in leaves:
        if not isinstance(leaf, SymbolicTensor) and hasattr(leaf, "shape") and np.ndim(leaf) > 0:
            raise ValueError(
                f"{type(layer).__name__} was called on a mix of symbolic tensors and arrays. In a functional "
                f"graph every tensor input must come from dlkit.Input or a layer; put constant arrays inside "
                f"a layer.")
    dummies = [leaf.dummy() if isinstance(leaf, SymbolicTensor) else leaf for leaf in leaves]
    tensor_at = [i for i, leaf in enumerate(leaves) if isinstance(leaf, SymbolicTensor)]

    mask_dummies = [None if leaves[i].mask_spec is None else
                    jax.ShapeDtypeStruct((_DUMMY_BATCH, *leaves[i].mask_spec.shape), leaves[i].mask_spec.dtype)
                    for i in tensor_at]

    def run(tensors, masks):
        filled = list(dummies)
        leaf_masks = [masking.NOT_TENSOR] * len(leaves)
        for i, t, m in zip(tensor_at, tensors, masks):
            filled[i], leaf_masks[i] = t, m
        (call_args, call_kwargs) = jax.tree.unflatten(treedef, filled)
        call_kwargs = dict(call_kwargs)
        if "training" not in call_kwargs and accepts_training(layer):
            call_kwargs["training"] = False
        call_kwargs, previous = masking.fill(layer, call_kwargs, *masking.argument_masks(treedef, leaf_masks))
        rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
        out, variables = layer.init_with_output(rngs, *call_args, **call_kwargs)
        out_masks = masking.output_masks(layer, call_args[0], previous, out)  # warns here, once per graph call
        return out, {k: v for k, v in variables.items() if k not in ("losses", "intermediates", "diagnostics")}, \
            out_masks

    try:
        out = jax.eval_shape(run, [dummies[i] for i in tensor_at], mask_dummies)
    except (ValueError, TypeError, IndexError) as error:
        name = getattr(layer, "name", None)
        name = f"'{name}' ({type(layer).__name__})" if name else type(layer).__name__
        raise ValueError(f"Layer {name} cannot be called on inputs of shape "
                         f"{_describe(inputs)}: {error}") from error
    out, variables, out_masks = out
    # A layer called again (shared weights) must fit the weights its first call made.
    shapes = jax.tree.map(lambda v: v.shape, variables)
    first = getattr(layer, "_symbolic_weight_shapes", None)
    if first is None:
        object.__setattr__(layer, "_symbolic_weight_shapes", shapes)
    elif first != shapes:
        raise ValueError(
            f"Layer {type(layer).__name__} is called again (sharing its weights) on inputs of shape "
            f"{_describe(inputs)} that need weights of other shapes than its first call made: "
            f"{_weights_text(first)} then {_weights_text(shapes)}. Use a new layer for these inputs.")
    out_leaves, out_tree = jax.tree.flatten(out)
    node = Node(layer, leaves, treedef, [], out_tree)
    for index, leaf in enumerate(out_leaves):
        if leaf.ndim == 0 or leaf.shape[0] != _DUMMY_BATCH:
            raise ValueError(f"Layer '{type(layer).__name__}' returned an output of shape {leaf.shape} on a batch "
                             f"of {_DUMMY_BATCH} samples: in a functional graph every output must keep the "
                             f"batch axis first.")
        tensor = SymbolicTensor(leaf.shape[1:], leaf.dtype, node, index)
        mask = out_masks[index]
        if mask is not None and mask.ndim and mask.shape[0] == _DUMMY_BATCH:
            tensor.mask_spec = jax.ShapeDtypeStruct(mask.shape[1:], mask.dtype)
        node.outputs.append(tensor)
    return jax.tree.unflatten(out_tree, node.outputs)


def graph(inputs: list, outputs: list) -> list:
    """The nodes that compute ``outputs`` from ``inputs`` (what Keras' functional ``Model`` replays).

    Args:
      inputs: the graph's input tensors.
      outputs: the graph's output tensors.

    Returns:
      The nodes, in the order the layers were called (each after the nodes it reads).

    Raises:
      ValueError: "Graph disconnected" when an output needs an ``Input`` not among ``inputs``.
    """
    known = {id(t) for t in inputs}
    nodes: dict = {}
    stack = [(tensor, "an output") for tensor in outputs]
    while stack:  # iterative: a deep graph must not hit Python's recursion limit
        tensor, wanted_by = stack.pop()
        if id(tensor) in known:
            continue
        node = tensor.node
        if node is None:
            name = f" '{tensor.name}'" if tensor.name else ""
            raise ValueError(
                f"Graph disconnected: {wanted_by} needs the Input{name} of shape {_shape_text(tensor.shape)}, "
                f"which is not among the model's inputs. Pass it in Model(inputs=[...]).")
        if id(node) in nodes:
            continue
        nodes[id(node)] = node
        stack += [(parent, f"layer {type(node.layer).__name__}") for parent in node.parents]
    return sorted(nodes.values(), key=lambda node: node.order)
