"""Checkpoints of the full training state, written with Orbax.

A checkpoint directory is an Orbax ``CheckpointManager`` directory: one
sub-directory per saved epoch, each written to a temporary name and renamed
only when complete (Orbax's atomic commit), so a process killed mid-save
leaves the previous checkpoint as the latest readable one. Each holds the
state (params, other collections, optimizer state, step, RNG) and a small
JSON record (epochs completed, the sample shape the model was built with).
"""
from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from dlkit.training.state import TrainState


def to_tree(state: TrainState, weights_only: bool = False) -> dict:
    """The parts of ``state`` a checkpoint holds, as a dict Orbax can save.

    Args:
      state: the training state.
      weights_only: keep only ``params`` and ``model_state`` (no step, optimizer state or RNG).

    Returns:
      ``{"params", "model_state"}``, plus ``"step"``, ``"opt_state"`` and ``"rng"`` (the key's
      raw data) unless ``weights_only``.
    """
    tree = {"params": state.params, "model_state": state.model_state}
    if not weights_only:
        tree.update(step=state.step, opt_state=state.opt_state, rng=jax.random.key_data(state.rng))
    return tree


def from_tree(state: TrainState, tree: dict) -> TrainState:
    """``state`` with every part found in ``tree`` replaced.

    Args:
      state: the state to update (its ``tx``, ``apply_fn`` and freezing rules are kept).
      tree: a tree made by ``to_tree`` (a weights-only one replaces the weights alone).

    Returns:
      The updated ``TrainState``.
    """
    parts = {"params": tree["params"], "model_state": tree["model_state"]}
    if "opt_state" in tree:
        parts.update(step=tree["step"], opt_state=tree["opt_state"], rng=jax.random.wrap_key_data(tree["rng"]))
    return state.replace(**parts)


def encode_shape(shape):
    """A sample shape (or a dict / tuple of them) as JSON.

    Args:
      shape: a tuple of ints, or a dict / tuple / list of them (one per input).

    Returns:
      Lists of ints in the same structure (dicts stay dicts).
    """
    if isinstance(shape, dict):
        return {k: encode_shape(v) for k, v in shape.items()}
    if isinstance(shape, (tuple, list)) and shape and not isinstance(shape[0], (int, np.integer)):
        return [encode_shape(s) for s in shape]
    return [int(d) for d in shape]


def decode_shape(value):
    """The inverse of ``encode_shape``.

    Args:
      value: the JSON value ``encode_shape`` made.

    Returns:
      A tuple of ints, or a dict / tuple of them.
    """
    if isinstance(value, dict):
        return {k: decode_shape(v) for k, v in value.items()}
    if value and isinstance(value[0], list):
        return tuple(decode_shape(v) for v in value)
    return tuple(value)


def _manager(directory: str, max_to_keep: Optional[int] = None) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(directory: str, epoch: int, tree: dict, meta: dict, max_to_keep: Optional[int] = None) -> None:
    """Save ``tree`` as the checkpoint for ``epoch`` and wait until it is committed.

    Args:
      directory: the checkpoint directory (created if missing).
      epoch: the checkpoint's label, epochs completed (Orbax refuses one that exists).
      tree: the arrays to save (``to_tree``).
      meta: a JSON-serialisable record saved beside it.
      max_to_keep: ``None`` keeps every checkpoint, else only the latest ``max_to_keep``.
    """
    manager = _manager(directory, max_to_keep)
    manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)),
                 force=True)
    manager.wait_until_finished()
    manager.close()


def read_meta(directory: str, epoch: Optional[int] = None) -> tuple[int, dict]:
    """The record of the given or latest committed checkpoint.

    Args:
      directory: the checkpoint directory.
      epoch: the checkpoint to read; ``None`` for the latest.

    Returns:
      ``(epoch, meta)``.

    Raises:
      FileNotFoundError: if ``directory`` holds no checkpoint.
    """
    manager = _manager(directory)
    epoch = manager.latest_step() if epoch is None else epoch
    if epoch is None:
        raise FileNotFoundError(f"No checkpoint in {directory!r}: save one with ModelCheckpoint or "
                                f"Trainer.save_checkpoint first.")
    meta = manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    manager.close()
    return epoch, meta


def restore(directory: str, epoch: int, target: dict) -> dict:
    """The state tree saved for ``epoch``.

    Args:
      directory: the checkpoint directory.
      epoch: the checkpoint to read.
      target: a tree of the same structure (``to_tree`` of a state), giving shapes and dtypes.

    Returns:
      The restored tree.
    """
    manager = _manager(directory)
    restored = manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    manager.close()
    return restored.state


def save_state(directory: str, state: TrainState, epoch: int, sample_shape, weights_only: bool = False) -> None:
    """Save a trainer's state (or its weights only) as the checkpoint for ``epoch``, with the
    sample shape that a fresh trainer needs to build the model before restoring.

    Args:
      directory: the checkpoint directory.
      state: the training state.
      epoch: epochs completed (the checkpoint's label).
      sample_shape: the shape of one sample (or a structure of them) the model was built with.
      weights_only: save ``params`` and ``model_state`` only.
    """
    meta = {"epoch": epoch, "weights_only": weights_only, "sample_shape": encode_shape(sample_shape)}
    save(directory, epoch, to_tree(state, weights_only), meta)


def restore_state(directory: str, epoch: int, state: TrainState, meta: dict) -> TrainState:
    """``state`` with the parts saved for ``epoch`` restored.

    Args:
      directory: the checkpoint directory.
      epoch: the checkpoint to restore.
      state: a state of the same model and optimizer (gives the shapes).
      meta: the checkpoint's record (``read_meta``); ``weights_only`` restores the weights alone.

    Returns:
      The restored ``TrainState``.
    """
    target = to_tree(state, meta.get("weights_only", False))
    return from_tree(state, restore(directory, epoch, target))
