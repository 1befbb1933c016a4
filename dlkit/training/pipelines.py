"""Grain pipelines as ``fit``'s input: one iterator kept across epochs, its state saved in checkpoints.

A Grain ``MapDataset``, ``IterDataset`` or ``DataLoader`` yields batches as any iterable does,
but re-iterating one each epoch would replay the same order, and a resumed run would start
it over. So ``fit`` keeps one Grain iterator for the whole run:

- a finite ``MapDataset`` of ``L`` batches is one epoch; the next epoch continues the same
  iterator over ``dataset.repeat()``, so a ``.shuffle(seed)`` in the pipeline draws a new
  order every epoch (Grain seeds each pass apart) and ``fit`` ends where it would have;
- an ``IterDataset`` / ``DataLoader`` epoch runs until the iterator ends (a new one starts the
  next epoch), or for ``steps_per_epoch`` batches of one iterator;
- the iterator's position (``get_state``) is saved with every checkpoint
  (``Trainer.save_checkpoint``) and restored by the next ``fit`` after ``load_checkpoint``, so
  a resumed run sees the batches the uninterrupted run would have.
"""
from __future__ import annotations

import base64
import json
import sys
import warnings
from typing import Any, Optional


def is_grain(source) -> bool:
    """Whether ``source`` is a Grain ``MapDataset``, ``IterDataset`` or ``DataLoader``.

    Args:
      source: what ``fit`` got as ``x``.

    Returns:
      True for Grain's dataset and loader types (checked by module, without importing Grain).
    """
    return type(source).__module__.startswith("grain.") and hasattr(source, "__iter__") and any(
        base.__name__ in ("MapDataset", "IterDataset", "DataLoader") for base in type(source).__mro__)


def is_data_source(source) -> bool:
    """Whether ``source`` is a tensorflow-datasets data source (``tfds.data_source(...)``): examples
    by index, each a dict of features.

    Args:
      source: what ``fit`` got as ``x``.

    Returns:
      True for tfds' random-access sources (checked by module, without importing tfds).
    """
    return type(source).__module__.startswith("tensorflow_datasets.") and hasattr(source, "__getitem__") \
        and hasattr(source, "__len__") and hasattr(source, "dataset_info")


def from_data_source(source, batch_size: int, shuffle: bool, seed: int):
    """A tfds data source as a Grain pipeline of ``(x, y)`` batches, by its supervised keys.

    ``fit`` batches and shuffles it as it does arrays: ``batch_size`` examples a batch, a new
    order each epoch (``GrainInput`` continues the shuffled pipeline from epoch to epoch).

    Args:
      source: a ``tfds.data_source(...)`` result.
      batch_size: examples per batch.
      shuffle: shuffle the examples, by ``seed``.
      seed: the shuffle's seed (the Trainer's).

    Returns:
      A ``grain.MapDataset`` of batches.

    Raises:
      ValueError: the dataset has no supervised keys (so no ``(x, y)``), naming the fix.
    """
    import grain

    from dlkit.datasets.tfds_data import pick

    keys = source.dataset_info.supervised_keys
    if not keys:
        raise ValueError(f"The tfds data source of {source.dataset_info.name!r} has no supervised keys, so fit cannot "
                         f"tell x from y; map it to (x, y) first: grain.MapDataset.source(source).map(lambda e: "
                         f"(e['feature'], e['label'])).batch({batch_size}).")
    dataset = grain.MapDataset.source(source)
    dataset = dataset.shuffle(seed=seed) if shuffle else dataset
    return dataset.map(lambda example: pick(keys, example)).batch(batch_size)


def _finite_length(source) -> Optional[int]:
    """The batches of a finite ``MapDataset``; ``None`` for other sources and endless ones."""
    if not any(base.__name__ == "MapDataset" for base in type(source).__mro__):
        return None
    length = len(source)
    return None if length >= sys.maxsize else length


class GrainInput:
    """A Grain source as ``fit`` iterates it: one iterator for the run, an epoch per pass.

    Args:
      source: a Grain ``MapDataset``, ``IterDataset`` or ``DataLoader`` yielding batches.
      steps: batches per epoch (``steps_per_epoch``), or ``None`` for one pass of the source.
      state: a position saved by ``state()`` (from a checkpoint) to continue from, or ``None``.
    """

    def __init__(self, source, steps: Optional[int] = None, state: Optional[dict] = None):
        self.source, self.steps, self.length = source, steps, _finite_length(source)
        # A finite MapDataset is read by index on the training thread: no thread pool competing with
        # the step for the cores (read-ahead threads: pass ``dataset.to_iter_dataset(ReadOptions(...))``).
        self._iterable = _ByIndex(source.repeat()) if self.length is not None else source
        self.iterator = None
        self.fresh = True  # the next epoch starts a new iterator (IterDataset / DataLoader passes)
        if state is not None:
            self._restore(state)

    def __iter__(self):
        if self.iterator is None or (self.fresh and self.length is None):
            self.iterator, self.fresh = iter(self._iterable), False
        wanted = self.steps or self.length
        count = 0
        while wanted is None or count < wanted:
            try:
                batch = next(self.iterator)
            except StopIteration:
                self.fresh = True
                if wanted is not None and count < wanted:
                    warnings.warn(f"steps_per_epoch={wanted}, but the Grain pipeline ran out after {count} batches "
                                  f"of this epoch; the next epoch starts a new pass.", stacklevel=2)
                return
            count += 1
            yield batch

    def state(self) -> dict:
        """The iterator's position, JSON-serialisable, for a checkpoint.

        Returns:
          ``{"fresh": True}`` before the first batch or after a finished pass, else
          ``{"grain": <the iterator's get_state()>}`` (a ``DataLoader``'s bytes as text).
        """
        if self.iterator is None or (self.fresh and self.length is None):
            return {"fresh": True}
        position = self.iterator.get_state()
        if isinstance(position, bytes):
            try:
                return {"grain_text": position.decode()}
            except UnicodeDecodeError:
                return {"grain_bytes": base64.b64encode(position).decode()}
        json.dumps(position)  # a Grain state is a JSON-like dict; anything else would not survive the save
        return {"grain": position}

    def _restore(self, state: dict) -> None:
        if state.get("fresh"):
            return
        self.iterator, self.fresh = iter(self._iterable), False
        if "grain_text" in state:
            self.iterator.set_state(state["grain_text"].encode())
        elif "grain_bytes" in state:
            self.iterator.set_state(base64.b64decode(state["grain_bytes"]))
        else:
            self.iterator.set_state(state["grain"])


class _ByIndex:
    """``iter()`` over a ``MapDataset`` by index, with Grain's iterator interface (``get_state`` /
    ``set_state`` as ``{"next_index": k}``)."""

    def __init__(self, dataset):
        self.dataset, self.next_index = dataset, 0

    def __iter__(self):
        return _ByIndex(self.dataset)

    def __next__(self):
        if self.next_index >= len(self.dataset):
            raise StopIteration
        self.next_index += 1
        return self.dataset[self.next_index - 1]

    def get_state(self) -> dict:
        return {"next_index": self.next_index}

    def set_state(self, state: dict) -> None:
        self.next_index = int(state["next_index"])


def wrap(source, steps: Optional[int], saved: Any) -> GrainInput:
    """``fit``'s Grain input, continued from a checkpoint's saved position if there is one.

    Args:
      source: the Grain dataset or loader.
      steps: ``steps_per_epoch`` or ``None``.
      saved: the ``input_state`` of the checkpoint last loaded (``None``: start at the beginning).

    Returns:
      The ``GrainInput``.

    Raises:
      ValueError: the saved position does not fit this pipeline (a different pipeline than the
        checkpointed run's), naming the fix.
    """
    try:
        return GrainInput(source, steps, saved)
    except Exception as error:  # noqa: BLE001 - Grain's own errors vary by source type
        raise ValueError(f"The checkpoint's saved position of the input pipeline ({saved}) does not fit this Grain "
                         f"pipeline ({type(source).__name__}): {error}. Pass the pipeline the checkpointed run "
                         f"used.") from error
