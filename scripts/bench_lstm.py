"""Benchmark: dlkit vs a hand-written Flax+Optax loop vs Keras 3 (JAX backend) on the same LSTM.

    python scripts/bench_lstm.py [--epochs 6] [--repeats 3]

MNIST rows task: each bundled digit is 28 time steps of 28 features; first 8000
train, last 2000 test, batch 128. Model: LSTM(128) (last output) -> Dense(10);
Adam(1e-3); from-logits sparse cross-entropy. Flax uses ``nn.RNN(nn.OptimizedLSTMCell(128))``
over a jitted step with the data on the device. Same protocol and table as
``scripts/bench_cnn.py`` (whose data loader and constants are imported): one
process per contender, default XLA environment and YNNPACK fusion off,
interleaved repeats, every process from its own seed; prints first-epoch time
(compile included), median steady epoch (with min-max of the per-process medians),
test accuracy (per row, then per contender over all its seeds with the standard
error), and dlkit's ratios; ``--baseline DIR`` times dlkit from another checkout too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cnn import BATCH, compare, flax_loop  # noqa: E402
from bench_cnn import data as cnn_data

UNITS = 128


def data():
    x_train, y_train, x_test, y_test = cnn_data(flat=False)
    return x_train.reshape(-1, 28, 28), y_train, x_test.reshape(-1, 28, 28), y_test


def run_dlkit(epochs: int, seed: int, steps_per_execution="auto", use_cudnn="auto"):
    import dlkit
    from dlkit import layers
    x_train, y_train, x_test, y_test = data()
    model = dlkit.Sequential([dlkit.Input((28, 28)), layers.LSTM(UNITS, use_cudnn=use_cudnn), layers.Dense(10)])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(1e-3),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                            seed=seed, steps_per_execution=steps_per_execution)
    times, began = [], []
    timer = dlkit.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: began.append(time.perf_counter()),
        on_epoch_end=lambda epoch, logs=None: times.append(time.perf_counter() - began[-1]))
    trainer.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[timer])
    return times, trainer.evaluate(x_test, y_test, batch_size=500, verbose=0)[1]


def run_flax(epochs: int, seed: int):
    import flax.linen as nn
    import optax
    x_train, y_train, x_test, y_test = data()

    class RowLSTM(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.RNN(nn.OptimizedLSTMCell(UNITS))(x)[:, -1]
            return nn.Dense(10)(x)

    return flax_loop(RowLSTM(), optax.adam(1e-3), x_train, y_train, x_test, y_test, epochs, seed)


def run_keras(epochs: int, seed: int):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras
    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = data()
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(UNITS), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.began)

    model.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[Timer()])
    return times, model.evaluate(x_test, y_test, batch_size=500, verbose=0)[1]


RUNNERS = {"dlkit": run_dlkit, "flax": run_flax, "keras": run_keras}


def worker(name: str, epochs: int, seed: int) -> None:
    import dlkit
    times, accuracy = RUNNERS[name](epochs, seed)
    print(json.dumps({"times": times, "accuracy": float(accuracy), "dlkit": os.path.dirname(dlkit.__file__)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default="", help="a checkout of another dlkit commit to time as dlkit-base")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.epochs, args.seed)
    compare(os.path.abspath(__file__), "LSTM rows", args.epochs, args.repeats, baseline=args.baseline)


if __name__ == "__main__":
    main()
