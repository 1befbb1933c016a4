"""The training loop: ``Trainer``, its explicit ``TrainState``, and the pure-step contract
(``Batch``, ``apply``, ``step_rng``, ``masked_mean``; see ``dlkit.training.step``)."""
from dlkit.training.state import TrainState
from dlkit.training.step import Applied, Batch, apply, masked_mean, step_rng
from dlkit.training.trainer import Trainer

__all__ = ["Applied", "Batch", "TrainState", "Trainer", "apply", "masked_mean", "step_rng"]
