"""The callback protocol, as Keras': ``on_train_begin/end``, ``on_epoch_begin/end``,
``on_train_batch_begin/end``.

A callback sees the trainer as ``self.model`` (Keras' spelling) and can stop
training with ``self.model.stop_training = True``. Batch hooks run once per
compiled chunk of steps (``batch`` is the index of its last step), and only
if some callback overrides them; their ``logs`` are the epoch's running means,
read from the device only when a callback looks at them.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Optional


class Callback:
    """Base class; override the hooks you need."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs: Optional[dict] = None) -> None: ...
    def on_train_end(self, logs: Optional[dict] = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: Optional[dict] = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None: ...


class LazyLogs(Mapping):
    """A logs dict computed on first access (so an unread batch log costs no device sync)."""

    def __init__(self, compute: Callable[[], dict]):
        self._compute, self._value = compute, None

    def _logs(self) -> dict:
        if self._value is None:
            self._value = self._compute()
        return self._value

    def __getitem__(self, key):
        return self._logs()[key]

    def __iter__(self):
        return iter(self._logs())

    def __len__(self) -> int:
        return len(self._logs())


class History(Callback):
    """Per-epoch logs: ``history.history['val_loss'][i]`` is epoch ``i``'s value."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class LambdaCallback(Callback):
    """Build a callback from functions, e.g. ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, on_epoch_begin: Optional[Callable] = None, on_epoch_end: Optional[Callable] = None,
                 on_train_begin: Optional[Callable] = None, on_train_end: Optional[Callable] = None,
                 on_train_batch_begin: Optional[Callable] = None, on_train_batch_end: Optional[Callable] = None):
        super().__init__()
        for name, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_train_begin", on_train_begin), ("on_train_end", on_train_end),
                         ("on_train_batch_begin", on_train_batch_begin), ("on_train_batch_end", on_train_batch_end)):
            if fn is not None:
                setattr(self, name, fn)


class CallbackList:
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks, model, params: dict):
        self.callbacks = list(callbacks or [])
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)

    @property
    def wants_batches(self) -> bool:
        """Whether any callback overrides a batch hook."""
        return any(type(c).on_train_batch_begin is not Callback.on_train_batch_begin
                   or type(c).on_train_batch_end is not Callback.on_train_batch_end
                   or "on_train_batch_end" in vars(c) or "on_train_batch_begin" in vars(c)
                   for c in self.callbacks)

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call_all(*args, **kwargs):
            for callback in self.callbacks:
                getattr(callback, hook)(*args, **kwargs)

        return call_all
