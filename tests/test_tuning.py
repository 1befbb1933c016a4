"""dlkit.tuning: KerasTuner's words on Optuna. The searches that train use 1,500 bundled digits and a
one-hidden-layer MLP, where Adam's learning rate decides everything: after 3 epochs (1,200 digits
trained, 300 validated) lr 1e-6 to 1e-5 gives 11-12% validation accuracy, 1e-4 26%, 1e-3 71%, 3e-3 79%,
1e-2 84%, 3e-2 82%, 0.1 63%, and 0.3 to 10 gives 7-20%. The other searches fit stub trainers: what
they test (the grid, the sampler, the failure rule) does not depend on training."""
import ast
import itertools
import math
import pathlib
import sys

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

import dlkit  # noqa: E402
from dlkit import layers  # noqa: E402
from dlkit.callbacks.base import CallbackList, History  # noqa: E402
from dlkit.tuning import (  # noqa: E402
    BayesianOptimization,
    GridSearch,
    HyperModel,
    HyperParameters,
    Objective,
    RandomSearch,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
GOOD_LR = (1e-3, 5e-2)  # validation accuracy >= 0.7 after 3 epochs (see above)


@pytest.fixture(scope="module")
def digits():
    (x, y), _ = dlkit.datasets.split_digits()
    return x[:1500].reshape(1500, -1), y[:1500]


def build_mlp(hp):
    lr = hp.Float("lr", 1e-6, 10, sampling="log")
    model = dlkit.Sequential([layers.Dense(32, activation="relu"), layers.Dense(10, activation="softmax")])
    return dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(learning_rate=lr),
                         loss="sparse_categorical_crossentropy", metrics=["accuracy"])


class Stub:
    """A trainer whose fit logs ``val_loss = score`` each epoch and runs the callbacks as ``Trainer.fit``."""

    def __init__(self, score):
        self.score, self.stop_training = score, False

    def fit(self, x, y, epochs=1, callbacks=(), **kwargs):
        history = History()
        cbs = CallbackList([*callbacks, history], self, {"epochs": epochs, "verbose": 0, "steps": 1})
        cbs.on_train_begin()
        for epoch in range(epochs):
            cbs.on_epoch_end(epoch, {"loss": self.score, "val_loss": self.score})
            if self.stop_training:
                break
        cbs.on_train_end()
        return history


def test_hyperparameters_reach_optuna_as_suggest_calls():
    trial = optuna.create_study().ask()
    hp = HyperParameters(trial)
    units = hp.Int("units", 4, 64, sampling="log")
    lr = hp.Float("lr", 1e-5, 1e-1, sampling="log")
    rate = hp.Float("rate", 0.0, 0.5, step=0.1)
    act = hp.Choice("act", ["relu", "tanh"])
    flag = hp.Boolean("flag")
    assert hp.Fixed("width", 7) == 7
    d = trial.distributions
    assert isinstance(d["units"], optuna.distributions.IntDistribution) and d["units"].log and d["units"].step == 1
    assert isinstance(d["lr"], optuna.distributions.FloatDistribution) and d["lr"].log and d["lr"].step is None
    assert d["rate"].step == 0.1 and not d["rate"].log
    assert d["act"].choices == ("relu", "tanh") and d["flag"].choices == (False, True)
    assert "width" not in trial.params and hp.values == {"units": units, "lr": lr, "rate": rate, "act": act,
                                                         "flag": flag, "width": 7}
    assert 4 <= units <= 64 and 1e-5 <= lr <= 1e-1 and hp["act"] == act and hp.number == trial.number
    # Outside a search: the given values, else the defaults.
    outside = HyperParameters(values={"lr": 0.3})
    assert outside.Float("lr", 0.1, 1.0) == 0.3 and outside.Int("units", 8, 32) == 8
    assert outside.Choice("act", ["gelu", "relu"]) == "gelu" and outside.Boolean("flag") is False
    with pytest.raises(ValueError, match="step=1 only"):
        HyperParameters().Int("n", 1, 64, step=2, sampling="log")
    with pytest.raises(ValueError, match="reverse_log"):
        HyperParameters().Float("x", 1e-3, 1.0, sampling="reverse_log")
    with pytest.raises(ValueError, match="min_value > 0"):
        HyperParameters().Float("x", 0.0, 1.0, sampling="log")


def test_objective_direction_from_the_name():
    assert Objective("val_loss").direction == "min" and Objective("val_accuracy").direction == "max"
    assert Objective("val_auc", "minimize").direction == "min"
    with pytest.raises(ValueError, match="direction"):
        Objective("val_loss", "sideways")
    tuner = RandomSearch(lambda hp: Stub(1.0), objective="val_accuracy")
    assert tuner.study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_random_search_finds_a_learning_rate_in_the_good_range(digits):
    x, y = digits
    # Seed 5's six log-uniform draws in [1e-6, 10]: 3.6e-5, 1.2, 2.8e-5, 2.7, 0.0026, 0.019 (too small,
    # too large, and two good ones); six draws land in GOOD_LR with probability 0.81.
    tuner = RandomSearch(build_mlp, objective="val_accuracy", max_trials=6, seed=5)
    tuner.search(x, y, epochs=3, batch_size=64, validation_split=0.2)
    table = tuner.results()
    assert len(table) == 6 and set(table["state"]) <= {"COMPLETE", "PRUNED"}
    best = tuner.get_best_hyperparameters()[0]
    assert GOOD_LR[0] <= best["lr"] <= GOOD_LR[1], table
    assert table["val_accuracy"].max() > 0.75
    extremes = table[(table["lr"] < 1e-4) | (table["lr"] > 0.5)]
    assert len(extremes) >= 2 and extremes["val_accuracy"].max() < 0.3, table  # too small and too large fail
    lines = []
    tuner.results_summary(num_trials=3, print_fn=lines.append)
    assert "6 trials complete" in lines[0] and len(lines) == 2 + 1 + 3


def test_grid_search_runs_every_grid_point_exactly_once():
    def build(hp):
        units = hp.Int("units", 8, 24, step=8)
        lr = hp.Choice("lr", [1e-3, 1e-2, 1e-1])
        hp.Fixed("epochs_note", "fixed")
        return Stub(units * lr * (2 if hp.Boolean("wide") else 1))

    tuner = GridSearch(build, objective="val_loss", max_trials=100, seed=0, pruner=False)
    assert tuner.grid == {"units": [8, 16, 24], "lr": [1e-3, 1e-2, 1e-1], "wide": [False, True]}
    tuner.search(None, None, epochs=2, validation_split=0.2)
    tuner.search(None, None, epochs=2, validation_split=0.2)  # the grid is done: nothing more runs
    seen = [(t.params["units"], t.params["lr"], t.params["wide"]) for t in tuner.study.trials]
    assert sorted(seen) == sorted(itertools.product([8, 16, 24], [1e-3, 1e-2, 1e-1], [False, True]))
    assert all(t.state.name == "COMPLETE" for t in tuner.study.trials)
    best = tuner.get_best_hyperparameters(2)
    assert best[0].values == {"units": 8, "lr": 1e-3, "wide": False, "epochs_note": "fixed"}
    assert math.isclose(tuner.study.best_value, 8e-3)
    assert math.isclose(best[1]["units"] * best[1]["lr"] * (2 if best[1]["wide"] else 1), 16e-3)
    with pytest.raises(ValueError, match="needs a step"):
        GridSearch(lambda hp: Stub(hp.Float("lr", 1e-3, 1.0)))


def test_pruning_stops_a_bad_trial_and_the_best_is_retrained(digits):
    x, y = digits
    tuner = RandomSearch(build_mlp, objective="val_accuracy", max_trials=2, seed=0,
                         pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    tuner.study.enqueue_trial({"lr": 1e-2})
    tuner.study.enqueue_trial({"lr": 1e-6})  # far worse than the first trial after its first epoch
    tuner.search(x[:1200], y[:1200], epochs=3, batch_size=64, validation_split=0.25)
    good, bad = tuner.study.trials
    assert good.state == optuna.trial.TrialState.COMPLETE and good.user_attrs["epochs"] == 3
    assert bad.state == optuna.trial.TrialState.PRUNED and bad.user_attrs["epochs"] == 1
    assert list(bad.intermediate_values) == [0] and bad.intermediate_values[0] < 0.3
    trainer = tuner.retrain_best()
    assert isinstance(trainer, dlkit.Trainer) and trainer.epoch == 3
    assert trainer.evaluate(x[1200:], y[1200:], verbose=0, return_dict=True)["accuracy"] > 0.7


@pytest.mark.filterwarnings("ignore:sparse_categorical_crossentropy expects probabilities")
def test_a_failing_trial_is_recorded_and_the_search_goes_on(digits):
    x, y = digits

    def build(hp):
        lr = math.nan if hp.Boolean("diverge") else 1e-2
        model = dlkit.Sequential([layers.Dense(16, activation="relu"), layers.Dense(10, activation="softmax")])
        return dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(learning_rate=lr),
                             loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    tuner = GridSearch(build, objective="val_loss", seed=0)
    tuner.search(x[:600], y[:600], epochs=2, batch_size=64, validation_split=0.25,
                 callbacks=[dlkit.callbacks.TerminateOnNaN(raise_error=True)])
    states = {t.params["diverge"]: t for t in tuner.study.trials}
    assert states[False].state.name == "COMPLETE" and states[True].state.name == "FAIL"
    assert states[True].user_attrs["error"].startswith("RuntimeError: Epoch 1: invalid loss (nan)")
    assert tuner.get_best_hyperparameters()[0]["diverge"] is False
    row = [r for r in tuner.results().to_dict("records") if r["state"] == "FAIL"][0]
    assert row["val_loss"] is None or np.isnan(row["val_loss"])
    # A loss that is never finite fails the trial too, without the callback.
    never = RandomSearch(lambda hp: Stub(math.nan), max_trials=1)
    never.search(None, None, epochs=2, validation_split=0.2)
    assert never.study.trials[0].user_attrs["error"].startswith("FloatingPointError: val_loss was never finite")


def test_trials_failing_in_a_row_stop_the_search():
    def build(hp):
        hp.Float("lr", 1e-3, 1.0, sampling="log")
        raise ValueError("a bug in build")

    tuner = RandomSearch(build, max_trials=10, seed=0)
    with pytest.raises(RuntimeError, match="3 trials in a row failed.*ValueError: a bug in build"):
        tuner.search(None, None, epochs=1, validation_split=0.2)
    assert [t.state.name for t in tuner.study.trials] == ["FAIL"] * 3
    with pytest.raises(RuntimeError, match="No trial has completed"):
        tuner.retrain_best()
    with pytest.raises(ValueError, match="validation_split= or validation_data="):
        tuner.search(None, None, epochs=1)


def test_a_hypermodel_tunes_fit_arguments_and_build_must_return_a_trainer():
    class Batches(HyperModel):
        def build(self, hp):
            return Stub(hp.Float("x", 0.0, 1.0))

        def fit(self, hp, model, *args, **kwargs):
            model.score += hp.Choice("batch_size", [16, 32]) / 100
            return model.fit(*args, batch_size=hp["batch_size"], **kwargs)

    tuner = RandomSearch(Batches(), max_trials=4, seed=0, pruner=False)
    tuner.search(None, None, epochs=1, validation_split=0.2)
    assert all(t.value == pytest.approx(t.params["x"] + t.params["batch_size"] / 100) for t in tuner.study.trials)
    untrained = RandomSearch(lambda hp: dlkit.Sequential([layers.Dense(hp.Int("units", 1, 4))]), max_trials=5)
    with pytest.raises(RuntimeError, match="must return a dlkit.Trainer"):
        untrained.search(None, None, epochs=1, validation_split=0.2)


def test_bayesian_optimization_with_an_optuna_style_build():
    def build(trial):  # Optuna's spelling: the HyperParameters answers it, and passes the rest to the trial
        lr = trial.suggest_float("lr", 1e-6, 10, log=True)
        trial.set_user_attr("number_seen", trial.number)
        return Stub((math.log10(lr) + 2) ** 2)  # best at lr = 1e-2

    tuner = BayesianOptimization(build, max_trials=25, num_initial_points=8, seed=0, pruner=False)
    tuner.search(None, None, epochs=1, validation_split=0.2)
    assert isinstance(tuner.study.sampler, optuna.samplers.TPESampler)
    assert abs(math.log10(tuner.get_best_hyperparameters()[0]["lr"]) + 2) < 0.25
    assert [t.user_attrs["number_seen"] for t in tuner.study.trials] == list(range(25))
    random = RandomSearch(build, max_trials=25, seed=0, pruner=False)
    random.search(None, None, epochs=1, validation_split=0.2)
    # TPE draws its later trials near the best, random search does not.
    tpe_late = np.median([t.value for t in tuner.study.trials[8:]])
    assert tpe_late < np.median([t.value for t in random.study.trials[8:]])


def test_results_without_pandas(monkeypatch):
    tuner = RandomSearch(lambda hp: Stub(hp.Choice("x", [1.0, 2.0])), max_trials=2, seed=0)
    tuner.search(None, None, epochs=1, validation_split=0.2)
    monkeypatch.setitem(sys.modules, "pandas", None)
    rows = tuner.results()
    assert isinstance(rows, list) and [r["trial"] for r in rows] == [0, 1]
    assert {r["x"] for r in rows} <= {1.0, 2.0} and all(r["val_loss"] == r["x"] for r in rows)


def module_level_imports(node) -> list:
    """The modules ``node`` imports when it runs, less those imported inside functions."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        return []
    found = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
        [node.module or ""] if isinstance(node, ast.ImportFrom) else []
    return found + [name for child in ast.iter_child_nodes(node) for name in module_level_imports(child)]


def test_optuna_is_imported_only_when_a_tuner_is_made(monkeypatch):
    for path in pathlib.Path(dlkit.__file__).parent.rglob("*.py"):  # no import of optuna outside a function
        assert "optuna" not in {name.split(".")[0] for name in module_level_imports(ast.parse(path.read_text()))}, path
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r'pip install "dlkit\[tuning\]"'):
        RandomSearch(lambda hp: Stub(1.0))
