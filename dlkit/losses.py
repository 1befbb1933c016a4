"""Losses with Keras names, argument order ``(y_true, y_pred)`` and semantics.

Each function returns one value per sample (shape ``(batch,)``); the loop
averages them over all samples, so an epoch's loss is the exact mean. The
classes reduce to the batch mean, optionally weighted, as Keras' ``Loss`` does.

* ``mean_squared_error = mean((y_true - y_pred)**2, axis=-1)``
* ``mean_absolute_error = mean(|y_true - y_pred|, axis=-1)``
* ``binary_crossentropy = mean(-(y log p + (1 - y) log(1 - p)), axis=-1)``
* ``categorical_crossentropy = -sum(y_true * log p, axis=-1)`` (one-hot targets)
* ``sparse_categorical_crossentropy = -log p[y_true]`` (integer targets)

With ``from_logits=False`` (Keras' default) ``y_pred`` holds probabilities,
clipped to ``[1e-7, 1 - 1e-7]`` (and, for the categorical losses, first divided by
their sum over the last axis, as Keras does); with ``from_logits=True`` raw scores,
through the numerically stable optax forms. Half-precision outputs (a ``"mixed_bfloat16"`` model's)
are cast to float32 first, as Keras computes losses in float32.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from dlkit import mixed_precision
from dlkit._registry import lookup

EPSILON = 1e-7


def match_ranks(y_true, y_pred, name: str):
    """Keras' rule: ``(batch,)`` targets meet ``(batch, 1)`` outputs; anything else must match.

    Args:
        y_true: Targets.
        y_pred: Model outputs.
        name: The loss's name, for the error message.

    Returns:
        ``(y_true, y_pred)`` of equal shapes, at least ``(batch, 1)``, ``y_true`` cast to ``y_pred``'s dtype.

    Raises:
        ValueError: The shapes differ beyond a trailing axis of size 1.
    """
    if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]
    elif y_pred.ndim == y_true.ndim - 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{name}: targets of shape {y_true.shape[1:]} per sample do not match model outputs of shape "
            f"{y_pred.shape[1:]}. Make the last layer output the target's shape "
            f"(e.g. Dense({y_true.shape[-1] if y_true.ndim > 1 else 1}))."
        )
    if y_pred.ndim == 1:
        # One output per sample, shape (batch,): add the feature axis that the
        # per-sample mean over axis -1 reduces, so the batch axis survives.
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    return y_true.astype(y_pred.dtype), y_pred


def mean_squared_error(y_true, y_pred):
    """Keras' ``mean_squared_error`` (``'mse'``): ``mean((y_true - y_pred)**2, axis=-1)``.

    Args:
        y_true: Targets, the shape of ``y_pred`` (or without its trailing axis of size 1).
        y_pred: Predictions ``(batch, ..., d)``.

    Returns:
        Array ``(batch, ...)``: the last axis averaged.

    Raises:
        ValueError: The shapes do not match.
    """
    y_true, y_pred = match_ranks(y_true, y_pred, "mean_squared_error")
    return jnp.mean(jnp.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """Keras' ``mean_absolute_error`` (``'mae'``): ``mean(|y_true - y_pred|, axis=-1)``.

    Args:
        y_true: Targets, the shape of ``y_pred`` (or without its trailing axis of size 1).
        y_pred: Predictions ``(batch, ..., d)``.

    Returns:
        Array ``(batch, ...)``: the last axis averaged.

    Raises:
        ValueError: The shapes do not match.
    """
    y_true, y_pred = match_ranks(y_true, y_pred, "mean_absolute_error")
    return jnp.mean(jnp.abs(y_true - y_pred), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0):
    """Keras' ``binary_crossentropy``: ``mean(-(y log p + (1 - y) log(1 - p)), axis=-1)``.

    ``p = y_pred`` clipped to ``[1e-7, 1 - 1e-7]``, or ``sigmoid(y_pred)`` with ``from_logits``.

    Args:
        y_true: Targets in [0, 1], the shape of ``y_pred`` (or without its trailing axis of size 1).
        y_pred: Probabilities, or logits with ``from_logits``.
        from_logits: Whether ``y_pred`` holds logits.
        label_smoothing: ``y <- y * (1 - label_smoothing) + label_smoothing / 2``.

    Returns:
        Array ``(batch, ...)``: the last axis averaged.

    Raises:
        ValueError: The shapes do not match.
    """
    y_true, y_pred = match_ranks(y_true, y_pred, "binary_crossentropy")
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        return jnp.mean(optax.sigmoid_binary_cross_entropy(y_pred, y_true), axis=-1)
    p = jnp.clip(y_pred, EPSILON, 1.0 - EPSILON)
    return jnp.mean(-(y_true * jnp.log(p) + (1.0 - y_true) * jnp.log(1.0 - p)), axis=-1)


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0):
    """Keras' ``categorical_crossentropy``: ``-sum(y_true * log p, axis=-1)`` for one-hot targets.

    ``p = y_pred / sum(y_pred, axis=-1)`` clipped to ``[1e-7, 1 - 1e-7]``, or ``softmax(y_pred)``
    with ``from_logits``.

    Args:
        y_true: One-hot (or soft) targets ``(batch, ..., classes)``.
        y_pred: Probabilities, or logits with ``from_logits``, ``(batch, ..., classes)``.
        from_logits: Whether ``y_pred`` holds logits.
        label_smoothing: ``y <- y * (1 - label_smoothing) + label_smoothing / classes``.

    Returns:
        Array ``(batch, ...)``.

    Raises:
        ValueError: Integer labels were given (use ``sparse_categorical_crossentropy``), or the shapes differ.
    """
    if y_pred.ndim >= 2 and y_pred.shape[-1] > 1 and (y_true.ndim == y_pred.ndim - 1 or y_true.shape[-1] == 1):
        raise ValueError(
            f"categorical_crossentropy expects one-hot targets of shape (batch, {y_pred.shape[-1]}), got integer "
            f"labels of shape {y_true.shape}. Use loss='sparse_categorical_crossentropy', or one-hot encode "
            f"the labels with dlkit.utils.to_categorical(y, {y_pred.shape[-1]})."
        )
    y_true, y_pred = match_ranks(y_true, y_pred, "categorical_crossentropy")
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_pred.shape[-1]
    if from_logits:
        return optax.softmax_cross_entropy(y_pred, y_true)
    p = y_pred / jnp.sum(y_pred, axis=-1, keepdims=True)
    return -jnp.sum(y_true * jnp.log(jnp.clip(p, EPSILON, 1.0 - EPSILON)), axis=-1)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False):
    """Keras' ``sparse_categorical_crossentropy``: ``-log p[y_true]`` for integer labels.

    ``p = y_pred / sum(y_pred, axis=-1)`` clipped to ``[1e-7, 1 - 1e-7]``, or ``softmax(y_pred)``
    with ``from_logits``.

    Args:
        y_true: Integer labels ``(batch, ...)`` (or ``(batch, ..., 1)``).
        y_pred: Probabilities, or logits with ``from_logits``, ``(batch, ..., classes)``.
        from_logits: Whether ``y_pred`` holds logits.

    Returns:
        Array ``(batch, ...)``.

    Raises:
        ValueError: One-hot targets were given (use ``categorical_crossentropy``), or the ranks do not fit.
    """
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == y_pred.shape[-1] and y_pred.shape[-1] > 1:
        raise ValueError(
            f"sparse_categorical_crossentropy expects integer class labels of shape (batch,), got one-hot "
            f"targets of shape {y_true.shape}. Use loss='categorical_crossentropy', or pass y.argmax(-1)."
        )
    if y_true.ndim == y_pred.ndim:
        y_true = y_true[..., 0]
    if y_true.ndim != y_pred.ndim - 1:
        raise ValueError(
            f"sparse_categorical_crossentropy: labels of shape {y_true.shape} do not fit model outputs of shape "
            f"{y_pred.shape}; the model should output one score per class, shape (batch, num_classes)."
        )
    labels = y_true.astype(jnp.int32)
    if from_logits:
        return optax.softmax_cross_entropy_with_integer_labels(y_pred, labels)
    p = y_pred / jnp.sum(y_pred, axis=-1, keepdims=True)
    picked = jnp.take_along_axis(p, labels[..., None], axis=-1)[..., 0]
    return -jnp.log(jnp.clip(picked, EPSILON, 1.0 - EPSILON))


@dataclasses.dataclass(frozen=True)
class Loss:
    """Keras' ``Loss``: ``loss(y_true, y_pred, sample_weight=None)`` is the (weighted) batch
    mean of ``per_sample(y_true, y_pred)``. Subclasses declare their Keras arguments as
    (frozen dataclass) fields, in Keras' order, with ``name`` last."""

    def per_sample(self, y_true, y_pred):
        """The loss function itself, unreduced (subclasses implement it).

        Args:
            y_true: Targets, batch axis first.
            y_pred: Model outputs, batch axis first.

        Returns:
            One value per sample, ``(batch,)``, or per sample and position, ``(batch, ...)``.
        """
        raise NotImplementedError

    def per_row(self, y_true, y_pred):
        """One value per batch row: ``per_sample`` averaged over any further axes (time steps,
        pixels), as Keras averages them.

        Args:
            y_true: Targets, batch axis first.
            y_pred: Model outputs, batch axis first.

        Returns:
            Array ``(batch,)``.
        """
        values = self.per_sample(y_true, mixed_precision.float32(y_pred))
        return values.reshape(values.shape[0], -1).mean(axis=-1) if values.ndim > 1 else values

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss, Keras' ``'sum_over_batch_size'``: ``sum(w * values) / values.size``.

        Args:
            y_true: Targets, batch axis first.
            y_pred: Model outputs, batch axis first.
            sample_weight: Optional weights broadcast to the per-sample values (e.g. ``(batch,)``).

        Returns:
            A scalar: the mean of ``per_sample`` (weighted when ``sample_weight`` is given).
        """
        values = self.per_sample(jnp.asarray(y_true), mixed_precision.float32(jnp.asarray(y_pred)))
        if sample_weight is None:
            return jnp.mean(values)
        weights = jnp.broadcast_to(jnp.asarray(sample_weight, values.dtype), values.shape)
        return jnp.sum(values * weights) / values.size


@dataclasses.dataclass(frozen=True)
class MeanSquaredError(Loss):
    """Keras' ``MeanSquaredError``: the batch mean of ``mean_squared_error``, ``mean((y_true - y_pred)**2)``.

    Args:
        name: The name in logs.
    """

    name: str = "mean_squared_error"

    def per_sample(self, y_true, y_pred):
        return mean_squared_error(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class MeanAbsoluteError(Loss):
    """Keras' ``MeanAbsoluteError``: the batch mean of ``mean_absolute_error``, ``mean(|y_true - y_pred|)``.

    Args:
        name: The name in logs.
    """

    name: str = "mean_absolute_error"

    def per_sample(self, y_true, y_pred):
        return mean_absolute_error(y_true, y_pred)


@dataclasses.dataclass(frozen=True)
class BinaryCrossentropy(Loss):
    """Keras' ``BinaryCrossentropy``: the batch mean of ``binary_crossentropy``,
    ``-(y log p + (1 - y) log(1 - p))``.

    Args:
        from_logits: Whether ``y_pred`` holds logits (else probabilities).
        label_smoothing: ``y <- y * (1 - label_smoothing) + label_smoothing / 2``.
        name: The name in logs.
    """

    from_logits: bool = False
    label_smoothing: float = 0.0
    name: str = "binary_crossentropy"

    def per_sample(self, y_true, y_pred):
        return binary_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)


@dataclasses.dataclass(frozen=True)
class CategoricalCrossentropy(Loss):
    """Keras' ``CategoricalCrossentropy``: the batch mean of ``categorical_crossentropy``,
    ``-sum(y_true * log p)`` for one-hot targets.

    Args:
        from_logits: Whether ``y_pred`` holds logits (else probabilities).
        label_smoothing: ``y <- y * (1 - label_smoothing) + label_smoothing / classes``.
        name: The name in logs.
    """

    from_logits: bool = False
    label_smoothing: float = 0.0
    name: str = "categorical_crossentropy"

    def per_sample(self, y_true, y_pred):
        return categorical_crossentropy(y_true, y_pred, self.from_logits, self.label_smoothing)


@dataclasses.dataclass(frozen=True)
class SparseCategoricalCrossentropy(Loss):
    """Keras' ``SparseCategoricalCrossentropy``: the batch mean of ``sparse_categorical_crossentropy``,
    ``-log p[y_true]`` for integer labels.

    Args:
        from_logits: Whether ``y_pred`` holds logits (else probabilities).
        name: The name in logs.
    """

    from_logits: bool = False
    name: str = "sparse_categorical_crossentropy"

    def per_sample(self, y_true, y_pred):
        return sparse_categorical_crossentropy(y_true, y_pred, self.from_logits)


@dataclasses.dataclass(frozen=True)
class FunctionLoss(Loss):
    """A user's ``fn(y_true, y_pred)`` as a ``Loss`` (what ``get`` makes of a callable).

    If ``fn`` returns a scalar it is applied to each sample alone (a batch of one, via ``vmap``);
    otherwise its result is averaged per row over every axis but the first.

    Args:
        fn: ``(y_true, y_pred) -> loss``, scalar or batch-first.
        name: The name in logs.
    """

    fn: object = None
    name: str = "loss"

    def per_sample(self, y_true, y_pred):
        out = jax.eval_shape(self.fn, y_true, y_pred)
        if out.ndim == 0:
            return jax.vmap(lambda t, p: self.fn(t[None], p[None]))(y_true, y_pred)
        values = self.fn(y_true, y_pred)
        return values.reshape(values.shape[0], -1).mean(axis=-1)


_LOSSES = {
    "mean_squared_error": MeanSquaredError(),
    "mse": MeanSquaredError(),
    "mean_absolute_error": MeanAbsoluteError(),
    "mae": MeanAbsoluteError(),
    "binary_crossentropy": BinaryCrossentropy(),
    "categorical_crossentropy": CategoricalCrossentropy(),
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy(),
}


def get(identifier) -> Loss:
    """Resolve a loss name, a ``Loss`` object or a function ``(y_true, y_pred)`` (Keras' ``losses.get``).

    Args:
        identifier: A name (``'mse'``, ``'mae'``, ``'mean_squared_error'``, ``'binary_crossentropy'``,
            ``'categorical_crossentropy'``, ``'sparse_categorical_crossentropy'``...; any case), a ``Loss``,
            or a callable.

    Returns:
        A ``Loss``: the named one, the object itself, or a ``FunctionLoss`` wrapping the callable.

    Raises:
        ValueError: ``identifier`` is ``None`` or an unknown name.
        TypeError: ``identifier`` is neither a string nor a callable.
    """
    if isinstance(identifier, Loss):
        return identifier
    if identifier is None:
        raise ValueError(f"A loss is required. Valid names: {', '.join(sorted(_LOSSES))}; or pass a callable.")
    found = lookup("loss", identifier, _LOSSES)
    if isinstance(found, Loss):
        return found
    return FunctionLoss(fn=found, name=getattr(found, "__name__", "loss"))
