"""dlkit: Keras' words on Flax Linen, Optax and one jit-compiled training loop."""
from dlkit import (
                   activations,
                   callbacks,
                   datasets,
                   initializers,
                   layers,
                   losses,
                   metrics,
                   mixed_precision,
                   models,
                   optimizers,
                   regularizers,
                   saving,
                   utils,
)
from dlkit.mixed_precision import DTypePolicy
from dlkit.models import Input, Model, Sequential
from dlkit.plotting import plot_history, plot_image_grid, plot_latent_space
from dlkit.saving.loading import load_model
from dlkit.training import Trainer, TrainState

__version__ = "0.1.0"

__all__ = [
    "DTypePolicy", "Input", "Model", "Sequential", "TrainState", "Trainer", "activations", "callbacks", "datasets",
    "initializers", "layers", "load_model", "losses", "metrics", "mixed_precision", "models", "optimizers",
    "plot_history", "plot_image_grid", "plot_latent_space", "regularizers", "saving", "utils",
]
