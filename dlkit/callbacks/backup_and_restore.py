"""``BackupAndRestore``: a killed ``fit``, rerun with the same callback, continues where it stopped."""
from __future__ import annotations

import os
import sys
import warnings
from typing import Optional

from dlkit import checkpoints
from dlkit.callbacks.base import Callback

# The backups kept: the latest, and the one before it in case the latest is damaged.
_KEEP = 2



class BackupAndRestore(Callback):
    """Keras' ``BackupAndRestore(backup_dir, save_freq="epoch", delete_checkpoint=True)``.

    At every epoch end the full training state (weights, optimizer state, step, RNG) is
    saved to ``backup_dir`` (an Orbax checkpoint directory; the latest two are kept). When
    ``fit`` starts and ``backup_dir`` holds a backup, the latest intact one is restored and
    ``fit`` continues from the epoch after it, skipping the epochs already done: a run that
    was killed (a lost machine, a pre-empted job), rerun with the same script, ends with
    the weights an uninterrupted run would have, bit for bit. The ``History`` of the rerun
    lists the epochs it ran. When training ends normally (every epoch run, or stopped by a
    callback such as ``EarlyStopping``) the backup is deleted if ``delete_checkpoint``;
    after an error or a Ctrl-C it stays, for the next run. An epoch whose state holds NaN
    or inf is not backed up (a warning says so).

    Args:
        backup_dir: The directory of the backups; give each run its own.
        save_freq: ``'epoch'`` only (dlkit resumes at epoch boundaries).
        delete_checkpoint: Delete ``backup_dir`` when training ends normally.

    Raises:
        ValueError: ``save_freq`` is not ``'epoch'``, or ``backup_dir`` is empty.
    """

    def __init__(self, backup_dir: str, save_freq="epoch", delete_checkpoint: bool = True):
        super().__init__()
        if save_freq != "epoch":
            raise ValueError(f"BackupAndRestore(save_freq={save_freq!r}): dlkit backs up and resumes at epoch "
                             f"ends only; use save_freq='epoch'.")
        if not backup_dir:
            raise ValueError("BackupAndRestore needs a backup_dir: the directory to keep the backups in.")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq, self.delete_checkpoint = save_freq, delete_checkpoint
        self._last_epoch: Optional[int] = None  # epochs completed at the last epoch end of this run

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        self._last_epoch = None
        if not checkpoints.all_steps(self.backup_dir):
            return
        epoch = self.model.load_checkpoint(self.backup_dir)
        self.model._restored_epoch = None  # consumed here: fit continues from it
        self.model._start_epoch = self._last_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._last_epoch = epoch + 1
        try:
            checkpoints.save_state(self.backup_dir, self.model.state, epoch + 1, self.model._sample_shape,
                                   max_to_keep=_KEEP)
        except checkpoints.NonFiniteCheckpointError as error:
            warnings.warn(f"BackupAndRestore: epoch {epoch + 1} not backed up. {error}", stacklevel=2)

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        # fit calls this in a ``finally``: an error or Ctrl-C in flight means the run did not finish.
        failed = sys.exc_info()[0] is not None
        finished = not failed and self._last_epoch is not None and (
            self.model.stop_training or self._last_epoch >= self.params.get("epochs", 0))
        if finished and self.delete_checkpoint:
            checkpoints.delete_all(self.backup_dir)
