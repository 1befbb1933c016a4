"""What ``EarlyStopping`` and ``ReduceLROnPlateau`` share: a monitored quantity and
Keras' rule for whether a new value improves on a reference."""
from __future__ import annotations

import operator
import warnings
from typing import Optional

from dlkit.callbacks.base import Callback

# Quantities that get better as they grow (``mode='auto'`` maximizes them); everything else,
# losses and errors, is minimized. A name containing "acc" (accuracy, acc, binary_accuracy ...)
# is maximized, as in Keras.
_HIGHER_IS_BETTER = ("auc", "precision", "recall", "f1_score", "fbeta_score", "r2_score", "iou")


def auto_mode(monitor: str) -> str:
    """``'max'`` for accuracy-like names (``acc``, ``val_accuracy``, ``auc`` ...), else ``'min'``.

    Args:
        monitor: A logs key, with or without the ``val_`` prefix.

    Returns:
        ``'max'`` if the name (less ``val_``) contains ``acc`` or one of ``auc``, ``precision``,
        ``recall``, ``f1_score``, ``fbeta_score``, ``r2_score``, ``iou``; else ``'min'``.
    """
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "min"
    if "acc" in name or any(word in name for word in _HIGHER_IS_BETTER):
        return "max"
    return "min"


class MonitorCallback(Callback):
    """A callback watching ``logs[monitor]`` in ``mode`` 'min', 'max' or 'auto'.

    A value improves on a reference if it is lower by more than ``min_delta`` (``'min'``) or
    higher by more than ``min_delta`` (``'max'``); ``'auto'`` picks by name (``auto_mode``).

    Args:
        monitor: The logs key to watch.
        mode: ``'auto'``, ``'min'`` or ``'max'``; anything else warns and falls back to ``'auto'``.
        min_delta: The smallest change that counts as an improvement (its absolute value is used).
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.best: Optional[float] = None
        resolved = auto_mode(monitor) if mode == "auto" else mode
        self.monitor_op = operator.lt if resolved == "min" else operator.gt

    def _is_improvement(self, current: float, reference: Optional[float]) -> bool:
        """Better than ``reference`` by more than ``min_delta``; anything beats ``None``."""
        if reference is None:
            return True
        if self.monitor_op is operator.lt:
            return bool(current + self.min_delta < reference)
        return bool(current - self.min_delta > reference)
