"""Forecast next year's sunspot number from the previous 12 years and compare with the naive forecast.

    python examples/timeseries_forecast.py

The series is the yearly mean sunspot number 1700-2008 (309 values, shipped
offline with statsmodels). The split is by time: 1700-1915 trains, 1916-1961
validates (early stopping), 1962-2008 tests. Mean and standard deviation come
from the training years alone, so nothing from the future shapes the model.
Windows come from dlkit.utils.timeseries_dataset_from_array; a small Conv1D
network reads each 12-year window (about one solar cycle) and predicts the
next year. It is scored by mean absolute error in sunspot units against the
naive forecast "next year = this year".
"""
from __future__ import annotations

import numpy as np

import dlkit
from dlkit import layers

WINDOW = 12  # years of history per forecast: about one 11-year solar cycle


def load_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """``(years, values)``: int years 1700-2008 and float32 sunspot numbers, in time order."""
    from statsmodels.datasets import sunspots  # a dev dependency; imported here so the module imports without it

    frame = sunspots.load_pandas().data
    return frame["YEAR"].to_numpy().astype(np.int64), frame["SUNACTIVITY"].to_numpy().astype(np.float32)


def split_points(n: int, train: float = 0.7, validation: float = 0.15) -> tuple[int, int]:
    """``(train_end, validation_end)``: steps ``[0, train_end)`` train, ``[train_end, validation_end)``
    validate, the rest test. Contiguous blocks in time order: the model never trains on later years."""
    train_end, validation_end = int(n * train), int(n * (train + validation))
    if not WINDOW < train_end < validation_end < n:
        raise ValueError(f"train={train}, validation={validation} of {n} steps leaves an empty part or a training "
                         f"part shorter than one window ({WINDOW} steps).")
    return train_end, validation_end


def fit_normalizer(values: np.ndarray, train_end: int) -> tuple[float, float]:
    """Mean and standard deviation of the training steps ``values[:train_end]`` only."""
    train = values[:train_end]
    return float(train.mean()), float(train.std())


def normalize(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(values - mean) / std`` as a float32 ``(steps, 1)`` series (one feature per step, for Conv1D)."""
    return ((values - mean) / std).astype(np.float32).reshape(-1, 1)


def make_dataset(series: np.ndarray, first: int, end: int, batch_size: int = 32, shuffle: bool = False,
                 seed: int = 0) -> dlkit.utils.TimeseriesDataset:
    """Windows whose targets are the steps ``[first, end)``; each window is the ``WINDOW`` steps before
    its target. Inputs may reach back before ``first`` (a forecast sees the past), never past a target."""
    if first < WINDOW:
        raise ValueError(f"The first target needs {WINDOW} earlier steps; got first={first}.")
    part = series[first - WINDOW:end]
    # targets[i] belongs to the window starting at i: part[i:i + WINDOW] forecasts part[i + WINDOW].
    return dlkit.utils.timeseries_dataset_from_array(part[:-1], part[WINDOW:], sequence_length=WINDOW,
                                                     batch_size=batch_size, shuffle=shuffle, seed=seed)


def make_datasets(values: np.ndarray, batch_size: int = 32):
    """``(train, validation, test)`` datasets of normalised windows, and the ``(mean, std)`` used."""
    train_end, validation_end = split_points(len(values))
    mean, std = fit_normalizer(values, train_end)
    series = normalize(values, mean, std)
    return (make_dataset(series, WINDOW, train_end, batch_size, shuffle=True),
            make_dataset(series, train_end, validation_end, batch_size),
            make_dataset(series, validation_end, len(series), batch_size)), (mean, std)


def build_model() -> dlkit.Sequential:
    return dlkit.Sequential([
        dlkit.Input((WINDOW, 1)),
        layers.Conv1D(16, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(16, activation="relu"),
        layers.Dense(1),
    ])


def train(train_data, validation_data, epochs: int = 200, seed: int = 0, verbose: int = 0) -> dlkit.Trainer:
    """Adam on the mean absolute error; stops when the validation error stops improving and keeps
    the best epoch's weights."""
    trainer = dlkit.Trainer(build_model(), optimizer=dlkit.optimizers.Adam(learning_rate=3e-3), loss="mae",
                            seed=seed)
    stop = dlkit.callbacks.EarlyStopping(monitor="val_loss", patience=20, restore_best_weights=True)
    trainer.fit(train_data, epochs=epochs, validation_data=validation_data, callbacks=[stop], verbose=verbose)
    return trainer


def targets_of(dataset) -> np.ndarray:
    """Every target of a dataset, in its order, as ``(windows, 1)``."""
    return np.concatenate([y for _, y in dataset])


def mean_absolute_errors(trainer: dlkit.Trainer, test_data, std: float) -> tuple[float, float]:
    """``(model_mae, naive_mae)`` on the test targets, in sunspot units. The naive forecast is each
    window's last value."""
    truth = targets_of(test_data)
    last_values = np.concatenate([x[:, -1] for x, _ in test_data])
    model_mae = float(np.abs(trainer.predict(test_data) - truth).mean()) * std
    naive_mae = float(np.abs(last_values - truth).mean()) * std
    return model_mae, naive_mae


def main(epochs: int = 200, seed: int = 0) -> tuple[float, float]:
    years, values = load_sunspots()
    (train_data, validation_data, test_data), (mean, std) = make_datasets(values)
    train_end, validation_end = split_points(len(values))
    print(f"train {years[0]}-{years[train_end - 1]}, validation {years[train_end]}-{years[validation_end - 1]}, "
          f"test {years[validation_end]}-{years[-1]}; normalised with the training mean {mean:.1f} and std {std:.1f}")
    trainer = train(train_data, validation_data, epochs=epochs, seed=seed)
    model_mae, naive_mae = mean_absolute_errors(trainer, test_data, std)
    print(f"stopped after {trainer.epoch} epochs; test MAE: model {model_mae:.2f}, "
          f"naive last value {naive_mae:.2f} (sunspot number)")
    return model_mae, naive_mae


if __name__ == "__main__":
    main()
