"""Models: ``Sequential`` and ``Input`` (any Flax Linen module is a model too)."""
from dlkit.models.sequential import Input, Sequential

__all__ = ["Input", "Sequential"]
