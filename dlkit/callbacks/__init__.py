"""Callbacks: hooks into ``Trainer.fit`` with Keras' names and ``logs`` dicts."""
from dlkit.callbacks.backup_and_restore import BackupAndRestore
from dlkit.callbacks.base import Callback, CallbackList, History, LambdaCallback
from dlkit.callbacks.early_stopping import EarlyStopping
from dlkit.callbacks.logging import CSVLogger, ProgbarLogger, TensorBoard
from dlkit.callbacks.lr import LearningRateScheduler, ReduceLROnPlateau
from dlkit.callbacks.model_checkpoint import ModelCheckpoint
from dlkit.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = ["Callback", "CallbackList", "History", "LambdaCallback", "EarlyStopping", "ReduceLROnPlateau",
           "LearningRateScheduler", "TerminateOnNaN", "CSVLogger", "TensorBoard", "ProgbarLogger", "ModelCheckpoint",
           "BackupAndRestore"]
