"""Keras' callbacks: EarlyStopping, ReduceLROnPlateau, LearningRateScheduler, TerminateOnNaN,
CSVLogger, TensorBoard and the progress display, on crafted log sequences and real ``fit`` runs."""
import csv
import io
import math
import os
import warnings
from collections.abc import Mapping

os.environ.setdefault("KERAS_BACKEND", "jax")  # only read if Keras is imported, before its first import

import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.callbacks import (
    CallbackList,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ProgbarLogger,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)


# ---------------------------------------------------------------------------- helpers
class FakeModel:
    """What the callbacks touch on a Trainer: stop_training, weights, learning_rate."""

    def __init__(self, learning_rate=0.1):
        self.stop_training = False
        self.weights = [np.zeros(2)]
        self.restored = None
        self.learning_rate = learning_rate
        self.optimizer = self  # Keras' callbacks read model.optimizer.learning_rate

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.restored = [w.copy() for w in weights]
        self.weights = [w.copy() for w in weights]


def drive(callback, values, monitor="val_loss", model=None, extra=None):
    """Run ``callback`` as fit would over epochs whose ``logs[monitor]`` are ``values``; epoch ``e``'s
    weights are ``[e, e]``. Returns (epochs run, model, logs per epoch)."""
    model = model or FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    seen = []
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        model.weights = [np.full(2, float(epoch))]
        logs = {monitor: value, **(extra or {})}
        callback.on_epoch_end(epoch, logs)
        seen.append(logs)
        if model.stop_training:
            break
    callback.on_train_end()
    return len(seen), model, seen


def mlp(hidden, out, **kw):
    return dlkit.Sequential([layers.Dense(hidden, activation="relu"), layers.Dense(out, **kw)])


def constant_gradient_problem():
    """A linear model under MAE with targets far above its outputs: every SGD step on the one
    full batch moves the weights by exactly ``learning_rate * constant``."""
    x = np.random.default_rng(0).uniform(0.5, 1.5, (32, 3)).astype(np.float32)
    y = np.full((32, 1), 1000.0, np.float32)
    trainer = dlkit.Trainer(dlkit.Sequential([layers.Dense(1)]), optimizer=dlkit.optimizers.SGD(0.1),
                            loss="mae", input_shape=(3,))
    return trainer, x, y


def weight_steps(trainer):
    """A callback recording each epoch's weight change (flattened)."""
    steps, before = [], {}

    def begin(epoch, logs=None):
        before["w"] = np.concatenate([w.ravel() for w in trainer.get_weights()])

    def end(epoch, logs=None):
        steps.append(np.concatenate([w.ravel() for w in trainer.get_weights()]) - before["w"])

    return steps, LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)


# ---------------------------------------------------------------------------- EarlyStopping
def test_early_stopping_stops_patience_epochs_after_the_best_and_restores_its_weights():
    values = [1.0, 0.9, 0.8, 0.85, 0.82, 0.7, 0.6]
    ran, model, _ = drive(EarlyStopping(patience=2, restore_best_weights=True), values)
    assert ran == 5  # best at epoch 2; epochs 3 and 4 fail to improve -> stop after epoch 4
    np.testing.assert_array_equal(model.restored[0], [2.0, 2.0])
    ran, model, _ = drive(EarlyStopping(patience=2), values)
    assert ran == 5 and model.restored is None  # restore only when asked
    assert drive(EarlyStopping(patience=3), values)[0] == len(values)  # 0.7 at epoch 5 comes in time


def test_early_stopping_patience_zero_and_start_from_epoch():
    es = EarlyStopping(patience=0)
    assert drive(es, [1.0, 0.5, 0.6, 0.4])[0] == 3 and es.stopped_epoch == 2
    # Epochs before start_from_epoch are not watched: the bad epochs 1 and 2 do not count.
    assert drive(EarlyStopping(patience=1, start_from_epoch=3), [1.0, 2.0, 3.0, 0.5, 0.4, 0.6])[0] == 6
    assert drive(EarlyStopping(patience=1), [1.0, 2.0, 3.0, 0.5, 0.4, 0.6])[0] == 2


def test_early_stopping_restores_the_best_weights_at_train_end_without_stopping():
    ran, model, _ = drive(EarlyStopping(patience=10, restore_best_weights=True), [1.0, 0.5, 0.7, 0.9])
    assert ran == 4  # never stopped, yet Keras 3 puts the best epoch's weights back at the end
    np.testing.assert_array_equal(model.restored[0], [1.0, 1.0])


def test_early_stopping_min_delta():
    values = [1.0, 0.97, 0.96, 0.9, 0.89, 0.88]
    assert drive(EarlyStopping(patience=2), values)[0] == 6  # every epoch improves a little
    es = EarlyStopping(patience=2, min_delta=0.05)
    assert drive(es, values)[0] == 3  # 0.97 and 0.96 are not 0.05 better than 1.0
    assert es.best == 1.0 and es.stopped_epoch == 2
    assert drive(EarlyStopping(patience=2, min_delta=-0.05), values)[0] == 3  # the sign is ignored


def test_early_stopping_baseline():
    assert drive(EarlyStopping(patience=2), [1.0, 1.1, 1.2, 1.3])[0] == 3
    # Never beating the baseline: patience counts from the first epoch.
    assert drive(EarlyStopping(patience=2, baseline=0.5), [1.0, 1.1, 1.2, 1.3])[0] == 2
    # Beating it: as without a baseline.
    assert drive(EarlyStopping(patience=2, baseline=0.5), [0.4, 0.45, 0.46, 0.47])[0] == 3


def test_early_stopping_mode_max_and_auto():
    values = [0.5, 0.6, 0.55, 0.58, 0.59, 0.7]
    assert drive(EarlyStopping(monitor="score", mode="max", patience=2), values, "score")[0] == 4
    assert drive(EarlyStopping(monitor="score", mode="min", patience=2), values, "score")[0] == 3
    assert drive(EarlyStopping(monitor="score", patience=2), values, "score")[0] == 3  # auto: minimize
    for name in ("val_accuracy", "accuracy", "val_acc", "val_sparse_categorical_accuracy"):
        assert drive(EarlyStopping(monitor=name, patience=2), values, name)[0] == 4  # auto: maximize
    with pytest.warns(UserWarning, match="mode 'up' is unknown"):
        es = EarlyStopping(monitor="val_accuracy", mode="up", patience=2)
    assert drive(es, values, "val_accuracy")[0] == 4


def test_early_stopping_warns_like_keras_when_the_monitor_is_missing():
    with pytest.warns(UserWarning, match=r"Early stopping conditioned on metric `val_loss` which is not "
                                         r"available. Available metrics are: loss,accuracy"):
        ran, model, _ = drive(EarlyStopping(patience=0), [1.0, 2.0, 3.0], monitor="loss", extra={"accuracy": 0.5})
    assert ran == 3 and not model.stop_training


@pytest.mark.parametrize("kwargs", [
    dict(patience=0), dict(patience=2), dict(patience=3, min_delta=0.02), dict(patience=2, baseline=0.55),
    dict(patience=1, start_from_epoch=4), dict(patience=2, mode="max"), dict(patience=4, baseline=0.3, mode="max"),
])
def test_early_stopping_matches_keras(kwargs):
    keras = pytest.importorskip("keras")
    kwargs = {"mode": "min", **kwargs, "restore_best_weights": True}
    for seed in range(5):
        values = list(np.round(np.random.default_rng(seed).uniform(0.3, 0.8, 25), 2))
        ours, theirs = EarlyStopping(**kwargs), keras.callbacks.EarlyStopping(**kwargs)
        ran, model, _ = drive(ours, values)
        keras_ran, keras_model, _ = drive(theirs, values)
        assert (ran, ours.stopped_epoch, ours.best_epoch) == (keras_ran, theirs.stopped_epoch, theirs.best_epoch)
        np.testing.assert_array_equal(model.restored[0], keras_model.restored[0])


def test_early_stopping_in_fit_stops_when_val_loss_turns_and_restores_the_best_epoch(digits8x8):
    x, y = digits8x8
    # 150 training samples and a wide net: validation loss bottoms out within a few epochs, then rises.
    trainer = dlkit.Trainer(mlp(128, 10), optimizer=dlkit.optimizers.Adam(0.01),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    recorded = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: recorded.append(trainer.get_weights()))
    es = EarlyStopping(patience=3, restore_best_weights=True)
    history = trainer.fit(x[:150], y[:150], batch_size=50, epochs=60, validation_data=(x[1000:1400], y[1000:1400]),
                          callbacks=[record, es], verbose=0)
    val_loss = history.history["val_loss"]
    best = int(np.argmin(val_loss))
    assert len(val_loss) < 60, "val_loss never stopped improving"
    assert len(val_loss) == best + 3 + 1 and es.stopped_epoch == best + 3 and es.best_epoch == best
    for restored, at_best in zip(trainer.get_weights(), recorded[best], strict=True):
        np.testing.assert_array_equal(restored, at_best)
    assert not all(np.array_equal(a, b) for a, b in zip(trainer.get_weights(), recorded[-1], strict=True))
    evaluated = trainer.evaluate(x[1000:1400], y[1000:1400], batch_size=50, return_dict=True, verbose=0)
    np.testing.assert_allclose(evaluated["loss"], val_loss[best], rtol=1e-5)


# ---------------------------------------------------------------------------- ReduceLROnPlateau
def test_reduce_lr_on_plateau_changes_the_rate_the_optimizer_steps_with():
    trainer, x, y = constant_gradient_problem()
    steps, record = weight_steps(trainer)
    # The loss falls every epoch, so in 'max' mode nothing ever improves: epoch 1 ends with a reduction.
    reduce = ReduceLROnPlateau(monitor="loss", mode="max", factor=0.5, patience=1)
    history = trainer.fit(x, y, batch_size=32, epochs=3, shuffle=False, callbacks=[record, reduce], verbose=0)
    np.testing.assert_allclose(history.history["learning_rate"], [0.1, 0.1, 0.05], rtol=1e-6)
    np.testing.assert_allclose(trainer.learning_rate, 0.025, rtol=1e-6)
    np.testing.assert_allclose(trainer.optimizer.learning_rate, 0.025, rtol=1e-6)
    assert np.all(np.abs(steps[0]) > 1e-3)
    np.testing.assert_allclose(steps[1], steps[0], rtol=1e-4)
    np.testing.assert_allclose(steps[2], 0.5 * steps[1], rtol=1e-4)  # the step shrank by the factor


def test_reduce_lr_on_plateau_patience_min_lr_and_cooldown():
    flat = [1.0] * 8

    def rates(**kwargs):
        model = FakeModel(0.1)
        _, _, logs = drive(ReduceLROnPlateau(monitor="loss", **kwargs), flat, "loss", model=model)
        return [round(entry["learning_rate"], 6) for entry in logs] + [round(model.learning_rate, 6)]

    assert rates(factor=0.5, patience=1) == [0.1, 0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125, 0.001563, 0.000781]
    assert rates(factor=0.5, patience=3) == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025]
    assert rates(factor=0.5, patience=1, min_lr=0.03) == [0.1, 0.1, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03]
    # After a reduction, `cooldown` epochs pass before the patience count starts again.
    assert rates(factor=0.5, patience=1, cooldown=2) == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.00625]
    # An improvement resets the wait; one of less than min_delta does not.
    model = FakeModel(0.1)
    drive(ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2), [1.0, 1.0, 0.5, 0.5, 0.2, 0.2], "loss", model)
    assert model.learning_rate == 0.1
    model = FakeModel(0.1)
    drive(ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=0.6), [1.0, 1.0, 0.5, 0.5], "loss",
          model)
    assert model.learning_rate == 0.05


def test_reduce_lr_on_plateau_rejects_factor_and_warns_on_missing_monitor():
    with pytest.raises(ValueError, match="factor >= 1.0"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.warns(UserWarning, match="Learning rate reduction is conditioned on metric `val_loss`"):
        drive(ReduceLROnPlateau(patience=0), [1.0, 2.0], "loss")


@pytest.mark.parametrize("kwargs", [
    dict(patience=0), dict(patience=2, factor=0.5), dict(patience=1, cooldown=2, factor=0.5),
    dict(patience=2, min_delta=0.05, min_lr=0.004), dict(patience=1, mode="max", cooldown=1),
])
def test_reduce_lr_on_plateau_matches_keras(kwargs):
    keras = pytest.importorskip("keras")
    kwargs = {"mode": "min", **kwargs}
    for seed in range(4):
        values = list(np.round(np.random.default_rng(seed).uniform(0.3, 0.8, 20), 2))
        ours, theirs = FakeModel(0.1), FakeModel(0.1)
        _, _, our_logs = drive(ReduceLROnPlateau(**kwargs), values, model=ours)
        _, _, their_logs = drive(keras.callbacks.ReduceLROnPlateau(**kwargs), values, model=theirs)
        np.testing.assert_allclose([e["learning_rate"] for e in our_logs], [e["learning_rate"] for e in their_logs])
        np.testing.assert_allclose(ours.learning_rate, theirs.learning_rate)


# ---------------------------------------------------------------------------- LearningRateScheduler
def test_learning_rate_scheduler_sets_the_rate_each_epoch_and_logs_it():
    trainer, x, y = constant_gradient_problem()
    steps, record = weight_steps(trainer)
    calls = []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return lr if epoch == 0 else lr * 0.5

    history = trainer.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
                          callbacks=[LearningRateScheduler(schedule), record])
    assert [epoch for epoch, _ in calls] == [0, 1, 2]
    assert all(isinstance(lr, float) for _, lr in calls)
    np.testing.assert_allclose([lr for _, lr in calls], [0.1, 0.1, 0.05], rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"], [0.1, 0.05, 0.025], rtol=1e-6)
    np.testing.assert_allclose(steps[1], 0.5 * steps[0], rtol=1e-4)
    np.testing.assert_allclose(steps[2], 0.25 * steps[0], rtol=1e-4)


def test_learning_rate_scheduler_one_argument_schedules_and_bad_outputs():
    model = FakeModel(0.1)
    drive(LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1)), [1.0, 1.0, 1.0], "loss", model=model)
    assert model.learning_rate == pytest.approx(0.03)
    model = FakeModel(0.1)
    drive(LearningRateScheduler(lambda epoch, lr: np.float32(lr / 2)), [1.0, 1.0], "loss", model=model)
    assert model.learning_rate == pytest.approx(0.025)
    with pytest.raises(ValueError, match="should be a float"):
        drive(LearningRateScheduler(lambda epoch, lr: "fast"), [1.0], "loss")


# ---------------------------------------------------------------------------- TerminateOnNaN
def test_terminate_on_nan_on_crafted_logs():
    for bad in (float("nan"), float("inf"), -float("inf")):
        callback = TerminateOnNaN()
        ran, model, _ = drive(callback, [1.0, 0.5, bad, 0.2], "loss")
        assert ran == 3 and model.stop_training and callback.stopped_epoch == 2
    assert drive(TerminateOnNaN(), [1.0, 0.5, 0.2], "loss")[0] == 3
    with pytest.raises(RuntimeError, match="Epoch 2: invalid loss"):
        drive(TerminateOnNaN(raise_error=True), [1.0, float("nan")], "loss")


def test_terminate_on_nan_stops_a_diverging_fit(capsys):
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    y = (x @ np.arange(1.0, 5.0, dtype=np.float32))[:, None] * 10
    trainer = dlkit.Trainer(dlkit.Sequential([layers.Dense(1)]), optimizer=dlkit.optimizers.SGD(1e6), loss="mse")
    history = trainer.fit(x, y, batch_size=16, epochs=40, callbacks=[TerminateOnNaN()], verbose=0)
    losses = history.history["loss"]
    assert len(losses) < 40 and not math.isfinite(losses[-1]) and all(map(math.isfinite, losses[:-1]))
    assert f"Epoch {len(losses)}: invalid loss" in capsys.readouterr().out


# ---------------------------------------------------------------------------- CSVLogger / TensorBoard / progress
@pytest.fixture(scope="module")
def logged_fit(tmp_path_factory, digits8x8):
    """One short fit on digits with validation, logged by CSVLogger, TensorBoard and ProgbarLogger(2)."""
    x, y = digits8x8
    folder = tmp_path_factory.mktemp("logs")
    trainer = dlkit.Trainer(mlp(16, 10), optimizer=dlkit.optimizers.Adam(0.01),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    out = io.StringIO()
    history = trainer.fit(x[:300], y[:300], batch_size=50, epochs=3, validation_data=(x[1000:1200], y[1000:1200]),
                          callbacks=[CSVLogger(folder / "log.csv"), TensorBoard(folder / "tb"),
                                     ProgbarLogger(verbose=2, file=out)], verbose=0)
    return trainer, history, folder, out.getvalue()


def test_csv_logger_writes_keras_format(logged_fit):
    _, history, folder, _ = logged_fit
    with open(folder / "log.csv", newline="") as f:
        rows = list(csv.reader(f))
    keys = sorted(history.history)
    assert keys == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert rows[0] == ["epoch", *keys]
    assert [int(row[0]) for row in rows[1:]] == [0, 1, 2]
    for i, row in enumerate(rows[1:]):
        assert [float(v) for v in row[1:]] == [history.history[k][i] for k in keys]  # exact round trip


def test_csv_logger_appends_and_matches_keras_bytes(tmp_path):
    epochs = [{"loss": 0.5, "accuracy": 0.25}, {"loss": 0.125, "accuracy": np.float32(0.75)}]
    path = tmp_path / "ours.csv"
    for _ in range(2):  # the second run appends its rows under the same header
        drive(CSVLogger(path, separator=";", append=True), [e["loss"] for e in epochs], "loss",
              extra={"accuracy": 0.25})
    lines = path.read_text().splitlines()
    # Without validation values, Keras adds val_ columns, filled with NA.
    assert lines == ["epoch;accuracy;loss;val_accuracy;val_loss", "0;0.25;0.5;NA;NA", "1;0.25;0.125;NA;NA",
                     "0;0.25;0.5;NA;NA", "1;0.25;0.125;NA;NA"]
    keras = pytest.importorskip("keras")
    for cls, name in ((CSVLogger, "ours2.csv"), (keras.callbacks.CSVLogger, "keras.csv")):
        callback = cls(str(tmp_path / name))
        callback.set_model(FakeModel())
        callback.on_train_begin()
        for epoch, logs in enumerate(epochs):
            callback.on_epoch_end(epoch, {**logs, "val_loss": 1.0 + epoch})
        callback.on_train_end()
    assert (tmp_path / "ours2.csv").read_bytes() == (tmp_path / "keras.csv").read_bytes()


def test_tensorboard_event_files_hold_each_epoch(logged_fit):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, history, folder, _ = logged_fit
    train = EventAccumulator(str(folder / "tb" / "train")).Reload()
    validation = EventAccumulator(str(folder / "tb" / "validation")).Reload()
    assert set(train.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"}
    assert set(validation.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy"}
    for accumulator, prefix in ((train, ""), (validation, "val_")):
        for name in ("loss", "accuracy"):
            events = accumulator.Scalars(f"epoch_{name}")
            assert [e.step for e in events] == [0, 1, 2]
            np.testing.assert_allclose([e.value for e in events], history.history[prefix + name], rtol=1e-6)
    np.testing.assert_allclose([e.value for e in train.Scalars("epoch_learning_rate")], [0.01] * 3, rtol=1e-6)


def test_tensorboard_warns_on_unsupported_keras_options(tmp_path):
    with pytest.warns(UserWarning, match="ignoring write_images, update_freq"):
        TensorBoard(tmp_path, histogram_freq=1, write_images=True, update_freq="batch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TensorBoard(tmp_path, write_graph=True)


def test_progress_verbose_2_prints_one_line_per_epoch(logged_fit):
    _, history, _, out = logged_fit
    lines = out.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines):
        assert line.startswith(f"Epoch {epoch + 1}/3 - ")
        assert f"loss: {history.history['loss'][epoch]:.4f}" in line
        assert f"val_accuracy: {history.history['val_accuracy'][epoch]:.4f}" in line


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Untouchable(Mapping):
    """Batch logs that fail if read (reading them would sync the device)."""

    def __getitem__(self, key):
        raise AssertionError("the progress bar read batch logs")

    def __iter__(self):
        raise AssertionError("the progress bar read batch logs")

    def __len__(self):
        raise AssertionError("the progress bar read batch logs")


def test_progress_bar_on_a_terminal_follows_step_indices_without_reading_logs():
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    bar = ProgbarLogger(file=terminal)
    callbacks = CallbackList([bar], FakeModel(), {"epochs": 2, "verbose": 1, "steps": 4})
    assert callbacks.wants_batches
    for epoch in range(2):
        callbacks.on_epoch_begin(epoch)
        for step in (1, 3):  # batch hooks come once per compiled chunk, with its last step's index
            callbacks.on_train_batch_end(step, _Untouchable())
            assert bar._bar.n == step + 1
        callbacks.on_epoch_end(epoch, {"loss": 0.25, "accuracy": 0.5})
    callbacks.on_train_end()
    text = terminal.getvalue()
    assert "Epoch 1/2" in text and "Epoch 2/2" in text
    assert "4/4" in text and "loss: 0.2500 - accuracy: 0.5000" in text and "\r" in text


def test_progress_off_a_terminal_prints_plain_lines_and_skips_batch_hooks(digits8x8):
    for verbose in (1, 2):
        callbacks = CallbackList([ProgbarLogger(file=io.StringIO())], FakeModel(),
                                 {"epochs": 2, "verbose": verbose, "steps": 4})
        assert not callbacks.wants_batches  # the loop runs no per-step hooks for the display
    assert not CallbackList([ProgbarLogger(verbose=2, file=_Terminal())], None, {"steps": 4}).wants_batches
    x, y = digits8x8
    trainer = dlkit.Trainer(mlp(8, 10), optimizer="sgd",
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    out = io.StringIO()
    history = trainer.fit(x[:100], y[:100], batch_size=25, epochs=2, verbose=0, callbacks=[ProgbarLogger(1, out)])
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines()[:1] == ["Epoch 1/2"]
    assert out.getvalue().splitlines()[1].startswith("4/4 - ")
    assert f"loss: {history.history['loss'][1]:.4f} - accuracy: " in out.getvalue()


def test_every_hook_gets_logs_as_in_keras(digits8x8):
    """Keras passes ``logs`` to every hook (None before an epoch has any), so two-argument lambdas work."""
    x, y = digits8x8[0][:128], digits8x8[1][:128]
    seen = []
    hooks = LambdaCallback(on_train_begin=lambda logs: seen.append(("train_begin", logs)),
                           on_epoch_begin=lambda epoch, logs: seen.append(("epoch_begin", logs)),
                           on_train_end=lambda logs: seen.append(("train_end", logs)))
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.layers.Dense(10)]),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = trainer.fit(x, y, epochs=2, callbacks=[hooks], verbose=0)
    assert seen[:3] == [("train_begin", None), ("epoch_begin", None), ("epoch_begin", None)]
    assert seen[3] == ("train_end", {"loss": history.history["loss"][-1]})
