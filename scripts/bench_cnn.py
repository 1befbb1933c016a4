"""Benchmark: dlkit vs a hand-written Flax+Optax loop vs Keras 3 (JAX backend) on the same CNN.

    python scripts/bench_cnn.py [--epochs 6] [--repeats 3] [--tiny]

MNIST digits bundled with dlkit: first 8000 train, last 2000 test, batch 128.
CNN: Conv2D(32, 3, relu) -> AvgPool(2) -> Conv2D(64, 3, relu) -> AvgPool(2) -> Flatten
-> Dense(256, relu) -> Dense(10); SGD(0.1, momentum 0.9); from-logits sparse cross-entropy.
Each contender runs in its own process (XLA_FLAGS is read once per process), once
with the default environment and once with XLA's YNNPACK fusion turned off
(``--xla_cpu_experimental_ynn_fusion_type=``), the best setting measured for the
others on CPU. Every process of a contender trains from its own seed (0 to repeats - 1 in
the default environment, repeats to 2 * repeats - 1 with YNNPACK off). Prints first-epoch
time (compile included), median steady epoch (with min-max), test accuracy (mean over
the row's seeds, then per contender over all its seeds with the standard error), and
dlkit's ratios; dlkit compiles with its own XLA options, so its two rows are the same
program and the ratios pool them. ``--tiny`` times a 784-32-10 MLP where per-step dispatch
dominates. ``--baseline DIR`` adds dlkit imported from another checkout (a worktree of the
previous commit, say) as the contender ``dlkit-base``, interleaved with the rest, and prints
the pooled steady-epoch ratio; ``--auc-overhead`` adds dlkit on one-hot labels with and
without ``metrics=['AUC']`` and prints that ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BEST_FLAGS = "--xla_cpu_experimental_ynn_fusion_type="
BATCH = 128
ROWS = None  # train and test rows kept (None: all); scripts/gpu_check.py --quick keeps a few


def data(flat: bool):
    import dlkit
    (x_train, y_train), (x_test, y_test) = dlkit.datasets.split_digits()
    (x_train, y_train), (x_test, y_test) = ((a[:ROWS], b[:ROWS]) for a, b in ((x_train, y_train), (x_test, y_test)))
    if flat:
        x_train, x_test = x_train.reshape(-1, 784), x_test.reshape(-1, 784)
    return x_train, y_train, x_test, y_test


def run_dlkit(epochs: int, tiny: bool, seed: int, variant: str = "sparse", steps_per_execution="auto"):
    """``variant``: ``sparse`` (integer labels, accuracy), ``onehot`` (one-hot labels, accuracy) or
    ``auc`` (one-hot labels, accuracy and AUC): the last two price a streaming metric."""
    import dlkit
    from dlkit import layers
    x_train, y_train, x_test, y_test = data(tiny)
    if tiny:
        model = dlkit.Sequential([dlkit.Input((784,)), layers.Dense(32, "relu"), layers.Dense(10)])
    else:
        model = dlkit.Sequential([
            dlkit.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.AveragePooling2D(2),
            layers.Conv2D(64, 3, activation="relu"), layers.AveragePooling2D(2), layers.Flatten(),
            layers.Dense(256, activation="relu"), layers.Dense(10)])
    if variant == "sparse":
        loss, metrics = dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"]
    else:
        loss = dlkit.losses.CategoricalCrossentropy(from_logits=True)
        y_train, y_test = dlkit.utils.to_categorical(y_train, 10), dlkit.utils.to_categorical(y_test, 10)
        metrics = ["accuracy", *([dlkit.metrics.AUC(from_logits=True)] if variant == "auc" else [])]
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.SGD(0.1, momentum=0.9), loss=loss, metrics=metrics,
                            seed=seed, steps_per_execution=steps_per_execution)
    times, began = [], []
    timer = dlkit.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: began.append(time.perf_counter()),
        on_epoch_end=lambda epoch, logs=None: times.append(time.perf_counter() - began[-1]))
    trainer.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[timer])
    return times, trainer.evaluate(x_test, y_test, batch_size=500, verbose=0)[1]


def flax_loop(model, tx, x_train, y_train, x_test, y_test, epochs: int, seed: int):
    """The hand-written Flax+Optax loop: one jitted step per batch, data on the device, the batch
    gathered by index. Returns the epoch times and the test accuracy."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    params = model.init(jax.random.key(seed), x_train[:1])["params"]
    opt_state = tx.init(params)
    x_dev, y_dev = jax.device_put(x_train), jax.device_put(y_train)

    @jax.jit
    def train_step(params, opt_state, index):
        def loss_fn(p):
            logits = model.apply({"params": p}, x_dev[index])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y_dev[index]).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def accuracy(params, x, y):
        return jnp.mean(jnp.argmax(model.apply({"params": params}, x), -1) == y)

    rng, times = np.random.default_rng(seed), []
    for _ in range(epochs):
        began = time.perf_counter()
        perm = rng.permutation(len(x_train))
        for start in range(0, len(perm), BATCH):
            params, opt_state, loss = train_step(params, opt_state, perm[start:start + BATCH])
        loss.block_until_ready()
        times.append(time.perf_counter() - began)
    return times, float(accuracy(params, x_test, y_test))


def run_flax(epochs: int, tiny: bool, seed: int):
    import flax.linen as nn
    import optax
    x_train, y_train, x_test, y_test = data(tiny)

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            if not tiny:
                x = nn.avg_pool(nn.relu(nn.Conv(32, (3, 3), padding="VALID")(x)), (2, 2), (2, 2))
                x = nn.avg_pool(nn.relu(nn.Conv(64, (3, 3), padding="VALID")(x)), (2, 2), (2, 2))
                x = x.reshape(x.shape[0], -1)
            x = nn.relu(nn.Dense(32 if tiny else 256)(x))
            return nn.Dense(10)(x)

    return flax_loop(CNN(), optax.sgd(0.1, momentum=0.9), x_train, y_train, x_test, y_test, epochs, seed)


def run_keras(epochs: int, tiny: bool, seed: int):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras
    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = data(tiny)
    if tiny:
        body = [keras.Input((784,)), keras.layers.Dense(32, activation="relu")]
    else:
        body = [keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"),
                keras.layers.AveragePooling2D(2), keras.layers.Conv2D(64, 3, activation="relu"),
                keras.layers.AveragePooling2D(2), keras.layers.Flatten(), keras.layers.Dense(256, activation="relu")]
    model = keras.Sequential([*body, keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
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
# Contenders beyond the three: (worker, its arguments). ``dlkit-base`` is dlkit from another
# checkout (``--baseline DIR``, e.g. a worktree of the previous commit), run by the same worker code.
VARIANTS = {"dlkit-onehot": ("dlkit", ["--variant", "onehot"]), "dlkit-auc": ("dlkit", ["--variant", "auc"]),
            "dlkit-base": ("dlkit", [])}


def worker(name: str, epochs: int, tiny: bool, seed: int, variant: str) -> None:
    import dlkit
    extra = {"variant": variant} if name == "dlkit" else {}
    times, accuracy = RUNNERS[name](epochs, tiny, seed, **extra)
    print(json.dumps({"times": times, "accuracy": float(accuracy), "dlkit": os.path.dirname(dlkit.__file__)}))


def spawn(script: str, name: str, flags: str, epochs: int, extra: list, baseline: str = ""):
    """Run ``script --worker name`` in a fresh process (XLA_FLAGS is read once per process)."""
    env = dict(os.environ)
    if flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    worker_name, worker_args = VARIANTS.get(name, (name, []))
    if name == "dlkit-base":
        env["PYTHONPATH"] = os.pathsep.join([baseline, *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, script, "--worker", worker_name, "--epochs", str(epochs), *worker_args, *extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        print(f"{name} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if name == "dlkit-base" and not result["dlkit"].startswith(os.path.abspath(baseline)):
        raise SystemExit(f"dlkit-base imported dlkit from {result['dlkit']}, not from {baseline}")
    return result


def compare(script: str, title: str, epochs: int, repeats: int, extra: list = (), baseline: str = "",
            variants: tuple = (), only: tuple = ()) -> None:
    """Run every contender of ``script`` in both XLA environments, interleaved, and print the table;
    ``baseline`` adds dlkit from that checkout, ``variants`` more dlkit configurations (``VARIANTS``),
    ``only`` keeps just the contenders it names (more repeats of a two-way comparison in the same time)."""
    import importlib.util
    names = ["dlkit", *(["dlkit-base"] if baseline else []), *variants, "flax"] + (
        ["keras"] if importlib.util.find_spec("keras") else [])
    if only:
        unknown = set(only) - set(names)
        if unknown:
            raise SystemExit(f"--only names {sorted(unknown)}; the contenders of this run are {names}")
        names = [name for name in names if name in only]
    envs = (("default", ""), ("ynn off", BEST_FLAGS))
    runs: dict = {}
    for r in range(repeats):  # interleaved, so a noisy spell of the machine hits every contender
        for e, (env_name, flags) in enumerate(envs):
            for name in names:  # every process of a contender trains from its own seed
                result = spawn(script, name, flags, epochs, [*extra, "--seed", str(e * repeats + r)], baseline)
                if result:
                    runs.setdefault((name, env_name), []).append(result)
    steps = -(-8000 // BATCH)
    print(f"{title}: {repeats} processes x {epochs} epochs of {steps} steps per contender and environment, "
          f"seeds 0-{repeats - 1} (default env) and {repeats}-{2 * repeats - 1} (ynn off); first = median first "
          f"epoch (compile included); steady = median of every later epoch, spread = min-max of the per-process "
          f"medians, test acc = mean over the row's seeds")
    print(f"{'contender':<12} {'XLA env':<8} {'first s':>8} {'steady s':>9} {'spread':>12} {'ms/step':>8} "
          f"{'test acc':>9}")
    summary, accuracies = {}, {}
    for (name, env_name), results in runs.items():
        first = statistics.median(r["times"][0] for r in results)
        steady = statistics.median(t for r in results for t in r["times"][1:])
        per_process = [statistics.median(r["times"][1:]) for r in results]
        accuracy = statistics.mean(r["accuracy"] for r in results)
        accuracies.setdefault(name, []).extend(r["accuracy"] for r in results)
        summary[(name, env_name)] = (first, steady)
        print(f"{name:<12} {env_name:<8} {first:>8.2f} {steady:>9.3f} {min(per_process):>5.2f}-{max(per_process):<6.2f}"
              f" {1000 * steady / steps:>8.2f} {accuracy:>9.4f}")
    for name, values in accuracies.items():  # the accuracy does not depend on the environment: pool both
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"test accuracy {name}: mean {statistics.mean(values):.4f} +- {spread / len(values) ** 0.5:.4f} "
              f"(standard error; sd {spread:.4f} over {len(values)} seeds)")
    def pooled(contender: str) -> list:
        return [r for (name, _), results in runs.items() if name == contender for r in results]

    def steady(results: list) -> float:
        return statistics.median(t for r in results for t in r["times"][1:])

    for contender, reference in (("dlkit", "dlkit-base"), ("dlkit-auc", "dlkit-onehot")):
        if pooled(contender) and pooled(reference):  # the same program in both environments: pool them
            print(f"pooled steady epoch {contender} / {reference}: "
                  f"{steady(pooled(contender)) / steady(pooled(reference)):.3f}x "
                  f"({steady(pooled(contender)):.3f} s / {steady(pooled(reference)):.3f} s)")
    ours = [r for r in pooled("dlkit")]
    if ours:  # dlkit compiles with its own XLA options, so both environments run the same dlkit program: pool them
        ours_first = statistics.median(r["times"][0] for r in ours)
        ours_steady = statistics.median(t for r in ours for t in r["times"][1:])
        print(f"dlkit, both environments pooled: first {ours_first:.2f} s, steady {ours_steady:.3f} s")
        for env_name, _ in envs:
            others = [(v[1], v[0], n) for (n, e), v in summary.items() if e == env_name and n in ("flax", "keras")]
            if others:
                best_steady, _, best_name = min(others)
                best_first = min(o[1] for o in others)
                print(f"dlkit (pooled) / fastest other ({env_name} env, {best_name}): steady "
                      f"{ours_steady / best_steady:.2f}x, first epoch {ours_first / best_first:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", default="sparse")
    parser.add_argument("--baseline", default="", help="a checkout of another dlkit commit to time as dlkit-base")
    parser.add_argument("--auc-overhead", action="store_true", help="time dlkit with and without metrics=['AUC']")
    parser.add_argument("--only", default="", help="comma-separated contenders to keep, e.g. dlkit,dlkit-base")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.epochs, args.tiny, args.seed, args.variant)
    compare(os.path.abspath(__file__), "tiny MLP" if args.tiny else "CNN", args.epochs, args.repeats,
            ["--tiny"] if args.tiny else [], args.baseline,
            ("dlkit-onehot", "dlkit-auc") if args.auc_overhead else (),
            tuple(name for name in args.only.split(",") if name))


if __name__ == "__main__":
    main()
