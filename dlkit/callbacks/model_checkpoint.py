"""``ModelCheckpoint``: save the model (a ``.keras`` or ``.weights.h5`` file, or the training state
with Orbax) at the end of epochs."""
from __future__ import annotations

import math
import string
import warnings
from typing import Optional

from dlkit import checkpoints, checksums
from dlkit.callbacks.monitor import MonitorCallback

_FILE_KINDS = {".keras": "model", ".weights.h5": "weights"}  # Keras' file suffixes, what each file holds


def _template_fields(filepath: str) -> list:
    """The ``{field}`` names of a Keras file-name template (``'w.{epoch:02d}.h5'``: ``['epoch']``)."""
    try:
        return [field for _, field, _, _ in string.Formatter().parse(filepath) if field is not None]
    except ValueError:  # an unbalanced brace: no template, a plain name
        return []


def _file_kind(filepath: str) -> Optional[str]:
    """``'model'`` for a ``.keras`` file, ``'weights'`` for ``.weights.h5``, ``None`` for an Orbax directory."""
    return next((kind for suffix, kind in _FILE_KINDS.items() if filepath.endswith(suffix)), None)


class ModelCheckpoint(MonitorCallback):
    """Keras' ``ModelCheckpoint(filepath, monitor, save_best_only, save_weights_only)``.

    A ``filepath`` ending in ``.keras`` or ``.weights.h5`` is a file, as in Keras: ``.keras`` gets
    the whole model (``Trainer.save``: architecture, compile arguments, weights, optimizer state;
    ``dlkit.load_model`` reads it), ``.weights.h5`` the weights in Keras 3's HDF5 layout
    (``Trainer.save_weights``). The name may be a template formatted at each save with
    ``epoch`` (counted from 1, as Keras) and the epoch's logs, e.g. ``'ckpt-{epoch:02d}.keras'`` or
    ``'w.{epoch:02d}-{val_loss:.2f}.weights.h5'``; a name without fields is overwritten. Each file
    is written to a temporary name and renamed when complete; an epoch whose weights hold NaN or
    inf is not saved (a warning says so).

    Any other ``filepath`` is a directory of Orbax checkpoints of the full training state (weights,
    optimizer state, step, RNG: training resumes exactly), one sub-directory per saved epoch (named
    by the number of epochs completed); a file-name template is refused there (``ValueError``):
    load an epoch with ``Trainer.load_checkpoint(filepath, epoch=k)``. ``load_checkpoint(filepath)``
    restores the latest intact checkpoint (a damaged one is skipped with a warning);
    ``save_weights_only=True`` saves the weights alone. ``save_best_only=True`` saves only when
    ``monitor`` improves (``mode`` as in ``EarlyStopping``). ``save_freq`` must be ``'epoch'``.

    One directory holds one run. A fresh run (``fit`` starting at epoch 0) into a directory
    that holds checkpoints of an earlier run first moves those into ``filepath/previous-<k>/``
    (``k`` = 1, 2, ...), with a warning, so its own epochs are the latest. A resumed run
    (``load_checkpoint(filepath)`` then ``fit(..., initial_epoch=epoch)``, or a
    ``BackupAndRestore`` rerun) keeps the checkpoints up to the epoch it starts from and moves
    only later ones, which the earlier run wrote past that point. An epoch whose state holds
    NaN or inf is not saved (a warning says so); ``TerminateOnNaN`` still decides whether
    training stops.

    Args:
        filepath: A ``.keras`` or ``.weights.h5`` file name (a template with ``{epoch}`` and logs keys
            allowed), or a directory of Orbax checkpoints (no template).
        monitor: The logs key that ``save_best_only`` watches.
        verbose: If truthy, print a line at each save.
        save_best_only: Save only epochs where ``monitor`` improves (an epoch lacking it warns, is skipped).
        save_weights_only: Save the weights alone (not the optimizer state, step and RNG); a ``.keras``
            file always holds the whole model, so it is refused with this flag, as in Keras.
        mode: ``'auto'``, ``'min'`` or ``'max'``.
        save_freq: ``'epoch'`` only.
        initial_value_threshold: The value a first save must beat with ``save_best_only``; ``None``: any.

    Raises:
        ValueError: ``save_freq`` is not ``'epoch'``, a file-name template for an Orbax directory, or a
            ``.keras`` file with ``save_weights_only=True``.
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto", save_freq="epoch",
                 initial_value_threshold: Optional[float] = None):
        super().__init__(monitor=monitor, mode=mode)
        if save_freq != "epoch":
            raise ValueError("ModelCheckpoint saves at epoch ends only: use save_freq='epoch'.")
        filepath = str(filepath)
        self._kind = _file_kind(filepath)
        fields = _template_fields(filepath)
        if fields and self._kind is None:
            raise ValueError(
                f"ModelCheckpoint({filepath!r}): dlkit fills in Keras' file-name templates "
                f"({', '.join('{' + f + '}' for f in fields)}) for '.keras' and '.weights.h5' files only. Any "
                f"other path is a checkpoint directory per run, one sub-directory per epoch named by the epochs "
                f"completed: pass a directory such as ModelCheckpoint('checkpoints') and load an epoch with "
                f"trainer.load_checkpoint('checkpoints', epoch=k), or a file such as 'ckpt-{{epoch:02d}}.keras'.")
        if self._kind == "model" and save_weights_only:
            raise ValueError(f"ModelCheckpoint({filepath!r}, save_weights_only=True): a '.keras' file holds the whole "
                             f"model; for the weights alone the file name must end in '.weights.h5', as in Keras.")
        self.filepath, self.verbose = filepath, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.best = initial_value_threshold
        self._started = False

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        self._started = False

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        # The first epoch run tells a fresh run (0) from a resumed one (the epoch it continues from),
        # whichever callback (or initial_epoch) chose it.
        if self._started or self._kind is not None:  # files: no directory of runs to tidy
            return
        self._started = True
        moved = checkpoints.archive(self.filepath, after=epoch)
        if moved is not None:
            what = "an earlier run" if epoch == 0 else f"a run past epoch {epoch}, where this one resumes"
            warnings.warn(f"ModelCheckpoint: {self.filepath!r} held checkpoints of {what}; moved them to "
                          f"{moved!r} so that this run's epochs are the latest.", stacklevel=2)

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = logs or {}
        improved = None
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"Can save best model only with {self.monitor} available, skipping.", stacklevel=2)
                return
            if math.isnan(current) or not self._is_improvement(current, self.best):
                return
            improved, self.best = (self.best, current), current
        path = self.filepath if self._kind is None else self._file_path(epoch, logs)
        if self.verbose:
            change = f"{self.monitor} improved from {improved[0]} to {improved[1]:.5f}, " if improved else ""
            print(f"\nEpoch {epoch + 1}: {change}saving model to {path}")
        if self._kind is not None:
            self._save_file(epoch, path)
            return
        try:
            self.model.save_checkpoint(self.filepath, epoch=epoch + 1, weights_only=self.save_weights_only)
        except checkpoints.NonFiniteCheckpointError as error:
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} not saved. {error}", stacklevel=2)

    def _file_path(self, epoch: int, logs: dict) -> str:
        """Keras' ``filepath.format(epoch=epoch + 1, **logs)``."""
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as error:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: {error!r}; the '
                           f"fields are 'epoch' and the logs keys {sorted(logs)}.") from error

    def _save_file(self, epoch: int, path: str) -> None:
        state = self.model.state
        bad = checksums.first_nonfinite({"params": state.params, "model_state": state.model_state})
        if bad is not None:
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} not saved to {path!r}: the weights hold NaN or inf "
                          f"({bad!r}).", stacklevel=3)
            return
        if self._kind == "model":
            self.model.save(path)
        else:
            self.model.save_weights(path)
