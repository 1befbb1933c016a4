"""The callback protocol, as Keras': ``on_train_begin/end``, ``on_epoch_begin/end``,
``on_train_batch_begin/end``.

A callback sees the trainer as ``self.model`` (Keras' spelling) and can stop
training with ``self.model.stop_training = True``. Batch hooks run once per
compiled chunk of steps (``batch`` is the index of its first step in
``on_train_batch_begin``, of its last step in ``on_train_batch_end``), and only
if some callback overrides them; the end hook's ``logs`` are the epoch's running
means, read from the device only when a callback looks at them. There are no
``on_test_*``/``on_predict_*`` hooks.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Optional


class Callback:
    """Keras' ``Callback``: the base class of ``fit``'s hooks; override the ones you need.

    Attributes:
        model: The ``Trainer`` running ``fit`` (set by ``set_model``); ``model.stop_training = True``
            ends training after the current epoch.
        params: ``fit``'s ``{'epochs', 'verbose', 'steps'}`` (``steps`` per epoch; ``None`` for a
            batch iterable), set by ``set_params``.
    """

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        """Keep ``model`` (the ``Trainer``) as ``self.model``.

        Args:
            model: The trainer running ``fit``.
        """
        self.model = model

    def set_params(self, params: dict) -> None:
        """Keep ``fit``'s parameters as ``self.params``.

        Args:
            params: ``{'epochs': ..., 'verbose': ..., 'steps': ...}``.
        """
        self.params = params

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        """Called once when ``fit`` starts.

        Args:
            logs: Not passed by ``fit`` (``None``).
        """

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        """Called once when ``fit`` ends, also after an error or an early stop.

        Args:
            logs: Not passed by ``fit`` (``None``).
        """

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        """Called at the start of each epoch.

        Args:
            epoch: The 0-based epoch index.
            logs: Not passed by ``fit`` (``None``).
        """

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        """Called at the end of each epoch, after validation.

        Args:
            epoch: The 0-based epoch index.
            logs: The epoch's means, e.g. ``{'loss': ..., 'accuracy': ..., 'val_loss': ...}``; a
                callback may add entries (``learning_rate``) that later callbacks and ``History`` see.
        """

    def on_train_batch_begin(self, batch: int, logs: Optional[dict] = None) -> None:
        """Called before each compiled chunk of training steps.

        Args:
            batch: The 0-based index, within the epoch, of the chunk's first step.
            logs: ``None``.
        """

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        """Called after each compiled chunk of training steps.

        Args:
            batch: The 0-based index, within the epoch, of the chunk's last step.
            logs: The epoch's running means so far, read from the device on first access.
        """


class LazyLogs(Mapping):
    """A read-only logs mapping computed on first access (so an unread batch log costs no device sync).

    Args:
        compute: ``() -> dict``, called at most once.
    """

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
    """Keras' ``History``: per-epoch logs, ``history.history['val_loss'][i]`` is epoch ``i``'s value.

    ``Trainer.fit`` adds one (after the other callbacks) and returns it.

    Attributes:
        history: ``{name: [value per epoch]}``.
        epoch: The 0-based indices of the epochs recorded.
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class LambdaCallback(Callback):
    """Keras' ``LambdaCallback``: a callback built from functions,
    e.g. ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``.

    Each function replaces the hook of its name and is called with that hook's arguments as
    ``fit`` passes them: ``fit`` calls ``on_train_begin()``, ``on_train_end()`` and
    ``on_epoch_begin(epoch)`` without ``logs``, so give those functions a ``logs=None`` default.

    Args:
        on_epoch_begin: ``(epoch, logs=None)``, or ``None``.
        on_epoch_end: ``(epoch, logs)``, or ``None``.
        on_train_begin: ``(logs=None)``, or ``None``.
        on_train_end: ``(logs=None)``, or ``None``.
        on_train_batch_begin: ``(batch, logs)``, or ``None``.
        on_train_batch_end: ``(batch, logs)``, or ``None``.
    """

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
    """Keras' ``CallbackList``: ``callbacks.on_<hook>(...)`` calls that hook on every callback, in order.

    Args:
        callbacks: The callbacks (an iterable, or ``None``); each gets ``set_model`` and ``set_params``.
        model: The ``Trainer`` running ``fit``.
        params: ``fit``'s ``{'epochs', 'verbose', 'steps'}``.
    """

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

        # Keras passes ``logs`` to every hook, None where there are none, so a
        # ``LambdaCallback(on_epoch_begin=lambda epoch, logs: ...)`` works.
        arity = 1 if hook in ("on_train_begin", "on_train_end") else 2

        def call_all(*args):
            args = (*args, *(None,) * (arity - len(args)))
            for callback in self.callbacks:
                getattr(callback, hook)(*args)

        return call_all
