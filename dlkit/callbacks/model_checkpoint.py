"""``ModelCheckpoint``: save the training state with Orbax at the end of epochs."""
from __future__ import annotations

import math
import warnings
from typing import Optional

from dlkit.callbacks.monitor import MonitorCallback


class ModelCheckpoint(MonitorCallback):
    """Keras' ``ModelCheckpoint(filepath, monitor, save_best_only, save_weights_only)``.

    ``filepath`` is a directory of Orbax checkpoints, one per saved epoch (named by
    the number of epochs completed); ``Trainer.load_checkpoint(filepath)`` restores
    the latest. The full state (weights, optimizer state, step, RNG) is saved, so
    training resumes exactly; ``save_weights_only=True`` saves the weights alone.
    ``save_best_only=True`` saves only when ``monitor`` improves (``mode`` as in
    ``EarlyStopping``). ``save_freq`` must be ``'epoch'``.

    Args:
        filepath: Directory of the checkpoints (Keras' ``{epoch}`` templates are not filled in).
        monitor: The logs key that ``save_best_only`` watches.
        verbose: If truthy, print a line at each save.
        save_best_only: Save only epochs where ``monitor`` improves (an epoch lacking it warns, is skipped).
        save_weights_only: Save the weights alone, not the optimizer state, step and RNG.
        mode: ``'auto'``, ``'min'`` or ``'max'``.
        save_freq: ``'epoch'`` only.
        initial_value_threshold: The value a first save must beat with ``save_best_only``; ``None``: any.

    Raises:
        ValueError: ``save_freq`` is not ``'epoch'``.
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto", save_freq="epoch",
                 initial_value_threshold: Optional[float] = None):
        super().__init__(monitor=monitor, mode=mode)
        if save_freq != "epoch":
            raise ValueError("ModelCheckpoint saves at epoch ends only: use save_freq='epoch'.")
        self.filepath, self.verbose = str(filepath), verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.best = initial_value_threshold

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
        self.model.save_checkpoint(self.filepath, epoch=epoch + 1, weights_only=self.save_weights_only)
