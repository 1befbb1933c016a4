"""Turning user data into checked arrays, validation splits, class weights and epoch orders."""
from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import jax
import numpy as np


def to_arrays(data: Any, what: str):
    """Numpy/jax arrays, or a tuple/list/dict of them, as a pytree of checked numpy arrays.

    float64 becomes float32; a list of arrays becomes a tuple (several inputs), any other
    list one array.

    Args:
      data: an array, a tuple/list/dict of them, or ``None``.
      what: the argument's name for error messages (``"x"``, ``"y"``).

    Returns:
      numpy arrays in the same structure (``None`` for ``None``).

    Raises:
      TypeError: for data that is not numeric (ragged samples give ``dtype=object``).
      ValueError: for a scalar (no batch axis), or NaN / inf in floating data.
    """
    if data is None:
        return None
    if _is_pandas(data):
        data = data.to_numpy()
    if isinstance(data, dict):
        return {k: to_arrays(v, f"{what}[{k!r}]") for k, v in data.items()}
    if isinstance(data, tuple) or (isinstance(data, list) and data and all(hasattr(d, "shape") for d in data)):
        return tuple(to_arrays(d, f"{what}[{i}]") for i, d in enumerate(data))
    try:
        array = np.asarray(data)
    except ValueError:  # numpy refuses ragged nested lists
        raise ValueError(f"{what} could not be turned into an array: its samples have different shapes (a ragged "
                         f"list). Pad or cut them to one shape first.") from None
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.dtype == object:
        raise TypeError(f"{what} could not be turned into a numeric array (got dtype=object); "
                        f"check that every sample has the same shape.")
    if array.dtype.kind in "US":
        examples = ", ".join(repr(v) for v in np.unique(array)[:3].tolist())
        raise TypeError(f"{what} holds strings ({examples}, ...), not numbers. Encode them first, e.g. "
                        f"classes, codes = np.unique(labels, return_inverse=True).")
    if array.ndim == 0:
        raise ValueError(f"{what} must have a batch axis; got a scalar.")
    bad = _first_nonfinite(array) if np.issubdtype(array.dtype, np.floating) else None
    if bad is not None:
        raise ValueError(f"{what} contains NaN or inf (first at sample {bad}). "
                         f"Clean or impute the data before training (e.g. np.nan_to_num).")
    return array


def _first_nonfinite(array: np.ndarray) -> Optional[int]:
    """The first sample holding NaN or inf, checked a few MB at a time (no copy of a large array)."""
    if array.size == 0:
        return None
    flat = array.reshape(len(array), -1)
    rows = max(1, (1 << 22) // max(1, flat.shape[1]))
    for start in range(0, len(flat), rows):
        bad = ~np.isfinite(flat[start:start + rows])
        if bad.any():
            return start + int(np.argwhere(bad)[0, 0])
    return None


def num_samples(x, y=None) -> int:
    """The common length of every array in ``x`` and ``y``.

    Args:
      x: the inputs, a pytree of arrays.
      y: the targets, a pytree of arrays, or ``None``.

    Returns:
      The number of samples.

    Raises:
      ValueError: for no data, arrays of different lengths (each named), or 0 samples.
    """
    lengths = {}
    for name, tree in (("x", x), ("y", y)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            lengths[name + jax.tree_util.keystr(path)] = len(leaf)
    if not lengths:
        raise ValueError("No data: x is empty or None.")
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise ValueError(f"x and y must have the same number of samples; got {detail}.")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("The data is empty (0 samples); pass at least one sample.")
    return n


def take(tree, index):
    """Rows ``index`` of every array in a pytree.

    Args:
      tree: a pytree of arrays, batch axis first.
      index: a slice, an integer array or anything numpy indexing takes.

    Returns:
      ``a[index]`` of every leaf, in the same structure.
    """
    return jax.tree.map(lambda a: a[index], tree)


def split_validation(x, y, weight, fraction: float):
    """Keras' ``validation_split``: the *last* fraction of the samples, taken before shuffling.

    Args:
      x: the inputs.
      y: the targets (or ``None``).
      weight: the sample weights (or ``None``).
      fraction: the validation fraction, in ``[0, 1)``; the last ``floor(n * fraction)`` samples.

    Returns:
      ``((x, y, weight) for training, (x, y, weight) for validation)``; the second is
      ``None`` for ``fraction=0``.

    Raises:
      ValueError: for a fraction outside ``[0, 1)`` or one that leaves a set empty.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {fraction}.")
    n = num_samples(x, y)
    n_val = int(math.floor(n * fraction)) if fraction else 0
    if fraction and (n_val == 0 or n_val == n):
        raise ValueError(f"validation_split={fraction} of {n} samples leaves an empty training or validation set.")
    cut = slice(0, n - n_val), slice(n - n_val, n)
    train = tuple(None if t is None else take(t, cut[0]) for t in (x, y, weight))
    val = tuple(None if t is None else take(t, cut[1]) for t in (x, y, weight)) if n_val else None
    return train, val


def check_batch_size(batch_size: Optional[int]) -> int:
    """Keras' ``batch_size`` argument, checked.

    Args:
      batch_size: ``None`` (Keras' default, 32) or a positive integer.

    Returns:
      The batch size as an ``int``.

    Raises:
      ValueError: for anything but ``None`` or a positive integer.
    """
    if batch_size is None:
        return 32
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def round_up(n: int, multiple: int) -> int:
    """``ceil(n / multiple) * multiple``.

    Args:
      n: a non-negative integer.
      multiple: a positive integer.

    Returns:
      The smallest multiple of ``multiple`` that is at least ``n``.
    """
    return -(-n // multiple) * multiple


def is_stream(x) -> bool:
    """Whether ``x`` is a stream of batches rather than in-memory data.

    Args:
      x: what ``fit``/``evaluate``/``predict`` got as ``x``.

    Returns:
      True for an iterable of batches (a generator, a data loader, a list of ``(x, y)`` tuples);
      False for ``None``, arrays, pandas objects, or a tuple/list/dict of arrays.
    """
    if isinstance(x, list):  # a list of (x, y[, sample_weight]) batches, not a list of inputs or rows
        return bool(x) and all(isinstance(b, tuple) and len(b) in (2, 3) and np.ndim(b[0]) >= 1 for b in x)
    return x is not None and hasattr(x, "__iter__") and not _is_pandas(x) and not isinstance(
        x, (np.ndarray, jax.Array, tuple, dict, str))


def _is_pandas(data) -> bool:
    """A pandas ``DataFrame`` or ``Series`` (taken as the array ``to_numpy()`` gives)."""
    return type(data).__module__.startswith("pandas") and hasattr(data, "to_numpy")


def unpack_batch(batch):
    """One batch of a stream as numpy arrays.

    Args:
      batch: ``(x, y)`` or ``(x, y, sample_weight)``.

    Returns:
      ``(x, y, sample_weight)``, checked as ``to_arrays`` does; ``sample_weight`` may be ``None``.

    Raises:
      ValueError: for a batch that is not a tuple/list of 2 or 3 entries.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(f"Each batch must be a tuple (x, y) or (x, y, sample_weight); got {type(batch).__name__}"
                         f"{' of length ' + str(len(batch)) if isinstance(batch, (tuple, list)) else ''}.")
    x, y, *weight = batch
    if y is not None and not isinstance(y, (dict, tuple, list)) and np.ndim(y) == 0:
        raise ValueError("A batch's y is a single value: the stream yields one example at a time, not batches. "
                         "Batch it first, e.g. grain_dataset.batch(32) or dlkit.datasets.load(..., batch_size=32).")
    weight = to_arrays(weight[0], "sample_weight") if weight else None
    return to_arrays(x, "x"), to_arrays(y, "y"), weight


def class_weights(y, class_weight: dict, sample_weight=None) -> np.ndarray:
    """Keras' ``class_weight``: each sample's weight is ``class_weight[its class]`` (times its
    ``sample_weight``). The class is the label, the argmax of a one-hot row, or a rounded 0/1 target.

    Args:
      y: the targets: integer labels ``(n,)`` / ``(n, 1)``, 0/1 targets, or one-hot rows ``(n, classes)``.
      class_weight: ``{class: weight}`` for every class present.
      sample_weight: ``None`` or one weight per sample, multiplied in.

    Returns:
      One float32 weight per sample.

    Raises:
      ValueError: for a class present in ``y`` without a weight.
    """
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] > 1:
        classes = y.argmax(-1)
    else:
        classes = np.rint(y.reshape(len(y))).astype(np.int64)
    missing = sorted(set(np.unique(classes).tolist()) - set(class_weight))
    if missing:
        raise ValueError(f"class_weight has no weight for class {missing[0]} (classes present: "
                         f"{sorted(np.unique(classes).tolist())}); give every class a weight.")
    lookup = np.vectorize(lambda c: float(class_weight[c]), otypes=[np.float32])
    weights = lookup(classes)
    return weights if sample_weight is None else weights * np.asarray(sample_weight, np.float32)


class StepsPerEpoch:
    """Keras' ``steps_per_epoch`` / ``validation_steps`` over a stream of batches: each pass yields
    the next ``steps`` batches of one iterator kept across passes (as Keras continues a
    generator from epoch to epoch).

    When the iterator runs out, a source that can be iterated again (a list, a data loader)
    starts a new pass; a one-shot generator ends the epoch early with a warning, as Keras
    stops when "your input ran out of data".

    Args:
      source: the iterable of batches.
      steps: batches per pass (a positive int).
      what: the argument's name, for the warning.
      restart: start every pass at the source's beginning (``validation_steps`` on a re-iterable
        source: the same batches are evaluated each epoch) instead of continuing.
    """

    def __init__(self, source, steps: int, what: str, restart: bool = False):
        self.source, self.steps, self.what, self.restart = source, steps, what, restart
        self.iterator = None

    def __iter__(self):
        if self.restart or self.iterator is None:
            self.iterator = iter(self.source)
        for count in range(self.steps):
            batch = next(self.iterator, _END)
            if batch is _END:  # a new pass, if the source has one
                self.iterator = iter(self.source)
                batch = _END if self.iterator is self.source else next(self.iterator, _END)
            if batch is _END:
                warnings.warn(f"{self.what}={self.steps}, but the input ran out of data after {count} batches "
                              f"of this epoch; pass a source that can be iterated again (a list, a data loader) "
                              f"or fewer {self.what}.", stacklevel=2)
                return
            yield batch


_END = object()
