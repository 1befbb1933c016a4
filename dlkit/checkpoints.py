"""Checkpoints of the full training state, written with Orbax, verified when read.

A checkpoint directory is an Orbax ``CheckpointManager`` directory: one
sub-directory per saved epoch, each written to a temporary name and renamed
only when complete (Orbax's atomic commit), so a process killed mid-save
leaves the previous checkpoint as the latest readable one. Each holds the
state (params, other collections, optimizer state, step, RNG) and a small
JSON record (epochs completed, the sample shape the model was built with, and
the shape, dtype and SHA-256 of every saved array).

What Orbax lacks, this module adds: the checksums (Orbax checks none of the
array bytes it reads back, so a flipped byte loads silently), the comparison of
the saved shapes with the model's before restoring (a wrong architecture is
named by its first differing parameter), a refusal to save NaN/inf, and errors
that name the epoch and what is wrong (``CheckpointError``). Loading the latest
checkpoint skips damaged ones, with a warning, and takes the newest intact one.

Saves run synchronously (Orbax's ``enable_async_checkpointing=False``): the
caller waits for the commit anyway, and an asynchronous save whose directory
cannot be created leaves Orbax's handler threads (non-daemon) waiting 300 s for
a "directory created" signal that never comes, which holds the process at exit.
"""
from __future__ import annotations

import gc
import logging
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from dlkit.checksums import describe_arrays, first_changed, first_nonfinite, layout_mismatch

if TYPE_CHECKING:  # annotations only: the loop imports this module, and the callbacks do
    from dlkit.training.state import TrainState


class CheckpointError(ValueError):
    """A checkpoint that cannot be saved or loaded as asked: damaged, written for another model, or
    an unwritable path. The message names the directory, the epoch and what is wrong."""


class NonFiniteCheckpointError(CheckpointError):
    """A save refused because the state holds NaN or infinite values (the run diverged)."""


def to_tree(state: TrainState, weights_only: bool = False) -> dict:
    """The parts of ``state`` a checkpoint holds, as a dict Orbax can save.

    Args:
      state: the training state.
      weights_only: keep only ``params`` and ``model_state`` (no step, optimizer state or RNG).

    Returns:
      ``{"params", "model_state"}``, plus ``"step"``, ``"opt_state"`` and ``"rng"`` (the key's
      raw data), and ``"loss_scale"`` under ``"mixed_float16"``, unless ``weights_only``.
    """
    tree = {"params": state.params, "model_state": state.model_state}
    if not weights_only:
        tree.update(step=state.step, opt_state=state.opt_state, rng=jax.random.key_data(state.rng))
        if getattr(state, "loss_scale", None) is not None:  # mixed_float16's loss scale resumes too
            tree["loss_scale"] = {"scale": state.loss_scale.scale, "fin_steps": state.loss_scale.fin_steps}
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
    if "loss_scale" in tree:
        parts["loss_scale"] = state.loss_scale.replace(**tree["loss_scale"])
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


# ---------------------------------------------------------------------- the arrays' record
# ---------------------------------------------------------------------- Orbax
def _manager(directory: str, max_to_keep: Optional[int] = None, read_only: bool = False) -> ocp.CheckpointManager:
    # Not Orbax's read_only=True for reading: it logs two warnings per manager; create=False writes nothing.
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


class _Quiet:
    """Orbax and TensorStore failing to read a damaged checkpoint log errors, and the reads still in
    flight finish into a closed event loop and leave coroutines, each printing a traceback (through
    ``sys.unraisablehook``); dlkit reports the damage itself, once. Inside ``with _Quiet() as quiet``
    those are dropped; after ``quiet.failed = True`` the exit waits for the reads in flight (local
    file reads: milliseconds) and collects the coroutines before handing the hooks back."""

    failed = False

    def __enter__(self):
        self._logger = logging.getLogger("absl")
        self._level, self._hook = self._logger.level, sys.unraisablehook
        self._logger.setLevel(logging.CRITICAL)
        sys.unraisablehook = lambda *args: None
        return self

    def __exit__(self, *exc) -> None:
        if self.failed:
            time.sleep(0.1)
            gc.collect()
        self._logger.setLevel(self._level)
        sys.unraisablehook = self._hook


def all_steps(directory: str) -> list:
    """The epochs of the committed checkpoints in ``directory`` (half-written ones excluded).

    Args:
      directory: a checkpoint directory (missing: none).

    Returns:
      The epochs, ascending.
    """
    if not os.path.isdir(directory):
        return []
    manager = _manager(directory, read_only=True)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def save(directory: str, epoch: int, tree: dict, meta: dict, max_to_keep: Optional[int] = None,
         allow_nonfinite: bool = False) -> None:
    """Save ``tree`` as the checkpoint for ``epoch`` and wait until it is committed.

    The record saved beside it gets ``"arrays"`` (``describe_arrays``), checked on load.
    A checkpoint of the same epoch is replaced (deleted, then saved anew).

    Args:
      directory: the checkpoint directory (created if missing).
      epoch: the checkpoint's label, epochs completed.
      tree: the arrays to save (``to_tree``).
      meta: a JSON-serialisable record saved beside it.
      max_to_keep: ``None`` keeps every checkpoint, else only the latest ``max_to_keep``.
      allow_nonfinite: save a tree holding NaN or inf too (refused by default).

    Raises:
      NonFiniteCheckpointError: if an array holds NaN or inf and not ``allow_nonfinite``.
      CheckpointError: if ``directory`` is a file or cannot be written (the message names it).
    """
    path = os.path.abspath(directory)
    host = jax.device_get(tree)
    bad = None if allow_nonfinite else first_nonfinite(host)
    if bad is not None:
        raise NonFiniteCheckpointError(
            f"Not saving checkpoint epoch {epoch} in {directory!r}: {bad!r} holds NaN or infinite values "
            f"(training diverged; TerminateOnNaN stops such a run). Try a lower learning rate or gradient "
            f"clipping, or pass allow_nonfinite=True to save it anyway.")
    if os.path.exists(path) and not os.path.isdir(path):
        raise CheckpointError(f"Cannot save checkpoint epoch {epoch}: {path!r} is a file, and a checkpoint is a "
                              f"directory (one sub-directory per epoch). Pass a directory path.")
    meta = {**meta, "arrays": describe_arrays(host)}
    manager = None
    try:
        manager = _manager(path, max_to_keep)
        if epoch in manager.all_steps():
            manager.delete(epoch)
        manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                    meta=ocp.args.JsonSave(meta)), force=True)
        manager.wait_until_finished()
    except OSError as error:
        raise CheckpointError(f"Cannot save checkpoint epoch {epoch} in {path!r}: "
                              f"{error.strerror or type(error).__name__}. The checkpoint directory must be a "
                              f"directory this process can write to (or create).") from None
    finally:
        if manager is not None:
            manager.close()


class _DamageError(Exception):
    """A checkpoint whose files are missing, truncated or changed (internal: becomes a warning or a
    ``CheckpointError``)."""


def _read_meta(manager: ocp.CheckpointManager, epoch: int) -> dict:
    with _Quiet() as quiet:  # the except clause inside: the failure is gone when the exit collects
        try:
            meta = manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except Exception:  # noqa: BLE001 - Orbax and json raise many kinds; the record is unreadable
            meta, quiet.failed = None, True
    if not isinstance(meta, dict) or "sample_shape" not in meta:
        raise _DamageError("its record (meta/metadata) is missing, truncated or not valid JSON")
    return meta


def _restore_arrays(manager: ocp.CheckpointManager, directory: str, epoch: int, target: dict, meta: dict) -> dict:
    saved = meta.get("arrays")
    if saved is not None:
        mismatch = layout_mismatch(saved, target)
        if mismatch:
            optimizer = mismatch.startswith(("'opt_state", "the model has 'opt_state", "the checkpoint holds 'opt"))
            what, fix = (("optimizer", "Use the optimizer it was saved with") if optimizer else
                         ("model", "Build the model with the layers it was saved from"))
            raise CheckpointError(f"Checkpoint epoch {epoch} in {directory!r} was saved from a different {what}: "
                                  f"{mismatch}. {fix}, or load another checkpoint.")
    with _Quiet() as quiet:
        try:
            restored = manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))).state
        except Exception:  # noqa: BLE001 - TensorStore's errors are long dumps; what matters is that it failed
            restored, quiet.failed = None, True
    if restored is None:
        raise _DamageError("its array files (under state/) could not be read: one is missing, truncated or corrupted")
    changed = None if saved is None else first_changed(saved, restored)
    if changed is not None:
        raise _DamageError(f"the array {changed!r} does not match its saved SHA-256 checksum (its bytes changed "
                           f"after the save)")
    return restored


def _load_one(directory: str, epoch: int, template: Callable[[dict], TrainState]) -> tuple:
    manager = _manager(directory, read_only=True)
    try:
        meta = _read_meta(manager, epoch)
        state = template(meta)
        restored = _restore_arrays(manager, directory, epoch, to_tree(state, meta.get("weights_only", False)), meta)
        return epoch, meta, from_tree(state, restored)
    finally:
        manager.close()


def _no_checkpoint(directory: str) -> FileNotFoundError:
    return FileNotFoundError(f"No checkpoint in {directory!r}: save one with ModelCheckpoint or "
                             f"Trainer.save_checkpoint first.")


def load_state(directory: str, epoch: Optional[int], template: Callable[[dict], TrainState],
               fallback: bool = True) -> tuple:
    """Restore and verify the given, or the latest intact, checkpoint of ``directory``.

    Every array is checked against the SHA-256 saved with it. With ``epoch=None`` a
    damaged latest checkpoint is skipped for the one before it, with a warning naming
    both epochs (``fallback=False`` raises instead).

    Args:
      directory: the checkpoint directory.
      epoch: the checkpoint to restore; ``None`` for the latest intact one.
      template: ``meta -> TrainState``, the state to restore into (it gives the shapes; the
        record's ``sample_shape`` lets it build a fresh model first).
      fallback: with ``epoch=None``, skip damaged checkpoints for older intact ones.

    Returns:
      ``(epoch, meta, state)``: the epoch restored, its record and the restored ``TrainState``.

    Raises:
      FileNotFoundError: if ``directory`` holds no checkpoint, or none for ``epoch``.
      CheckpointError: if the requested checkpoint is damaged, if every checkpoint is (or the
        latest, with ``fallback=False``), or if the checkpoint was saved from a model of other
        shapes (the first differing parameter and both shapes are named).
    """
    steps = all_steps(directory)
    if not steps:
        raise _no_checkpoint(directory)
    if epoch is not None:
        if epoch not in steps:
            raise FileNotFoundError(f"No checkpoint for epoch {epoch} in {directory!r}; it holds epochs "
                                    f"{', '.join(map(str, steps))}.")
        try:
            return _load_one(directory, epoch, template)
        except _DamageError as damage:
            others = [s for s in steps if s != epoch]
            also = f" The directory also holds epochs {', '.join(map(str, others))}." if others else ""
            raise CheckpointError(f"Checkpoint epoch {epoch} in {directory!r} is damaged: {damage}.{also}") from None
    damaged = []
    for step in reversed(steps if fallback else steps[-1:]):
        try:
            loaded = _load_one(directory, step, template)
        except _DamageError as damage:
            damaged.append(f"epoch {step}: {damage}")
            continue
        if damaged:
            warnings.warn(f"Checkpoint {'; '.join(damaged)} (in {directory!r}). Loaded epoch {step} instead, the "
                          f"latest intact checkpoint.", stacklevel=3)
        return loaded
    what = "The latest checkpoint" if not fallback else "Every checkpoint"
    raise CheckpointError(f"{what} in {directory!r} is damaged: {'; '.join(damaged)[:1200]}.")


def read_meta(directory: str, epoch: Optional[int] = None) -> tuple[int, dict]:
    """The record of the given or latest committed checkpoint (not verified: ``load_state`` checks).

    Args:
      directory: the checkpoint directory.
      epoch: the checkpoint to read; ``None`` for the latest.

    Returns:
      ``(epoch, meta)``.

    Raises:
      FileNotFoundError: if ``directory`` holds no checkpoint.
      CheckpointError: if the record is missing or unreadable.
    """
    steps = all_steps(directory)
    if not steps:
        raise _no_checkpoint(directory)
    epoch = steps[-1] if epoch is None else epoch
    manager = _manager(directory, read_only=True)
    try:
        return epoch, _read_meta(manager, epoch)
    except _DamageError as damage:
        raise CheckpointError(f"Checkpoint epoch {epoch} in {directory!r} is damaged: {damage}.") from None
    finally:
        manager.close()


def save_state(directory: str, state: TrainState, epoch: int, sample_shape, weights_only: bool = False,
               allow_nonfinite: bool = False, max_to_keep: Optional[int] = None,
               input_state: Optional[dict] = None) -> None:
    """Save a trainer's state (or its weights only) as the checkpoint for ``epoch``, with the
    sample shape that a fresh trainer needs to build the model before restoring.

    Args:
      directory: the checkpoint directory.
      state: the training state.
      epoch: epochs completed (the checkpoint's label).
      sample_shape: the shape of one sample (or a structure of them) the model was built with.
      weights_only: save ``params`` and ``model_state`` only.
      allow_nonfinite: save a state holding NaN or inf too (refused by default).
      max_to_keep: ``None`` keeps every checkpoint, else only the latest ``max_to_keep`` (Orbax's option).
      input_state: the input pipeline's position (``dlkit.training.pipelines``), JSON, or ``None``.

    Raises:
      NonFiniteCheckpointError: if a saved array holds NaN or inf and not ``allow_nonfinite``.
      CheckpointError: if ``directory`` is a file or cannot be written.
    """
    meta = {"epoch": epoch, "weights_only": weights_only, "sample_shape": encode_shape(sample_shape)}
    if input_state is not None:
        meta["input_state"] = input_state
    save(directory, epoch, to_tree(state, weights_only), meta, max_to_keep, allow_nonfinite)


def restore_state(directory: str, epoch: int, state: TrainState, meta: dict) -> TrainState:
    """``state`` with the parts saved for ``epoch`` restored and verified (``load_state`` for one epoch).

    Args:
      directory: the checkpoint directory.
      epoch: the checkpoint to restore.
      state: a state of the same model and optimizer (gives the shapes).
      meta: the checkpoint's record (``read_meta``); kept for callers, the record is read again with
        the arrays (its ``weights_only`` restores the weights alone).

    Returns:
      The restored ``TrainState``.

    Raises:
      CheckpointError: if the checkpoint is damaged or was saved from a model of other shapes.
    """
    return load_state(directory, epoch, lambda _: state)[2]


_STEP_ENTRY = re.compile(r"^\d+($|\.orbax-checkpoint-tmp)")


def archive(directory: str, after: int = 0) -> Optional[str]:
    """Move the checkpoints of epochs above ``after`` (and half-written leftovers) out of the way,
    into ``<directory>/previous-<k>/`` with the first unused ``k`` (1, 2, ...).

    Args:
      directory: a checkpoint directory.
      after: keep the checkpoints of epochs ``<= after`` (``0``: move every one).

    Returns:
      The folder they went to, or ``None`` if there was nothing to move. With several processes
      the first moves them while the others wait (and get ``None``).
    """
    if jax.process_count() > 1:
        target = _archive(directory, after) if jax.process_index() == 0 else None
        multihost_utils.sync_global_devices(f"dlkit checkpoints archived: {directory}")
        return target
    return _archive(directory, after)


def _archive(directory: str, after: int) -> Optional[str]:
    if not os.path.isdir(directory):
        return None
    moving = sorted(name for name in os.listdir(directory)
                    if _STEP_ENTRY.match(name) and int(re.match(r"\d+", name).group()) > after)
    if not moving:
        return None
    k = 1
    while os.path.exists(os.path.join(directory, f"previous-{k}")):
        k += 1
    target = os.path.join(directory, f"previous-{k}")
    os.makedirs(target)
    for name in moving:
        shutil.move(os.path.join(directory, name), os.path.join(target, name))
    return target


def delete_all(directory: str) -> None:
    """Delete ``directory`` with every checkpoint in it (a missing one is fine).

    Args:
      directory: the checkpoint directory.
    """
    if jax.process_index() == 0:
        shutil.rmtree(directory, ignore_errors=True)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"dlkit checkpoints deleted: {directory}")
