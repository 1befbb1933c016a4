"""``ModelCheckpoint``: save the training state with Orbax at the end of epochs."""
from __future__ import annotations

import math
import string
import warnings
from typing import Optional

from dlkit import checkpoints
from dlkit.callbacks.monitor import MonitorCallback


def _template_fields(filepath: str) -> list:
    """The ``{field}`` names of a Keras file-name template (``'w.{epoch:02d}.h5'``: ``['epoch']``)."""
    try:
        return [field for _, field, _, _ in string.Formatter().parse(filepath) if field is not None]
    except ValueError:  # an unbalanced brace: no template, a plain name
        return []



class ModelCheckpoint(MonitorCallback):
    """Keras' ``ModelCheckpoint(filepath, monitor, save_best_only, save_weights_only)``.

    ``filepath`` is a directory of Orbax checkpoints, one sub-directory per saved epoch
    (named by the number of epochs completed), where Keras writes one file per epoch from a
    name template: a template such as ``'w.{epoch:02d}.h5'`` is refused (``ValueError``);
    pass the directory (``'w'``) and load an epoch with ``Trainer.load_checkpoint('w', epoch=k)``.
    ``Trainer.load_checkpoint(filepath)`` restores the latest intact checkpoint (a damaged
    one is skipped with a warning). The full state (weights, optimizer state, step, RNG) is
    saved, so training resumes exactly; ``save_weights_only=True`` saves the weights alone.
    ``save_best_only=True`` saves only when ``monitor`` improves (``mode`` as in
    ``EarlyStopping``). ``save_freq`` must be ``'epoch'``.

    One directory holds one run. A fresh run (``fit`` starting at epoch 0) into a directory
    that holds checkpoints of an earlier run first moves those into ``filepath/previous-<k>/``
    (``k`` = 1, 2, ...), with a warning, so its own epochs are the latest. A resumed run
    (``load_checkpoint(filepath)`` then ``fit(..., initial_epoch=epoch)``, or a
    ``BackupAndRestore`` rerun) keeps the checkpoints up to the epoch it starts from and moves
    only later ones, which the earlier run wrote past that point. An epoch whose state holds
    NaN or inf is not saved (a warning says so); ``TerminateOnNaN`` still decides whether
    training stops.

    Args:
        filepath: Directory of the checkpoints (no ``{epoch}`` template).
        monitor: The logs key that ``save_best_only`` watches.
        verbose: If truthy, print a line at each save.
        save_best_only: Save only epochs where ``monitor`` improves (an epoch lacking it warns, is skipped).
        save_weights_only: Save the weights alone, not the optimizer state, step and RNG.
        mode: ``'auto'``, ``'min'`` or ``'max'``.
        save_freq: ``'epoch'`` only.
        initial_value_threshold: The value a first save must beat with ``save_best_only``; ``None``: any.

    Raises:
        ValueError: ``save_freq`` is not ``'epoch'``, or ``filepath`` is a Keras file-name template.
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto", save_freq="epoch",
                 initial_value_threshold: Optional[float] = None):
        super().__init__(monitor=monitor, mode=mode)
        if save_freq != "epoch":
            raise ValueError("ModelCheckpoint saves at epoch ends only: use save_freq='epoch'.")
        filepath = str(filepath)
        fields = _template_fields(filepath)
        if fields:
            raise ValueError(
                f"ModelCheckpoint({filepath!r}): dlkit does not fill in Keras' file-name templates "
                f"({', '.join('{' + f + '}' for f in fields)}). It writes a checkpoint directory per run, one "
                f"sub-directory per epoch named by the epochs completed: pass a directory such as "
                f"ModelCheckpoint('checkpoints') and load an epoch with "
                f"trainer.load_checkpoint('checkpoints', epoch=k).")
        self.filepath, self.verbose = filepath, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.best = initial_value_threshold
        self._started = False

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        self._started = False

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        # The first epoch run tells a fresh run (0) from a resumed one (the epoch it continues from),
        # whichever callback (or initial_epoch) chose it.
        if self._started:
            return
        self._started = True
        moved = checkpoints.archive(self.filepath, after=epoch)
        if moved is not None:
            what = "an earlier run" if epoch == 0 else f"a run past epoch {epoch}, where this one resumes"
            warnings.warn(f"ModelCheckpoint: {self.filepath!r} held checkpoints of {what}; moved them to "
                          f"{moved!r} so that this run's epochs are the latest.", stacklevel=2)

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        if self.save_best_only:
            current = (logs or {}).get(self.monitor)
            if current is None:
                warnings.warn(f"Can save best model only with {self.monitor} available, skipping.", stacklevel=2)
                return
            if math.isnan(current) or not self._is_improvement(current, self.best):
                return
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best} to {current:.5f}, "
                      f"saving model to {self.filepath}")
            self.best = current
        elif self.verbose:
            print(f"\nEpoch {epoch + 1}: saving model to {self.filepath}")
        try:
            self.model.save_checkpoint(self.filepath, epoch=epoch + 1, weights_only=self.save_weights_only)
        except checkpoints.NonFiniteCheckpointError as error:
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} not saved. {error}", stacklevel=2)
