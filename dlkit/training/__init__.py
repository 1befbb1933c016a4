"""The training loop: ``Trainer``, its explicit ``TrainState`` and pure steps."""
from dlkit.training.state import TrainState
from dlkit.training.trainer import Trainer

__all__ = ["TrainState", "Trainer"]
