"""Models: ``Sequential``, functional ``Model`` and ``Input`` (any Flax Linen module is a model too)."""
from dlkit.models.functional import Model
from dlkit.models.sequential import Input, Sequential

__all__ = ["Input", "Model", "Sequential"]
