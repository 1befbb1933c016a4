"""``EarlyStopping``: stop when a monitored quantity stops improving (Keras 3's rules)."""
from __future__ import annotations

import warnings
from typing import Optional

from dlkit.callbacks.monitor import MonitorCallback


class EarlyStopping(MonitorCallback):
    """Keras' ``EarlyStopping``: stop training once ``monitor`` has not improved for ``patience`` epochs.

    As Keras: an improvement is a change of more than ``min_delta`` in the
    ``mode`` direction ('auto': maximize accuracy-like names, minimize the rest).
    With ``baseline``, the patience counter only resets on epochs that also beat
    the baseline. Epochs before ``start_from_epoch`` are ignored. With
    ``restore_best_weights=True`` the weights of the best epoch are put back at the
    end of training (whether it stopped early or ran all its epochs).
    ``stopped_epoch`` and ``best_epoch`` are 0-based.

    Args:
        monitor: The logs key to watch (default ``'val_loss'``).
        min_delta: The smallest change that counts as an improvement.
        patience: Epochs without improvement after which training stops.
        verbose: If > 0, print when stopping and when restoring weights.
        mode: ``'auto'``, ``'min'`` or ``'max'``.
        baseline: A value the monitor must beat for the patience counter to reset; ``None``: none.
        restore_best_weights: Put the best epoch's weights back when training ends.
        start_from_epoch: Epochs (0-based) before this one are not watched (a warm-up).
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: Optional[float] = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0):
        super().__init__(monitor, mode, min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # The first watched epoch's weights, so there is always something to restore.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch

        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return

        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.", flush=True)
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs: Optional[dict]):
        """``logs[monitor]``, warning when it is absent.

        Args:
            logs: An epoch's logs, or ``None``.

        Returns:
            The monitored value, or ``None`` (after a warning) if ``logs`` lacks it.
        """
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                          f"Available metrics are: {','.join(logs.keys())}", stacklevel=2)
        return value
