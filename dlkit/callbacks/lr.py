"""Learning-rate callbacks: ``ReduceLROnPlateau`` and ``LearningRateScheduler``.

Both set ``self.model.learning_rate``, which on a ``Trainer`` writes the rate into
the optimizer's state: the next step uses it and nothing recompiles. Both add the
rate the epoch ran with to its logs as ``learning_rate`` (so it lands in
``History``), as Keras does.
"""
from __future__ import annotations

import inspect
import numbers
import warnings
from collections.abc import Callable
from typing import Optional

import numpy as np

from dlkit.callbacks.base import Callback
from dlkit.callbacks.monitor import MonitorCallback


def _log_learning_rate(model, logs: Optional[dict]) -> None:
    if logs is not None:
        logs["learning_rate"] = float(model.learning_rate)


class ReduceLROnPlateau(MonitorCallback):
    """Keras' ``ReduceLROnPlateau``: ``lr <- max(lr * factor, min_lr)`` once ``monitor`` has not
    improved for ``patience`` epochs.

    As Keras: an improvement is a change of more than ``min_delta`` in the ``mode``
    direction; after a reduction, ``cooldown`` epochs pass before waiting starts
    again; the rate never goes below ``min_lr``.

    Args:
        monitor: The logs key to watch (default ``'val_loss'``).
        factor: The multiplier of the rate at each reduction, ``< 1``.
        patience: Epochs without improvement before a reduction.
        verbose: If > 0, print each reduction.
        mode: ``'auto'``, ``'min'`` or ``'max'``.
        min_delta: The smallest change that counts as an improvement.
        cooldown: Epochs after a reduction during which no waiting is counted.
        min_lr: The lower bound of the rate.

    Raises:
        ValueError: ``factor >= 1``.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.cooldown_counter = 0
        self.wait = 0

    def _reset(self) -> None:
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        self._reset()

    def in_cooldown(self) -> bool:
        """Whether cooldown epochs after a reduction remain.

        Returns:
            ``cooldown_counter > 0``.
        """
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = {} if logs is None else logs
        _log_learning_rate(self.model, logs)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs.keys())}.", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce(epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce(self, epoch: int) -> bool:
        old_lr = float(self.model.learning_rate)
        if old_lr <= np.float32(self.min_lr):  # the rate is stored as float32
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        self.model.learning_rate = new_lr
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.", flush=True)
        return True


class LearningRateScheduler(Callback):
    """Keras' ``LearningRateScheduler``: set the learning rate at the start of each epoch to
    ``schedule(epoch, lr)``.

    ``epoch`` is 0-based and ``lr`` the current rate (a float); a ``schedule``
    taking one argument is called as ``schedule(epoch)``, as Keras allows. E.g. exponential
    decay, ``lr_e = lr_0 * 0.9 ** e``: ``LearningRateScheduler(lambda epoch, lr: lr * 0.9 if epoch else lr)``.

    Args:
        schedule: ``(epoch, lr) -> float`` or ``(epoch) -> float``.
        verbose: If > 0, print the rate set at each epoch.

    Raises:
        ValueError: (at an epoch's start) ``schedule`` returned something other than a real number.
    """

    def __init__(self, schedule: Callable, verbose: int = 0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose
        self._takes_lr = _accepts_two_args(schedule)

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        if self._takes_lr:
            learning_rate = self.schedule(epoch, float(self.model.learning_rate))
        else:
            learning_rate = self.schedule(epoch)
        if isinstance(learning_rate, np.ndarray) and learning_rate.ndim == 0:
            learning_rate = learning_rate[()]
        if not isinstance(learning_rate, numbers.Real) or isinstance(learning_rate, bool):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {learning_rate!r}")
        self.model.learning_rate = float(learning_rate)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(learning_rate)}.",
                  flush=True)

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        _log_learning_rate(self.model, logs)


def _accepts_two_args(fn: Callable) -> bool:
    """Whether ``fn(epoch, lr)`` is a valid call (else Keras' older ``fn(epoch)``)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: use the current API
        return True
    try:
        signature.bind(0, 0.0)
        return True
    except TypeError:
        return False
