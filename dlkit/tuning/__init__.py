"""Hyperparameter search with KerasTuner's words on Optuna (an optional extra: ``pip install "dlkit[tuning]"``).

``build(hp)`` returns a ``dlkit.Trainer`` built with ``hp.Int``, ``hp.Float(..., sampling="log")``,
``hp.Choice``, ``hp.Boolean`` and ``hp.Fixed``; ``RandomSearch``, ``GridSearch`` and
``BayesianOptimization`` (TPE) run ``search(x, y, epochs=..., validation_split=...)``, prune bad trials
through ``PruningCallback``, and give ``results()``, ``results_summary()``,
``get_best_hyperparameters()`` and ``retrain_best()``. Importing this package does not import
Optuna; making a tuner does, and says how to install it when it is missing.
"""
from dlkit.tuning.hyperparameters import HyperParameters
from dlkit.tuning.objective import Objective, PruningCallback
from dlkit.tuning.tuners import BayesianOptimization, GridSearch, HyperModel, RandomSearch, Tuner

__all__ = ["BayesianOptimization", "GridSearch", "HyperModel", "HyperParameters", "Objective", "PruningCallback",
           "RandomSearch", "Tuner"]
