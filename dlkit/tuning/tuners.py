"""KerasTuner's tuners on Optuna: ``RandomSearch``, ``GridSearch`` and ``BayesianOptimization`` (TPE).

A tuner holds one ``optuna.Study`` (``tuner.study``). Each trial builds a ``Trainer`` with
``build(hp)``, fits it with ``search``'s arguments plus a ``PruningCallback``, and scores the
objective's best epoch. A pruned trial is marked ``PRUNED``. A trial that raises (a bug for one
value, a ``TerminateOnNaN(raise_error=True)``, an objective that is never finite) is marked ``FAIL``
with its error in ``trial.user_attrs['error']``. It does not end the search, unless
``max_consecutive_failed_trials`` trials fail in a row.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Optional

from dlkit.tuning import results as results_lib
from dlkit.tuning.hyperparameters import HyperParameters, grid
from dlkit.tuning.objective import PruningCallback, as_objective, import_optuna


class HyperModel:
    """KerasTuner's ``HyperModel``: ``build(hp)`` returns a ``Trainer``; override ``fit`` to tune its
    arguments too (``batch_size=hp.Choice(...)``).

    Args:
        name: A name for the hypermodel (unused by the search).
    """

    def __init__(self, name: Optional[str] = None):
        self.name = name

    def build(self, hp: HyperParameters):
        """Build a ``dlkit.Trainer`` (a compiled model) with ``hp``'s values.

        Args:
            hp: The trial's ``HyperParameters``.

        Returns:
            The ``Trainer``.
        """
        raise NotImplementedError("Subclass HyperModel and define build(hp), or pass a function build(hp).")

    def fit(self, hp: HyperParameters, model, *args, **kwargs):
        """Train ``model`` for one trial: ``model.fit(*args, **kwargs)``.

        Args:
            hp: The trial's ``HyperParameters`` (declare fit's own hyperparameters here).
            model: The ``Trainer`` that ``build`` returned.
            *args: ``search``'s ``x, y``.
            **kwargs: ``search``'s ``fit`` arguments, with the pruning callback in ``callbacks``.

        Returns:
            A ``History`` (or a ``{name: value}`` dict, or the objective's value).
        """
        return model.fit(*args, **kwargs)


class _Function(HyperModel):
    """A ``build(hp)`` function as a ``HyperModel``."""

    def __init__(self, build):
        super().__init__(getattr(build, "__name__", None))
        self._build = build

    def build(self, hp: HyperParameters):
        return self._build(hp)


class Tuner:
    """What the tuners share: the study, ``search``, the results and the best configuration.

    Args:
        hypermodel: ``build(hp) -> Trainer`` (``hp`` is a ``HyperParameters``, which also answers the
            Optuna trial's own methods, so a ``build(trial)`` written for Optuna runs too) or a
            ``HyperModel``.
        objective: A ``History`` key (``'val_loss'`` is minimized, ``'val_accuracy'`` maximized) or an
            ``Objective(name, direction)``.
        max_trials: The trials of the study in all (those of earlier ``search`` calls count).
        seed: The sampler's seed.
        pruner: An ``optuna.pruners`` object; ``None``: Optuna's default ``MedianPruner()`` (a trial
            is pruned when its epoch's objective is worse than the median of earlier trials' at that epoch,
            once 5 trials finished); ``False``: no pruning.
        max_consecutive_failed_trials: Stop the search, raising ``RuntimeError``, once this many trials
            in a row fail.
        storage: An Optuna storage (``'sqlite:///tune.db'``) to keep the study in; ``None``: in memory.
        study_name: The study's name in ``storage`` (an existing one is continued).
    """

    def __init__(self, hypermodel, objective: Any = "val_loss", max_trials: Optional[int] = 10,
                 seed: Optional[int] = None, pruner: Any = None, max_consecutive_failed_trials: int = 3,
                 storage: Any = None, study_name: Optional[str] = None):
        self._optuna = optuna = import_optuna()
        self.hypermodel = hypermodel if isinstance(hypermodel, HyperModel) else _Function(hypermodel)
        self.objective = as_objective(objective)
        self.max_trials = max_trials
        self.seed = seed
        self.max_consecutive_failed_trials = max_consecutive_failed_trials
        pruner = optuna.pruners.NopPruner() if pruner is False else pruner
        self.study = optuna.create_study(direction=self.objective.study_direction, sampler=self._sampler(optuna),
                                         pruner=pruner, storage=storage, study_name=study_name,
                                         load_if_exists=study_name is not None)
        self._fit_args: Optional[tuple] = None

    def _sampler(self, optuna):
        raise NotImplementedError

    def _budget(self) -> int:
        """The trials of the whole study."""
        if self.max_trials is None:
            raise ValueError(f"{type(self).__name__} needs max_trials.")
        return self.max_trials

    def search(self, x=None, y=None, **fit_kwargs) -> None:
        """Run trials until the study holds ``max_trials`` (KerasTuner's ``search``).

        Args:
            x: The training inputs, as ``Trainer.fit`` takes them.
            y: The training targets.
            **fit_kwargs: ``Trainer.fit``'s arguments (``epochs``, ``batch_size``, ``validation_split`` or
                ``validation_data``, ``callbacks`` (copied afresh for each trial) ...); ``verbose``
                defaults to 0.

        Raises:
            ValueError: For a ``'val_'`` objective without validation data.
            RuntimeError: When ``max_consecutive_failed_trials`` trials fail in a row.
        """
        if self.objective.name.startswith("val_") and not fit_kwargs.get("validation_split") \
                and fit_kwargs.get("validation_data") is None:
            raise ValueError(f"The objective {self.objective.name!r} is a validation quantity: pass "
                             f"validation_split= or validation_data= to search().")
        fit_kwargs.setdefault("verbose", 0)
        self._fit_args = (x, y, fit_kwargs)
        done = sum(trial.state.is_finished() for trial in self.study.trials)
        todo = max(self._budget() - done, 0)
        failures = _FailureGuard(self.max_consecutive_failed_trials)
        self.study.optimize(lambda trial: self._run_trial(trial, x, y, fit_kwargs), n_trials=todo,
                            catch=(Exception,), callbacks=[failures])
        failures.check()

    def _run_trial(self, trial, x, y, fit_kwargs: dict) -> float:
        hp = HyperParameters(trial)
        pruning = PruningCallback(trial, self.objective.name)
        start, result = time.perf_counter(), None
        try:
            trainer = _built(self.hypermodel, hp)
            kwargs = {**fit_kwargs, "callbacks": [*_fresh(fit_kwargs.get("callbacks")), pruning]}
            result = self.hypermodel.fit(hp, trainer, x, y, **kwargs)
            if pruning.pruned:
                raise self._optuna.TrialPruned(f"{self.objective.name} at epoch {pruning.pruned_epoch + 1}")
            return self.objective.score(result)
        except Exception as error:
            if not isinstance(error, self._optuna.TrialPruned):
                trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            fixed = {name: hp.values[name] for name, spec in hp.space.items() if spec[0] == "fixed"}
            if fixed:
                trial.set_user_attr("fixed", fixed)
            epochs = getattr(result, "epoch", None)
            if epochs is not None:
                trial.set_user_attr("epochs", len(epochs))

    def results(self):
        """Every trial of the study, in order: KerasTuner's results as a table.

        Returns:
            A pandas ``DataFrame`` if pandas is installed, else a list of dicts: ``trial``, ``state``
            (``COMPLETE``, ``PRUNED``, ``FAIL``), the objective (a pruned trial's best reported value),
            each hyperparameter, ``epochs``, ``seconds`` and ``error``.
        """
        return results_lib.table(results_lib.rows(self.study, self.objective))

    def results_summary(self, num_trials: int = 10, print_fn=print) -> None:
        """Print the best ``num_trials`` finished trials, best first, and how many were pruned or failed.

        Args:
            num_trials: How many trials to show.
            print_fn: Where each line goes.
        """
        results_lib.summary(results_lib.rows(self.study, self.objective), self.objective, num_trials, print_fn)

    def get_best_hyperparameters(self, num_trials: int = 1) -> list:
        """The hyperparameters of the best completed trials, best first.

        Args:
            num_trials: How many.

        Returns:
            A list of ``HyperParameters`` (no trial, the trial's values); ``build(hp)`` rebuilds one.
        """
        sign = 1 if self.objective.direction == "min" else -1
        complete = [t for t in self.study.trials if t.state.name == "COMPLETE"]
        complete.sort(key=lambda t: sign * t.value)
        return [HyperParameters(values={**t.params, **t.user_attrs.get("fixed", {})}) for t in complete[:num_trials]]

    def retrain_best(self, x=None, y=None, **fit_kwargs):
        """Build the best configuration afresh and train it.

        Args:
            x: The training inputs; ``None``: ``search``'s.
            y: The training targets; ``None`` (with ``x`` ``None``): ``search``'s.
            **fit_kwargs: ``fit``'s arguments, replacing those of ``search`` (``epochs=``, ``validation_split=0``
                to train on all of ``x`` ...); the others are ``search``'s.

        Returns:
            The trained ``Trainer``.
        """
        return self._train(self._best(1)[0], x, y, fit_kwargs)

    def get_best_models(self, num_models: int = 1) -> list:
        """The best ``num_models`` configurations, each built afresh and trained as in ``search``
        (the trials' own trainers are not kept).

        Args:
            num_models: How many.

        Returns:
            A list of trained ``Trainer`` objects, best first.
        """
        return [self._train(hp, None, None, {}) for hp in self._best(num_models)]

    def _best(self, num: int) -> list:
        best = self.get_best_hyperparameters(num)
        if not best:
            raise RuntimeError("No trial has completed: run search() first (see results() for failed ones).")
        return best

    def _train(self, hp: HyperParameters, x, y, fit_kwargs: dict):
        if x is None:
            if self._fit_args is None:
                raise ValueError("Pass the training data: search() has not been run on this tuner.")
            x, y = self._fit_args[:2]
        fit_kwargs = {**(self._fit_args[2] if self._fit_args else {}), **fit_kwargs}
        fit_kwargs["callbacks"] = _fresh(fit_kwargs.get("callbacks"))
        trainer = _built(self.hypermodel, hp)
        self.hypermodel.fit(hp, trainer, x, y, **fit_kwargs)
        return trainer


class RandomSearch(Tuner):
    """KerasTuner's ``RandomSearch``: each trial draws every hyperparameter independently
    (Optuna's ``RandomSampler``).

    Args:
        hypermodel: ``build(hp) -> Trainer`` or a ``HyperModel`` (see ``Tuner``).
        objective: A ``History`` key or an ``Objective``.
        max_trials: The trials of the study in all.
        seed: The sampler's seed: the same seed draws the same values.
        pruner: An ``optuna.pruners`` object, ``None`` (``MedianPruner()``) or ``False`` (none).
        max_consecutive_failed_trials: Failed trials in a row that end the search.
        storage: An Optuna storage, or ``None`` (in memory).
        study_name: The study's name in ``storage``.
    """

    def _sampler(self, optuna):
        return optuna.samplers.RandomSampler(seed=self.seed)


class BayesianOptimization(Tuner):
    """KerasTuner's ``BayesianOptimization``, with Optuna's TPE (``TPESampler``) as the model of which
    values score well: ``num_initial_points`` random trials, then trials drawn where TPE expects the best.

    Args:
        hypermodel: As ``Tuner``.
        objective: As ``Tuner``.
        max_trials: As ``Tuner``.
        num_initial_points: The random trials before TPE takes over (default 10, Optuna's).
        seed: As ``Tuner``.
        **kwargs: ``Tuner``'s other arguments (``pruner``, ``storage`` ...).
    """

    def __init__(self, hypermodel, objective: Any = "val_loss", max_trials: Optional[int] = 10,
                 num_initial_points: Optional[int] = None, seed: Optional[int] = None, **kwargs):
        self.num_initial_points = 10 if num_initial_points is None else num_initial_points
        super().__init__(hypermodel, objective, max_trials, seed, **kwargs)

    def _sampler(self, optuna):
        return optuna.samplers.TPESampler(n_startup_trials=self.num_initial_points, seed=self.seed)


class GridSearch(Tuner):
    """KerasTuner's ``GridSearch``: every combination of the hyperparameters' values, each once, in a
    seeded random order (Optuna's ``GridSampler``).

    The grid is read by calling ``build`` once, outside a search, when the tuner is made: a ``Choice``
    contributes its choices, a ``Boolean`` both values, an ``Int`` every ``step``-th integer, a ``Float``
    every ``step`` (a ``Float`` needs one). Every hyperparameter must be declared in that call (none
    only under a condition).

    Attributes:
        grid: ``{name: [values]}``, the grid searched.

    Args:
        hypermodel: ``build(hp) -> Trainer`` or a ``HyperModel`` (see ``Tuner``).
        objective: A ``History`` key or an ``Objective``.
        max_trials: At most this many grid points; ``None`` (the default): the whole grid.
        seed: The seed of the order in which the grid points run.
        **kwargs: ``Tuner``'s other arguments (``pruner``, ``storage`` ...).

    Raises:
        ValueError: For a ``Float`` without a ``step``.
    """

    def __init__(self, hypermodel, objective: Any = "val_loss", max_trials: Optional[int] = None,
                 seed: Optional[int] = None, **kwargs):
        hypermodel = hypermodel if isinstance(hypermodel, HyperModel) else _Function(hypermodel)
        declared = HyperParameters()
        hypermodel.build(declared)
        self.grid = grid(declared.space)
        super().__init__(hypermodel, objective, max_trials, seed, **kwargs)

    def _sampler(self, optuna):
        return optuna.samplers.GridSampler(self.grid, seed=self.seed)

    def _budget(self) -> int:
        points = math.prod(len(values) for values in self.grid.values())
        return points if self.max_trials is None else min(self.max_trials, points)


class _FailureGuard:
    """An Optuna callback stopping the study after ``limit`` failed trials in a row."""

    def __init__(self, limit: int):
        self.limit, self.run, self.last = limit, 0, None

    def __call__(self, study, trial) -> None:
        if trial.state.name != "FAIL":
            self.run = 0
            return
        self.run, self.last = self.run + 1, trial
        if self.run >= self.limit:
            study.stop()

    def check(self) -> None:
        if self.run >= self.limit:
            raise RuntimeError(f"{self.run} trials in a row failed; the last (trial {self.last.number}, "
                               f"{self.last.params}): {self.last.user_attrs.get('error')}")


def _built(hypermodel: HyperModel, hp: HyperParameters):
    """``hypermodel.build(hp)``, checked to be something that ``fit``s (a ``Trainer``)."""
    trainer = hypermodel.build(hp)
    if not callable(getattr(trainer, "fit", None)):
        raise TypeError(f"build(hp) must return a dlkit.Trainer (the compiled model), not {type(trainer).__name__}: "
                        f"wrap the model in dlkit.Trainer(model, optimizer, loss, metrics).")
    return trainer


def _fresh(callbacks) -> list:
    """Deep copies of ``callbacks``, so that no state passes from one trial to the next (the trainer a
    callback saw last is not copied)."""
    return [copy.deepcopy(c, {id(getattr(c, "model", None)): None}) for c in callbacks or ()]
