"""Checks at the boundary: the arguments ``Trainer`` and ``fit``/``evaluate``/``predict`` receive.

Each check runs once, on the host, before anything is traced. It returns the value
in the form the loop uses, or raises a ``ValueError``/``TypeError`` that names the
argument, what was received and what is expected. Label checks (range,
integrality, one-hot against sparse, binary targets in [0, 1]) cost nothing in the
hot loop: they run once per array.
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

import jax
import numpy as np

from dlkit import losses as losses_lib

# dlkit's default seed, Keras' global seed: ``dlkit.utils.set_random_seed`` sets it. A Trainer given no
# seed (its default ``seed=DEFAULT_SEED``) uses it, and ``seed=None`` draws from a generator it seeds;
# unset, those are 0 and a random seed.
_DEFAULT: dict = {"seed": None, "draws": None}


class _DefaultSeed:
    """The ``seed=`` of a Trainer given none: 0, or the seed of ``dlkit.utils.set_random_seed``."""

    def __repr__(self) -> str:
        return "DEFAULT_SEED"


DEFAULT_SEED = _DefaultSeed()


def set_default_seed(value: Optional[int]) -> Optional[int]:
    """Set dlkit's default seed (``dlkit.utils.set_random_seed`` calls it); ``None`` unsets it.

    Args:
      value: an int in ``[0, 2**32)``, or ``None`` to return to 0 (and ``None`` meaning random).

    Returns:
      The seed set, as an int (or ``None``).

    Raises:
      TypeError: for a non-integer.
      ValueError: for a negative seed or one of 2**32 or more.
    """
    value = None if value is None else _checked_seed(value)
    _DEFAULT.update(seed=value, draws=None if value is None else np.random.default_rng(value))
    return value


def seed(value: Any) -> int:
    """A seed for ``jax.random.key``: an int in ``[0, 2**32)``; ``None`` draws one at random.

    ``DEFAULT_SEED`` (Trainer's default) stands for dlkit's default seed: 0, or the seed given
    to ``dlkit.utils.set_random_seed``, after which ``None`` draws from a generator that seed
    seeds (so a rerun repeats, as after Keras' ``set_random_seed``). An int is kept as given.

    Args:
      value: the seed given.

    Returns:
      The seed as an int (the drawn one for ``None``, kept on the trainer so the run can be
      repeated).

    Raises:
      TypeError: for a non-integer.
      ValueError: for a negative seed or one of 2**32 or more.
    """
    if value is None:
        return int((_DEFAULT["draws"] or np.random.default_rng()).integers(0, 2**32))
    if value is DEFAULT_SEED:
        return 0 if _DEFAULT["seed"] is None else _DEFAULT["seed"]
    return _checked_seed(value)


def _checked_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"seed must be an int in [0, 2**32) or None (a random seed), got {value!r}.")
    if not 0 <= value < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {value}.")
    return int(value)


def whole_number(value: Any, what: str, minimum: int = 0) -> int:
    """An integer argument such as ``epochs`` or ``steps_per_execution``, at least ``minimum``.

    Args:
      value: the value given.
      what: the argument's name.
      minimum: the smallest value allowed.

    Returns:
      The value as an int.

    Raises:
      TypeError: for a non-integer (``2.5``, ``None``, a bool).
      ValueError: for a value below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value}.")
    return int(value)


def choice(value: Any, allowed: tuple, what: str) -> str:
    """A string argument with a few valid values, such as ``sharding``.

    Args:
      value: the value given.
      allowed: the valid values.
      what: the argument's name.

    Returns:
      The value.

    Raises:
      ValueError: for any other value, listing the valid ones.
    """
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")
    return value


def callbacks(value: Any) -> list:
    """Keras' ``callbacks=``: a list of callback instances, or a single one.

    Args:
      value: ``None``, one callback, or a list/tuple of them.

    Returns:
      A list of callbacks.

    Raises:
      TypeError: for a callback class instead of an instance, or for something that is no callback.
    """
    items = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if inspect.isclass(item):
            raise TypeError(f"callbacks take instances: got the class {item.__name__}; write {item.__name__}() "
                            f"(with its arguments).")
        if not hasattr(item, "set_model") or not hasattr(item, "on_epoch_end"):
            raise TypeError(f"callbacks must be dlkit.callbacks.Callback instances, got {type(item).__name__}: "
                            f"{_short(item)}.")
    return items


def sample_weight(weight: Optional[np.ndarray], n: int, what: str = "sample_weight") -> Optional[np.ndarray]:
    """Keras' ``sample_weight``: one weight per sample, shape ``(n,)`` (``(n, 1)`` is taken as that).

    Args:
      weight: ``None`` or the weights.
      n: the number of samples.
      what: the argument's name.

    Returns:
      ``None``, or float32 weights of shape ``(n,)``.

    Raises:
      ValueError: for another number of weights than samples, or weights of another shape.
    """
    if weight is None:
        return None
    weight = np.asarray(weight)
    if weight.ndim == 2 and weight.shape[1] == 1:
        weight = weight[:, 0]
    if weight.ndim != 1:
        raise ValueError(f"{what} must hold one weight per sample, shape ({n},); got shape {weight.shape}.")
    if len(weight) != n:
        raise ValueError(f"{what} has {len(weight)} weights for {n} samples; give one weight per sample.")
    if not np.issubdtype(weight.dtype, np.number) or not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise ValueError(f"{what} must be finite, non-negative numbers; got {_short(weight)}.")
    return weight.astype(np.float32)


def labels(loss: losses_lib.Loss, target: np.ndarray, classes: Optional[int], where: str = "") -> None:
    """Check targets fit what the loss expects, once per array on the host.

    Args:
      loss: the output's loss.
      target: its targets.
      classes: the size of the output's last axis (the class scores), or ``None``.
      where: ``""`` or `` of output 'name'``, for the messages.

    Raises:
      ValueError: non-integer labels or labels outside ``[0, classes)`` for a sparse loss; binary
        targets outside ``[0, 1]``.
    """
    target = np.asarray(target)
    if not np.size(target):
        return
    if isinstance(loss, losses_lib.SparseCategoricalCrossentropy):
        if np.issubdtype(target.dtype, np.floating) and not np.all(target == np.round(target)):
            bad = target[target != np.round(target)].ravel()[0]
            raise ValueError(f"Labels{where} must be integer class ids for {loss.name}; got {bad!r} among them. "
                             f"Pass integer labels (a regression target needs loss='mse').")
        low, high = int(np.min(target)), int(np.max(target))
        if classes is not None and (low < 0 or high >= classes):
            raise ValueError(
                f"Labels{where} range from {low} to {high}, but the model outputs {classes} class scores. "
                f"Make the last layer output {high + 1} units (e.g. Dense({high + 1})), or fix the labels.")
    elif isinstance(loss, losses_lib.BinaryCrossentropy):
        low, high = float(np.min(target)), float(np.max(target))
        if low < 0 or high > 1:
            raise ValueError(f"Targets{where} of binary_crossentropy must lie in [0, 1] (0/1 labels or "
                             f"probabilities); got values from {low:g} to {high:g}. For several classes use "
                             f"sparse_categorical_crossentropy with one output unit per class.")


def targets_given(y, supervised: bool, what: str) -> None:
    """A supervised loss compares outputs with targets: it needs ``y``.

    Args:
      y: the targets given (``None`` if none).
      supervised: whether the trainer runs the supervised step (no custom ``train_step``).
      what: where the data came in (``"fit"``, ``"validation_data"`` …).

    Raises:
      ValueError: no targets for a supervised loss (it would train against zeros).
    """
    if y is None and supervised:
        raise ValueError(f"{what}: the loss compares the model's outputs with targets, but no y was given. "
                         f"Pass y (or (x, y) batches); a model trained without targets needs its own "
                         f"train_step (e.g. dlkit.models.Autoencoder).")


def has_test_step(test_step, what: str) -> None:
    """Evaluating needs a test step; a custom ``train_step`` may come without one.

    Args:
      test_step: the bound test step, or ``None``.
      what: what asked for it (``"evaluate"``, ``"validation_data"``, ``"test_step"``).

    Raises:
      ValueError: there is no test step.
    """
    if test_step is None:
        raise ValueError(f"{what}: this model's custom train_step has no test_step, so there is nothing to "
                         f"evaluate with. Pass Trainer(..., test_step=fn) (a pure (state, batch) -> logs), or "
                         f"leave out validation data / evaluate().")


def same_structure(x, sample_shape, what: str) -> None:
    """Inputs must come as the model was built: one array, or the same tuple/list/dict of arrays.

    Args:
      x: the inputs given (arrays).
      sample_shape: the sample shape the model was built with (a tuple of ints, or a structure of them).
      what: the argument's name.

    Raises:
      ValueError: for another structure, e.g. ``predict((x, y))`` for a one-input model.
    """
    def is_shape(s):
        return isinstance(s, tuple) and all(isinstance(d, (int, np.integer)) for d in s)

    built = jax.tree.structure(sample_shape, is_leaf=is_shape)
    given = jax.tree.structure(x)
    if built != given:
        count = built.num_leaves
        expected = "one array" if is_shape(sample_shape) else f"{count} inputs as {_kind(sample_shape)}"
        raise ValueError(f"{what}: the model takes {expected}, but got {_kind(x)} of {given.num_leaves} "
                         f"array(s). Pass the inputs alone (predict and evaluate's x holds no targets).")


def shape_mismatch(x, sample_shape, what: str) -> ValueError:
    """The error for inputs whose sample shape does not fit the built model's weights.

    Args:
      x: the inputs given.
      sample_shape: the sample shape the model was built with.
      what: the argument's name.

    Returns:
      A ``ValueError`` naming both sample shapes.
    """
    given = jax.tree.map(lambda a: tuple(np.shape(a)[1:]), x)
    return ValueError(f"{what}: samples of shape {given} do not fit the model, which was built on samples of "
                      f"shape {sample_shape} (its weights are shaped for those). Pass data with the training "
                      f"data's feature sizes.")


def _kind(tree) -> str:
    return type(tree).__name__ if isinstance(tree, (tuple, list, dict)) else "an array"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def stream_only(value: Any, what: str) -> None:
    """``steps_per_epoch`` / ``validation_steps`` count batches of a stream; with arrays an epoch is
    the whole data, so a count given with arrays would be silently ignored: refuse it.

    Args:
      value: the count given (``None``: not given).
      what: the argument's name.

    Raises:
      ValueError: ``value`` given with in-memory arrays.
    """
    if value is not None:
        raise ValueError(f"{what}={value!r} counts batches of a stream (an iterable of (x, y) batches, a data "
                         f"loader); with arrays an epoch is the whole data. Drop {what}, or pass the data as "
                         f"batches, e.g. a list of (x, y) tuples.")
