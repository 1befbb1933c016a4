"""``timeseries_dataset_from_array`` gives Keras' windows and feeds ``Trainer``; Conv1D learns on sequences."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported anywhere

import chex
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.utils import timeseries_dataset_from_array

CONFIGS = [  # (data shape, number of targets or None, keyword arguments)
    ((100, 3), 100, dict(sequence_length=7, sequence_stride=2, sampling_rate=3, batch_size=5,
                          start_index=4, end_index=90)),
    ((99,), None, dict(sequence_length=10, sequence_stride=3, sampling_rate=2, batch_size=8)),
    ((40, 2), 40, dict(sequence_length=5, batch_size=None, start_index=3)),
    ((30,), 30, dict(sequence_length=30, batch_size=128)),  # exactly one window
    ((50,), 20, dict(sequence_length=5, batch_size=6)),  # fewer targets than windows: 20 windows
]


def _series(shape, num_targets):
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return data, (None if num_targets is None else np.arange(num_targets, dtype=np.int32) * 10)


def _keras_items(data, targets, kwargs):
    """Keras' own batches (its 'grain' format: Keras' 'tf' format needs TensorFlow) as numpy."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("grain")
    dataset = keras.utils.timeseries_dataset_from_array(data, targets, format="grain", **kwargs)
    as_numpy = lambda item: tuple(map(np.asarray, item)) if isinstance(item, tuple) else np.asarray(item)  # noqa: E731
    return [as_numpy(item) for item in dataset]


@pytest.mark.parametrize("shape, num_targets, kwargs", CONFIGS)
def test_windows_equal_keras(shape, num_targets, kwargs):
    data, targets = _series(shape, num_targets)
    ours = list(timeseries_dataset_from_array(data, targets, **kwargs))
    theirs = _keras_items(data, targets, kwargs)
    assert len(ours) == len(theirs) > 0
    for mine, keras_item in zip(ours, theirs):
        chex.assert_trees_all_equal(mine, keras_item, strict=False)


def test_keras_docstring_example_windows():
    """Keras' example 1: indices 0..98, length 10, rate 2, stride 3 -> 27 windows, the last [78 .. 96]."""
    dataset = timeseries_dataset_from_array(np.arange(99), None, sequence_length=10, sequence_stride=3,
                                            sampling_rate=2, batch_size=None)
    windows = np.stack(list(dataset))
    np.testing.assert_array_equal(windows[0], np.arange(0, 20, 2))
    np.testing.assert_array_equal(windows[1], np.arange(3, 23, 2))
    np.testing.assert_array_equal(windows[-1], np.arange(78, 97, 2))
    assert len(windows) == len(dataset) == 27


def test_targets_align_with_window_starts_and_next_step_forecasting():
    """``targets[i]`` belongs to the window starting at ``data[i]``: with ``data[:-1]`` and
    ``targets=data[L:]`` every window is followed by its target."""
    series = np.arange(100, 150, dtype=np.float32)[:, None]
    batches = list(timeseries_dataset_from_array(series[:-1], series[6:], sequence_length=6, batch_size=16))
    x, y = (np.concatenate(parts) for parts in zip(*batches))
    chex.assert_shape((x, y), [(44, 6, 1), (44, 1)])
    np.testing.assert_array_equal(x[:, -1] + 1, y)  # the target is the step after the window
    np.testing.assert_array_equal(x[:, 0, 0], np.arange(100, 144))
    assert [len(b[0]) for b in batches] == [16, 16, 12]


def test_shuffle_reorders_each_pass_reproducibly_and_keeps_pairs():
    data = np.arange(200, dtype=np.float32)
    make = lambda: timeseries_dataset_from_array(data, data * 2, sequence_length=4, batch_size=32,  # noqa: E731
                                                 shuffle=True, seed=3)
    dataset = make()
    first, second = ([np.concatenate(part) for part in zip(*dataset)] for _ in range(2))
    np.testing.assert_array_equal(first[0][:, 0] * 2, first[1])  # each window keeps its target
    assert not np.array_equal(first[0], second[0])  # a new order each pass
    np.testing.assert_array_equal(np.sort(first[0][:, 0]), np.arange(197))  # the same windows, once each
    np.testing.assert_array_equal(np.concatenate([x for x, _ in make()]), first[0])  # the seed fixes the orders


@pytest.mark.parametrize("kwargs, message", [
    (dict(sequence_length=21), "spans 21 steps"),
    (dict(sequence_length=8, sampling_rate=3), "spans 22 steps"),
    (dict(sequence_length=5, start_index=10, end_index=14), r"data\[10:14\] has only 4"),
    (dict(sequence_length=0), "sequence_length must be a positive integer"),
    (dict(sequence_length=2.5), "sequence_length must be a positive integer"),
    (dict(sequence_length=3, sequence_stride=0), "sequence_stride must be"),
    (dict(sequence_length=3, sampling_rate=-1), "sampling_rate must be"),
    (dict(sequence_length=3, batch_size=0), "batch_size must be"),
    (dict(sequence_length=3, start_index=20), r"start_index must be in \[0, 20\)"),
    (dict(sequence_length=3, start_index=5, end_index=5), r"end_index must be in \(5, 20\]"),
    (dict(sequence_length=3, end_index=21), r"end_index must be in \(0, 20\]"),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        timeseries_dataset_from_array(np.zeros((20, 2)), None, **kwargs)


def test_accepts_the_whole_data_as_one_window():
    """``end_index=len(data)`` and a stride past the end, which Keras refuses, give the one window."""
    dataset = timeseries_dataset_from_array(np.arange(5), None, sequence_length=5, sequence_stride=5, end_index=5)
    np.testing.assert_array_equal(np.concatenate(list(dataset)), [np.arange(5)])


def test_targets_that_end_before_the_first_window_are_refused():
    with pytest.raises(ValueError, match="targets has shape"):
        timeseries_dataset_from_array(np.zeros(20), np.zeros(5), sequence_length=3, start_index=5)
    with pytest.raises(ValueError, match="time axis"):
        timeseries_dataset_from_array(np.float32(1.0), None, sequence_length=1)


def test_trainer_fits_evaluates_and_predicts_on_the_windows():
    """The dataset is re-iterable, so fit runs it for several epochs; a linear model learns the
    next step of a sine wave (a linear recurrence, so the fit is near exact)."""
    wave = np.sin(np.arange(300) * 0.3).astype(np.float32)[:, None]
    dataset = timeseries_dataset_from_array(wave[:-1], wave[5:], sequence_length=5, batch_size=64,
                                            shuffle=True, seed=0)
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((5, 1)), layers.Flatten(), layers.Dense(1)]),
                            optimizer=dlkit.optimizers.Adam(0.05), loss="mse")
    history = trainer.fit(dataset, epochs=30, verbose=0)
    assert len(history.history["loss"]) == 30
    assert history.history["loss"][-1] < 1e-3 < history.history["loss"][0]
    assert trainer.evaluate(dataset, verbose=0) < 1e-3
    chex.assert_shape(trainer.predict(dataset), (295, 1))


def _digit_rows(digits8x8):
    """scikit-learn's digits as sequences: 8 steps (image rows) of 8 features."""
    x, y = digits8x8
    return (x[:1500].reshape(-1, 8, 8), y[:1500]), (x[1500:].reshape(-1, 8, 8), y[1500:])


def _conv1d_accuracy(digits8x8, freeze_convolutions: bool, seed: int = 0) -> float:
    (x_train, y_train), (x_test, y_test) = _digit_rows(digits8x8)
    model = dlkit.Sequential([
        dlkit.Input((8, 8)),
        layers.Conv1D(32, 3, padding="same", activation="relu"), layers.MaxPooling1D(2),
        layers.Conv1D(64, 3, padding="same", activation="relu"), layers.GlobalMaxPooling1D(),
        layers.Dense(10),
    ])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(3e-3), metrics=["accuracy"], seed=seed,
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.build(x_train[:2])
    initial = trainer.get_weights()
    if freeze_convolutions:
        trainer.freeze("conv1d", "conv1d_1")
    trainer.fit(x_train, y_train, batch_size=32, epochs=10, verbose=0)
    kernels_moved = not np.array_equal(trainer.get_weights()[0], initial[0])
    assert kernels_moved != freeze_convolutions
    return trainer.evaluate(x_test, y_test, verbose=0)[1]


def test_conv1d_learns_digit_rows(digits8x8):
    """Conv1D + MaxPooling1D + GlobalMaxPooling1D on digit rows: >= 0.95 held-out accuracy (chance is
    0.1). With the convolutions frozen at their random start the same head stays near 0.8, so the bar
    needs the convolutions to learn."""
    learned = _conv1d_accuracy(digits8x8, freeze_convolutions=False)
    frozen = _conv1d_accuracy(digits8x8, freeze_convolutions=True)
    assert learned >= 0.95
    assert frozen < learned - 0.08
