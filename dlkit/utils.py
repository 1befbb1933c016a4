"""Utilities under Keras' names."""
from __future__ import annotations

import random

import numpy as np

from dlkit.training import validation


def to_categorical(y, num_classes=None, dtype="float32") -> np.ndarray:
    """Keras' ``to_categorical``: one-hot encode integer labels, ``(N,)`` -> ``(N, num_classes)``.

    ``out[..., k] = 1`` where ``y == k``; a trailing axis of size 1 is dropped first
    (``(N, 1)`` -> ``(N, num_classes)``); higher ranks keep their axes.

    Args:
        y: Integer class labels (array-like).
        num_classes: Number of classes; ``None``: ``max(y) + 1``.
        dtype: The output dtype.

    Returns:
        A numpy array ``(*y.shape, num_classes)``.

    Raises:
        ValueError: A label outside ``[0, num_classes)``.
    """
    y = np.asarray(y, dtype=np.int64).reshape(-1) if np.ndim(y) <= 1 else np.asarray(y, np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"Labels must lie in [0, {num_classes}); got values from {y.min()} to {y.max()}.")
    return np.eye(num_classes, dtype=dtype)[y]


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0) -> np.ndarray:
    """Keras' ``pad_sequences``: a list of sequences of different lengths as one ``(n, maxlen)`` array.

    Sequences longer than ``maxlen`` lose their first (``truncating="pre"``) or last (``"post"``)
    entries; shorter ones are filled with ``value`` before (``padding="pre"``) or after
    (``"post"``) them. Entries may be arrays themselves (all of one shape), giving
    ``(n, maxlen, *entry_shape)``. As Keras, each sequence is cast to ``dtype``; strings need
    ``dtype=object`` (or a string dtype).

    Args:
        sequences: A list (or other sized iterable) of sequences, e.g. lists of token ids.
        maxlen: The length of every row; ``None``: the longest sequence's.
        dtype: The output dtype.
        padding: ``"pre"`` or ``"post"``: where the filling goes.
        truncating: ``"pre"`` or ``"post"``: which end of a long sequence is cut.
        value: The filling.

    Returns:
        A numpy array ``(len(sequences), maxlen, *entry_shape)``.

    Raises:
        ValueError: ``sequences`` is not a list of sequences, ``padding``/``truncating`` are not
            ``"pre"``/``"post"``, a negative ``maxlen``, no sequences without ``maxlen``, a string
            ``value`` with a numeric ``dtype``, or entries of different shapes.
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError(f"sequences must be a list of sequences, got {type(sequences).__name__}.")
    for name, where in (("padding", padding), ("truncating", truncating)):
        if where not in ("pre", "post"):
            raise ValueError(f'{name} must be "pre" or "post", got {where!r}.')
    lengths, entry_shape = [], None
    for i, sequence in enumerate(sequences):
        if not hasattr(sequence, "__len__"):
            raise ValueError(f"sequences must be a list of sequences; entry {i} is {sequence!r}.")
        lengths.append(len(sequence))
        if entry_shape is None and len(sequence):
            entry_shape = np.asarray(sequence).shape[1:]  # the first non-empty sequence's, as Keras
    entry_shape = entry_shape or ()
    if maxlen is None:
        if not lengths:
            raise ValueError("pad_sequences got no sequences: pass maxlen= to make an empty (0, maxlen) array.")
        maxlen = max(lengths)
    if maxlen < 0:
        raise ValueError(f"maxlen must be None or >= 0, got {maxlen}.")
    is_text = np.issubdtype(dtype, np.str_) or np.issubdtype(dtype, np.bytes_)
    if isinstance(value, str) and dtype is not object and not is_text:
        raise ValueError(f"dtype {dtype} cannot hold the string value {value!r}: use dtype=object for strings.")
    out = np.full((len(lengths), int(maxlen), *entry_shape), value, dtype=dtype)
    for i, sequence in enumerate(sequences):
        if not len(sequence) or not maxlen:
            continue
        kept = np.asarray(sequence[-maxlen:] if truncating == "pre" else sequence[:maxlen], dtype=dtype)
        if kept.shape[1:] != entry_shape:
            raise ValueError(f"Entries of sequence {i} have shape {kept.shape[1:]}, unlike the first sequence's "
                             f"{entry_shape}; give every entry one shape.")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, maxlen - len(kept):] = kept
    return out


def set_random_seed(seed: int) -> None:
    """Keras' ``set_random_seed``: seed Python's ``random``, numpy's global generator and dlkit's default seed.

    A ``Trainer`` built afterwards with no ``seed=`` (its default) starts from ``seed``, so the
    same script gives the same weights, dropout and shuffling on every run; ``Trainer(seed=None)``
    draws its seed from a generator ``seed`` seeds. An explicit int ``seed=`` is kept.

    Args:
        seed: An int in ``[0, 2**32)``.

    Raises:
        TypeError: ``seed`` is not an int.
        ValueError: ``seed`` is negative or ``2**32`` or more.
    """
    if seed is None:
        raise TypeError("set_random_seed takes an int seed, got None.")
    seed = validation.set_default_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1, sampling_rate=1,
                                  batch_size=128, shuffle=False, seed=None, start_index=None,
                                  end_index=None) -> TimeseriesDataset:
    """Sliding windows over a series, in batches (Keras' ``timeseries_dataset_from_array``).

    Axis 0 of ``data`` is time. Windows start at ``start_index``, ``start_index +
    sequence_stride``, ...; the window starting at ``i`` is ``data[i], data[i +
    sampling_rate], ...`` (``sequence_length`` steps), and every step lies in
    ``data[start_index:end_index]``. Its target is ``targets[i]`` (Keras' rule), so
    to forecast the step after each window pass ``data[:-1]`` and
    ``targets=data[sequence_length:]``; ``targets=None`` yields windows alone.

    Returns a :class:`TimeseriesDataset`: an iterable of numpy ``(windows, targets)``
    batches that starts a new pass on each ``iter()``, so ``Trainer.fit`` can run it
    for several epochs, and ``evaluate``/``predict`` accept it too. ``batch_size=None``
    yields single samples. ``shuffle`` draws a new order each pass from ``seed`` (the
    windows are Keras'; the order is not tf.data's shuffle buffer).

    Keras' valid arguments give Keras' windows. Where Keras would yield nothing (a
    window longer than the data) this raises. It also accepts ``end_index=len(data)``
    and strides of ``len(data)`` or more, which Keras refuses.

    Args:
        data: Array whose axis 0 is time.
        targets: Array with ``targets[i]`` the target of the window starting at ``i``, or ``None``.
        sequence_length: Steps per window.
        sequence_stride: Steps between the starts of consecutive windows.
        sampling_rate: Steps between consecutive entries of a window.
        batch_size: Windows per batch; ``None``: single samples.
        shuffle: Shuffle the windows on each pass.
        seed: Seed of the shuffling.
        start_index: First step windows may use (default 0).
        end_index: Steps from here on are not used (default ``len(data)``).

    Returns:
        A ``TimeseriesDataset``.

    Raises:
        ValueError: Empty ``data``, a non-positive length/stride/rate/batch size, an index out of
            range, a window longer than ``data[start_index:end_index]``, or ``targets`` too short.
    """
    data = np.asarray(data)
    if data.ndim == 0 or len(data) == 0:
        raise ValueError(f"data must be an array with a time axis (axis 0) and at least one step; "
                         f"got shape {data.shape}.")
    sequence_length = _positive_int("sequence_length", sequence_length)
    sequence_stride = _positive_int("sequence_stride", sequence_stride)
    sampling_rate = _positive_int("sampling_rate", sampling_rate)
    batch_size = None if batch_size is None else _positive_int("batch_size", batch_size)
    start, end = _window_range(len(data), start_index, end_index)
    span = (sequence_length - 1) * sampling_rate + 1
    num_windows = end - start - span + 1
    if num_windows <= 0:
        raise ValueError(f"A window spans {span} steps (sequence_length={sequence_length}, "
                         f"sampling_rate={sampling_rate}) but data[{start}:{end}] has only {end - start}. "
                         f"Shorten sequence_length or sampling_rate, or widen start_index/end_index.")
    if targets is not None:
        targets = np.asarray(targets)
        if targets.ndim == 0 or len(targets) <= start:
            raise ValueError(f"targets[i] is the target of the window starting at data[i], and the first window "
                             f"starts at {start}, but targets has shape {targets.shape}. Pass one target per "
                             f"window start (for next-step forecasting, targets=data[sequence_length:]).")
        num_windows = min(num_windows, len(targets) - start)
    starts = np.arange(start, start + num_windows, sequence_stride)
    offsets = np.arange(sequence_length) * sampling_rate
    return TimeseriesDataset(data, targets, starts, offsets, batch_size, shuffle, seed)


class TimeseriesDataset:
    """Batches of windows ``data[starts[k] + offsets]`` with targets ``targets[starts[k]]``.

    Re-iterable: each ``iter()`` is a new pass (a new order when shuffling). Batches are
    gathered on demand by fancy indexing, so memory holds one batch of windows at a time.
    Built by :func:`timeseries_dataset_from_array`.

    Args:
        data: The series, time on axis 0.
        targets: The targets, indexed by window start, or ``None``.
        starts: The windows' first steps (int array).
        offsets: Each window's step offsets, ``arange(sequence_length) * sampling_rate``.
        batch_size: Windows per batch, or ``None`` for single samples.
        shuffle: Draw a new order each pass.
        seed: Seed of the order (``numpy.random.default_rng``).
    """

    def __init__(self, data, targets, starts, offsets, batch_size, shuffle, seed):
        self.data, self.targets, self.starts, self.offsets = data, targets, starts, offsets
        self.batch_size, self.shuffle = batch_size, bool(shuffle)
        self._rng = np.random.default_rng(seed)

    @property
    def num_windows(self) -> int:
        """The number of windows per pass."""
        return len(self.starts)

    def __len__(self) -> int:
        """Batches per pass (samples when unbatched), like ``len`` of Keras' dataset."""
        return self.num_windows if self.batch_size is None else -(-self.num_windows // self.batch_size)

    def __iter__(self):
        order = self._rng.permutation(self.starts) if self.shuffle else self.starts
        if self.batch_size is None:
            return (self._item(first) for first in order)
        return (self._item(order[i:i + self.batch_size]) for i in range(0, len(order), self.batch_size))

    def _item(self, first):
        """The windows (and targets) starting at ``first``: an index, or an array of them (a batch)."""
        windows = self.data[np.add.outer(first, self.offsets)]
        return windows if self.targets is None else (windows, self.targets[first])

    def __repr__(self) -> str:
        return (f"TimeseriesDataset({self.num_windows} windows of {len(self.offsets)} steps, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle})")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _window_range(length: int, start_index, end_index) -> tuple:
    """``[start, end)``, the steps windows may use, checked against the data's ``length``."""
    start = 0 if start_index is None else start_index
    end = length if end_index is None else end_index
    for name, value in (("start_index", start), ("end_index", end)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer or None, got {value!r}.")
    if not 0 <= start < length:
        raise ValueError(f"start_index must be in [0, {length}) for data of length {length}; got {start}.")
    if not start < end <= length:
        raise ValueError(f"end_index must be in ({start}, {length}] (after start_index={start}, at most the data "
                         f"length {length}); got {end}.")
    return int(start), int(end)
