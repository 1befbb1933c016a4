"""Keras' implicit masks: which layer receives a mask, and which mask its output carries.

In Keras every tensor may carry a mask (``_keras_mask``): an ``Embedding(mask_zero=True)``
gives its output the mask ``tokens != 0``, a layer that keeps the positions passes its
input's mask on, and a layer whose ``call`` takes ``mask`` receives it. dlkit keeps the
same rules with masks as plain values beside the tensors, not as attributes on arrays:
``Sequential`` and the functional ``Model`` carry one mask per tensor while they run
their layers, and ``dlkit.symbolic`` works out each symbolic tensor's mask shape when the
graph is built (``tensor.mask_shape``). The rules are Keras 3's:

* **Mask in.** A layer whose call has a ``mask`` parameter gets, as ``mask=``, the mask of
  its only tensor argument (for a list argument, the list of masks). With several tensor
  arguments, argument ``x`` fills ``x_mask`` if the call has that parameter. A mask
  passed explicitly wins.
* **Mask out.** ``layer.compute_mask(inputs, mask)`` where the layer defines it
  (``Embedding``, a user's layer); ``SimpleRNN``/``LSTM``/``GRU``/``Bidirectional``: the
  mask if ``return_sequences``, else none (returned states: none); ``Add``/``Subtract``/
  ``Average``: the OR of the inputs' masks when every input has one, else none;
  ``Concatenate``: Keras' rule (an unmasked input counts as all True; along the joined
  axis the masks are joined too); ``GlobalAveragePooling1D``: none (it used the mask for a
  masked mean); layers that keep the positions (``Dense``, ``Dropout``, ``Activation``,
  normalizations, ``TransformerEncoder``... and any class with ``supports_masking = True``):
  the input's mask unchanged.
* Any other layer ends the mask: a layer that neither supports masking nor takes ``mask``
  warns, as Keras does, that later layers will not see it. ``Maximum``, ``Minimum`` and
  ``Multiply`` of masked tensors raise: Keras changes their values at masked positions,
  which dlkit does not reproduce.
"""
from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

import jax
import jax.numpy as jnp

# Keras layers with ``supports_masking`` and the default ``compute_mask`` (the mask passes unchanged), by Keras name.
KEEPS_MASK = frozenset({
    "activation", "activity_regularization", "alpha_dropout", "batch_normalization", "dense", "dropout", "elu",
    "gaussian_dropout", "gaussian_noise", "group_normalization", "identity", "layer_normalization", "leaky_re_lu",
    "normalization", "p_re_lu", "re_lu", "rescaling", "softmax", "spatial_dropout1d", "spatial_dropout2d",
    "spatial_dropout3d", "time_distributed", "transformer_encoder", "unit_normalization",
})
RECURRENT = frozenset({"simple_rnn", "lstm", "gru", "bidirectional"})
OR_MERGES = frozenset({"add", "subtract", "average"})
VALUE_MERGES = frozenset({"maximum", "minimum", "multiply"})
CONSUMES_MASK = frozenset({"global_average_pooling1d"})


class _NotTensor:
    def __repr__(self) -> str:
        return "NOT_TENSOR"


NOT_TENSOR = _NotTensor()  # marks a call argument (or leaf) that is not a tensor, so has no mask


class _Box:
    """One tensor leaf's mask (``None``: unmasked), kept a leaf when masks are laid out like the arguments."""

    __slots__ = ("mask",)

    def __init__(self, mask):
        self.mask = mask


def _name(layer) -> str:
    return getattr(type(layer), "keras_name", "") or ""


def has_mask(masks) -> bool:
    """Whether a mask structure (``None``, a mask, or a list/tuple of them) holds any mask.

    Args:
        masks: ``None``, a boolean array, or a list/tuple of those.

    Returns:
        True if some entry is not ``None``.
    """
    if isinstance(masks, (list, tuple)):
        return any(has_mask(m) for m in masks)
    return masks is not None and masks is not NOT_TENSOR


@functools.cache
def _parameters(cls) -> tuple:
    def names(function):
        try:
            params = list(inspect.signature(function).parameters.values())[1:]  # without self
        except (TypeError, ValueError):
            return None
        return params

    params = names(cls.__call__) or []
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params) and hasattr(cls, "call"):
        params = names(cls.call) or params  # a dlkit Layer's __call__ forwards to its call
    return tuple(params)


def takes(layer, name: str) -> bool:
    """Whether the layer's call has a parameter ``name`` (a dlkit ``Layer``'s ``call``, else ``__call__``).

    Args:
        layer: A layer or any Linen module.
        name: A parameter name, e.g. ``"mask"``.

    Returns:
        True if the call takes ``name``.
    """
    return any(p.name == name for p in _parameters(type(layer)))


def argument_masks(treedef, leaf_masks: list) -> tuple:
    """Lay the masks of a call's leaves out as its arguments: one mask structure per argument.

    Args:
        treedef: The structure of the call's ``((positional...), {keyword: ...})`` arguments.
        leaf_masks: One entry per leaf: ``NOT_TENSOR`` for a leaf that is no tensor, else its mask
            (``None`` if unmasked).

    Returns:
        ``(positional, keyword)``: a list and a dict holding, per argument, ``NOT_TENSOR`` if it
        holds no tensor, else its masks structured as the argument (``None`` for unmasked tensors).
    """
    boxed = [m if m is NOT_TENSOR else _Box(m) for m in leaf_masks]
    positional, keyword = jax.tree.unflatten(treedef, boxed)

    def unbox(tree):
        if not any(isinstance(leaf, _Box) for leaf in jax.tree.leaves(tree)):
            return NOT_TENSOR
        return jax.tree.map(lambda leaf: leaf.mask if isinstance(leaf, _Box) else None, tree)

    return [unbox(a) for a in positional], {k: unbox(v) for k, v in keyword.items()}


def fill(layer, kwargs: dict, positional_masks: list, keyword_masks: dict) -> tuple:
    """Keras' mask arguments: add ``mask=`` (or ``<argument>_mask=``) to a call's keyword arguments.

    Args:
        layer: The layer called.
        kwargs: The call's keyword arguments (a mask given here is kept).
        positional_masks: Per positional argument, ``NOT_TENSOR`` or its mask structure.
        keyword_masks: Likewise per keyword argument.

    Returns:
        ``(kwargs, previous_mask)``: the keyword arguments with the masks added, and the mask the
        output's mask is computed from (the ``mask=`` passed, else the first argument's masks).
    """
    params = _parameters(type(layer))
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    tensors = {}
    for i, masks in enumerate(positional_masks):
        if masks is not NOT_TENSOR:
            tensors[positional[i] if i < len(positional) else f"arg_{i}"] = masks
    tensors.update({k: m for k, m in keyword_masks.items() if m is not NOT_TENSOR})
    kwargs = dict(kwargs)
    accepted = {p.name for p in params}
    wanted = {"mask": next(iter(tensors.values()))} if len(tensors) == 1 else {
        f"{k}_mask": m for k, m in tensors.items()}
    for key, masks in wanted.items():
        if key in accepted and kwargs.get(key) is None and has_mask(masks):
            kwargs[key] = masks
    if kwargs.get("mask") is not None and takes(layer, "mask"):
        previous = kwargs["mask"]
    else:
        previous = positional_masks[0] if positional_masks and positional_masks[0] is not NOT_TENSOR else None
    return kwargs, previous


def output_masks(layer, inputs, previous, outputs, warn: bool = True) -> list:
    """The masks of a layer's outputs (Keras' ``compute_mask`` rules; see the module docstring).

    Args:
        layer: The layer called (the unbound object is enough).
        inputs: Its first argument's value.
        previous: The mask the layer got (``fill``'s ``previous_mask``).
        outputs: Its outputs.
        warn: Warn, as Keras does, when a layer that does not support masking ends a mask.

    Returns:
        One mask (or ``None``) per leaf of ``outputs``, in ``jax.tree.leaves`` order.

    Raises:
        ValueError: ``Maximum``, ``Minimum`` or ``Multiply`` of masked tensors.
    """
    count = len(jax.tree.leaves(outputs))
    masks = _compute(layer, inputs, previous, count, warn)
    flat = list(masks) if isinstance(masks, (list, tuple)) else [masks]
    return (flat + [None] * count)[:count]


def _compute(layer, inputs, previous, count: int, warn: bool) -> Any:
    name, cls = _name(layer), type(layer)
    if getattr(cls, "compute_mask", None) is not None:
        return layer.compute_mask(inputs, previous)
    if not has_mask(previous):
        return None
    if name in RECURRENT:
        sequence = jax.tree.leaves(previous)[0]
        inner = getattr(layer, "layer", layer)  # Bidirectional wraps its layer
        out = sequence if inner.return_sequences else None
        return [out, out] if name == "bidirectional" and layer.merge_mode is None else [out]
    if name in OR_MERGES:
        if any(m is None for m in previous):
            return None
        return functools.reduce(jnp.logical_or, previous)
    if name == "concatenate":
        return _concatenated(inputs, previous, layer.axis)
    if name in VALUE_MERGES:
        raise ValueError(f"{cls.__name__} of masked tensors is not supported: Keras replaces the values at masked "
                         f"positions before it merges, which dlkit does not reproduce. Use Add, Average or "
                         f"Concatenate, or merge before the masking layer.")
    if name in CONSUMES_MASK:
        return None
    supports = getattr(cls, "supports_masking", None)
    if supports is True or (supports is None and name in KEEPS_MASK):
        return previous
    if warn and not takes(layer, "mask"):
        warnings.warn(f"Layer '{getattr(layer, 'name', None) or name or cls.__name__}' (of type {cls.__name__}) "
                      f"was passed an input with a mask attached to it (from Embedding(mask_zero=True) or a layer "
                      f"after it). However, this layer does not support masking and will therefore destroy the "
                      f"mask information. Downstream layers will not see the mask.", UserWarning, stacklevel=2)
    return None


def _concatenated(inputs, masks, axis: int):
    """Keras' ``Concatenate.compute_mask``: unmasked inputs count as all True, masks joined along ``axis``."""
    full = []
    for x, m in zip(inputs, masks):
        if m is None:
            full.append(jnp.ones(x.shape, bool))
        elif m.ndim < x.ndim:
            full.append(jnp.broadcast_to(jnp.expand_dims(m, -1), x.shape))
        else:
            full.append(m)
    return jnp.any(jnp.concatenate(full, axis=axis), axis=-1)
