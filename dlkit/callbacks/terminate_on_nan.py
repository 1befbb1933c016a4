"""``TerminateOnNaN``: stop training when the loss becomes NaN or infinite."""
from __future__ import annotations

import math
from typing import Optional

from dlkit.callbacks.base import Callback


class TerminateOnNaN(Callback):
    """Keras' ``TerminateOnNaN``: stop training at the end of an epoch whose loss is NaN or infinite.

    The check uses the epoch's ``loss`` (the mean over its batches), not each batch:
    a NaN or inf in any batch makes that mean NaN/inf too, and reading per-batch
    logs would cost a device sync per step. ``Trainer.fit`` checks
    ``stop_training`` between epochs, so the epoch that went bad finishes first.
    With ``raise_error=True`` it raises ``RuntimeError`` instead of stopping.
    ``stopped_epoch`` is the 0-based epoch that went bad, or ``None``.

    Args:
        raise_error: Raise instead of printing a message and setting ``stop_training``.

    Raises:
        RuntimeError: With ``raise_error=True``, at the end of an epoch whose loss is not finite.
    """

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error
        self.stopped_epoch: Optional[int] = None

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        self.stopped_epoch = None

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        message = (f"Epoch {epoch + 1}: invalid loss ({float(loss)}), terminating training. Try a lower "
                   f"learning rate, gradient clipping, or check the data for NaN/inf values.")
        if self.raise_error:
            raise RuntimeError(message)
        print(message, flush=True)
        self.stopped_epoch = epoch
        self.model.stop_training = True
