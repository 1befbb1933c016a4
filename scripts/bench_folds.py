"""Benchmark: K-fold folds and seed-ensemble members trained side by side (vmapped) against one after another.

    python scripts/bench_folds.py [--task diabetes digits seeds] [--repeats 3] [--epochs N]

Both run in this one process, interleaved (sequential, parallel, sequential, ...), each a whole
``cross_validate`` / ``train_seed_ensemble`` call as a user runs it: fresh trainers, compilation included.
Tasks, course-sized, offline:

* ``diabetes``: Chollet's chapter-4 K-fold (Boston housing there; scikit-learn's bundled
  ``load_diabetes`` here: 442 rows, 10 features, target / 100), 4 folds, Normalization ->
  Dense 64 relu -> Dense 64 relu -> Dense 1, RMSprop, MSE with MAE, batch 16, 40 epochs.
* ``digits``: the bundled MNIST digits (first 8000), 5 folds, 784 -> Dense 64 relu -> Dense 10
  softmax, Adam, batch 128, 5 epochs.
* ``seeds``: a seed ensemble (``train_seed_ensemble``) of 5 such MLPs on all 8000 digits, 5 epochs,
  scored on the other 2000.

Prints each run's seconds, the medians, the ratio parallel / sequential (below 1x the folds side
by side are faster), and the largest difference between the two modes' fold scores.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def diabetes_task(epochs: int):
    from sklearn.datasets import load_diabetes

    import dlkit
    from dlkit import evaluation, layers
    x, y = load_diabetes(return_X_y=True)
    x, y = x.astype(np.float32), (y / 100).astype(np.float32)

    def build():
        model = dlkit.Sequential([dlkit.Input((10,)), layers.Normalization(), layers.Dense(64, "relu"),
                                  layers.Dense(64, "relu"), layers.Dense(1)])
        return dlkit.Trainer(model, "rmsprop", "mse", metrics=["mae"])

    def run(parallel: bool):
        result = evaluation.cross_validate(build, x, y, folds=4, epochs=epochs, batch_size=16, parallel=parallel)
        return str(result), result.scores
    return run


def digits_task(epochs: int):
    import dlkit
    from dlkit import evaluation, layers
    (x, y), _ = dlkit.datasets.split_digits()

    def build():
        model = dlkit.Sequential([dlkit.Input((784,)), layers.Dense(64, "relu"), layers.Dense(10, "softmax")])
        return dlkit.Trainer(model, "adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

    def run(parallel: bool):
        result = evaluation.cross_validate(build, x.reshape(len(x), 784), y, folds=5, epochs=epochs, batch_size=128,
                                           parallel=parallel)
        return str(result), result.scores
    return run


def seeds_task(epochs: int):
    import dlkit
    from dlkit import layers
    from dlkit.models import train_seed_ensemble
    (x, y), (x_test, y_test) = dlkit.datasets.split_digits()
    x, x_test = x.reshape(len(x), 784), x_test.reshape(len(x_test), 784)

    def build(seed):
        model = dlkit.Sequential([dlkit.Input((784,)), layers.Dense(64, "relu"), layers.Dense(10, "softmax")])
        return dlkit.Trainer(model, "adam", "sparse_categorical_crossentropy", metrics=["accuracy"], seed=seed)

    def run(parallel: bool):
        ensemble = train_seed_ensemble(build, x, y, seeds=range(5), epochs=epochs, batch_size=128, parallel=parallel)
        scores = [m.evaluate(x_test, y_test, verbose=0, return_dict=True) for m in ensemble.members]
        accuracy = (ensemble.predict(x_test).argmax(-1) == y_test).mean()
        return f"5 members, test accuracy {[round(s['accuracy'], 4) for s in scores]}, ensemble {accuracy:.4f}", scores
    return run


TASKS = {"diabetes": (diabetes_task, 40), "digits": (digits_task, 5), "seeds": (seeds_task, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="override each task's epochs")
    args = parser.parse_args()
    import jax
    print(f"jax {jax.__version__}, {jax.default_backend()}, {os.cpu_count()} CPUs")
    for name in args.task:
        make, default_epochs = TASKS[name]
        run = make(args.epochs or default_epochs)
        times: dict = {False: [], True: []}
        scores: dict = {}
        for _ in range(args.repeats):
            for parallel in (False, True):
                start = time.perf_counter()
                summary, scores[parallel] = run(parallel)
                times[parallel].append(time.perf_counter() - start)
                print(f"{name}: {'parallel  ' if parallel else 'sequential'} {times[parallel][-1]:.2f} s  {summary}")
        gap = max(abs(a[k] - b[k]) for a, b in zip(scores[False], scores[True]) for k in a)
        seq, par = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name}: median sequential {seq:.2f} s (min {min(times[False]):.2f}), parallel {par:.2f} s "
              f"(min {min(times[True]):.2f}); parallel / sequential {par / seq:.2f}x; largest score gap {gap:.2e}")

if __name__ == "__main__":
    main()
