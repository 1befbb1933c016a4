"""Callbacks: hooks into ``Trainer.fit`` with Keras' names and ``logs`` dicts."""
from dlkit.callbacks.base import Callback, CallbackList, History, LambdaCallback

__all__ = ["Callback", "CallbackList", "History", "LambdaCallback"]
