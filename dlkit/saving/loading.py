"""``dlkit.load_model(path)``: a ``Trainer`` again from a ``.keras`` archive, in any process.

The model is rebuilt from its config (your own modules must be registered with
``@dlkit.saving.register_serializable()`` in a module the loading process imports), compiled
with the saved arguments, built for the saved sample shape, frozen as it was, and given the
saved training state: weights, batch statistics, optimizer state, step and RNG, each array
checked against its SHA-256. Training continues as the saved trainer would have: the next
step is the step it would take.

This module is not imported by ``dlkit.saving``: it needs the ``Trainer``, whose ``save``
needs ``dlkit.saving``; ``dlkit.load_model`` is this module's ``load_model``.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import jax

from dlkit import checkpoints, checksums
from dlkit.saving import archive
from dlkit.saving.model_file import arrays_of
from dlkit.saving.registry import SerializationError
from dlkit.saving.serialization import deserialize
from dlkit.training import devices
from dlkit.training.trainer import Trainer


def load_model(filepath: str, optimizer: Any = None, custom_objects: Optional[dict] = None,
               compile: bool = True) -> Trainer:
    """Keras' ``load_model``: the ``Trainer`` that ``trainer.save(filepath)`` saved.

    Args:
      filepath: a ``.keras`` archive written by ``Trainer.save``.
      optimizer: the optimizer to compile with, when the archive's cannot be rebuilt (an optax
        transformation, a schedule); its state is restored too if it has the saved layout
        (else it starts fresh, with a warning). ``None``: the saved one.
      custom_objects: ``{name: class or function}`` for your own modules, losses or functions
        that are not registered.
      compile: compile with the saved loss, metrics and optimizer and restore the optimizer
        state (``False``: the weights alone, for ``predict``; ``optimizer`` is then ignored).

    Returns:
      A built ``Trainer``: ``trainer.model`` is the rebuilt model.

    Raises:
      FileNotFoundError: no file at ``filepath``.
      dlkit.saving.ArchiveError: the file is damaged (the member or array is named) or not a
        dlkit archive.
      dlkit.saving.SerializationError: a class or function of the config is not registered (named,
        with the decorator), or the saved optimizer cannot be rebuilt and none is given.
    """
    filepath = str(filepath)
    config, metadata, arrays = archive.read(filepath)
    model = deserialize(config["model"], custom_objects)
    settings, compiled = config["trainer"], config["compile"]
    steps = {k: deserialize(settings[k], custom_objects) for k in ("train_step", "test_step") if settings.get(k)}
    arguments = {}
    if compile:
        saved_optimizer = optimizer is None
        if saved_optimizer and compiled["optimizer"] is None:
            raise SerializationError(
                f"load_model({filepath!r}): the model was saved with an optimizer dlkit cannot rebuild "
                f"({compiled['optimizer_not_saved']}). Pass it: load_model(path, optimizer=...) (its state is "
                f"restored if it matches), or load_model(path, compile=False) for the weights alone.")
        arguments = {k: deserialize(compiled[k], custom_objects)
                     for k in ("loss", "metrics", "loss_weights", "weighted_metrics")}
        arguments["optimizer"] = deserialize(compiled["optimizer"], custom_objects) if saved_optimizer else optimizer
    trainer = Trainer(model, seed=settings["seed"], input_shape=checkpoints.decode_shape(settings["sample_shape"]),
                      pad_last_batch=settings.get("pad_last_batch"), **steps, **arguments)
    rules = tuple((path, value) for path, value in settings.get("frozen", ()))
    if rules != trainer.state.frozen:
        trainer._restart_optimizer(rules)
    with_optimizer = compile and _optimizer_fits(trainer, arrays, filepath, strict=optimizer is None)
    _restore(trainer, arrays, with_optimizer, filepath)
    if with_optimizer:
        trainer.epoch = int(settings.get("epoch", 0))
    return trainer


def _optimizer_fits(trainer: Trainer, arrays: dict, filepath: str, strict: bool) -> bool:
    """Whether the saved optimizer state has the layout of ``trainer``'s (raises if ``strict``)."""
    saved = {path: {"shape": list(a.shape), "dtype": a.dtype.name} for path, a in arrays.items()
             if path.startswith("opt_state/")}
    mismatch = checksums.layout_mismatch(saved, {"opt_state": trainer.state.opt_state})
    if mismatch is None:
        return True
    message = f"load_model({filepath!r}): the saved optimizer state does not fit this optimizer: {mismatch}"
    if strict:
        raise archive.ArchiveError(message + ".")
    warnings.warn(message + "; it starts fresh.", stacklevel=3)
    return False


def _restore(trainer: Trainer, arrays: dict, with_optimizer: bool, filepath: str) -> None:
    """Put the saved arrays into ``trainer``'s state (the weights, and the optimizer state, step and RNG)."""
    template = checkpoints.to_tree(trainer.state, weights_only=not with_optimizer)
    wanted = arrays_of(template)
    saved = {path: {"shape": list(arrays[path].shape), "dtype": arrays[path].dtype.name} for path in arrays
             if path.split("/")[0] in template}
    mismatch = checksums.layout_mismatch(saved, template)
    if mismatch is not None:
        raise archive.ArchiveError(f"load_model({filepath!r}): the saved arrays do not fit the rebuilt model: "
                                   f"{mismatch}. Was a registered class changed since the model was saved?")
    restored = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), [arrays[path] for path in wanted])
    state = checkpoints.from_tree(trainer.state, restored)
    trainer.state = jax.device_put(state, devices.replicated(trainer.mesh))
