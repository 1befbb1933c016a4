"""The checks that need a GPU, in one short run (a few minutes on one GPU, compiles included):

    python scripts/gpu_check.py [--epochs 3] [--quick]

(a) cuDNN: ``LSTM(use_cudnn=True)`` (the kernel of ``jax.experimental.rnn``) against
``LSTM(use_cudnn=False)`` (dlkit's own recurrence) on the same weights, in float32 matmul precision:
outputs, final states and gradients (weights, inputs, initial states) agree to ``atol=1e-4``, for the
last output, ``return_sequences`` + ``go_backwards`` + ``return_state``, training-mode input dropout, and
``vmap(grad)`` over two members; the compiled program must hold cuDNN's custom call (``cudnn_rnn_ffi``).
(b) Speed: one epoch of the CNN (the ``examples/mnist_cnn.py`` network, ``scripts/bench_cnn.py``'s
setting) and of LSTM(128) on MNIST rows (``scripts/bench_lstm.py``), on the bundled digits, for dlkit at
``steps_per_execution`` 1 and 8 (and, for the LSTM, its own recurrence), the hand-written Flax+Optax loop
and Keras 3 on the JAX backend (skipped where keras is not installed), all in this one process. Prints the
first (compile included) and steady (median of the later) epoch times and each one's ratio to the fastest
of Flax and Keras, and writes everything as JSON to ``$OUT/gpu_check.json`` when ``OUT`` is set.

``--quick`` shrinks everything (256 digits, 2 epochs, LSTM(16)) so the script runs on a CPU too; there,
with no GPU, check (a) runs ``cudnn.reference_kernels()`` (``lstm_ref``) in the kernel's place and says so.
The exit status is 1 if check (a) fails.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_cnn  # noqa: E402
import bench_lstm  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from dlkit import layers  # noqa: E402
from dlkit.layers import cudnn  # noqa: E402

ATOL = 1e-4


@contextlib.contextmanager
def stand_in_kernel():
    """Without a GPU: ``lstm_ref`` in the kernel's place, the layers told they run on a GPU."""
    saved = cudnn.backend, cudnn.kernels
    cudnn.backend, cudnn.kernels = (lambda: "gpu"), cudnn.reference_kernels
    try:
        yield
    finally:
        cudnn.backend, cudnn.kernels = saved


def _max_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def check_cudnn(quick: bool) -> dict:
    """Check (a): the largest differences between the two paths, per case, and whether all pass."""
    batch, steps, features, units = (4, 7, 5, 6) if quick else (64, 28, 28, 128)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, steps, features)), jnp.float32)
    h0, c0 = jnp.asarray(rng.standard_normal((2, batch, units)), jnp.float32)
    params = layers.LSTM(units, use_cudnn=False).init(jax.random.key(0), x)["params"]
    params = {**params, "bias": jnp.asarray(rng.standard_normal(4 * units), jnp.float32)}

    def program(layer, training):
        def loss(params, x, h0, c0):
            out = layer.apply({"params": params}, x, initial_state=[h0, c0], training=training,
                              rngs={"dropout": jax.random.key(1)})
            return sum(jnp.sum(jnp.sin(o)) for o in (out if isinstance(out, list) else [out])), out
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))

    cases = {"last output": ({}, False),
             "sequences, go_backwards, state": (dict(return_sequences=True, go_backwards=True, return_state=True),
                                                False),
             "input dropout (training)": (dict(dropout=0.3, return_sequences=True), True)}
    report, ok = {}, True
    for name, (config, training) in cases.items():
        ours = program(layers.LSTM(units, use_cudnn=False, **config), training)(params, x, h0, c0)
        fast = program(layers.LSTM(units, use_cudnn=True, **config), training)
        theirs = fast(params, x, h0, c0)
        entry = {"forward": _max_diff(ours[0][1], theirs[0][1]), "gradients": _max_diff(ours[1], theirs[1])}
        if jax.default_backend() == "gpu":
            entry["cudnn_call_in_program"] = "dnn_rnn" in fast.lower(params, x, h0, c0).compile().as_text()
            ok &= entry["cudnn_call_in_program"]
        report[name] = entry
        ok &= entry["forward"] <= ATOL and entry["gradients"] <= ATOL

    members = jax.tree.map(lambda a: jnp.stack([a, a * 0.9]), params)
    xs = jnp.stack([x, x[::-1]])

    def vmapped(layer):
        grad = jax.grad(lambda p, x: jnp.sum(layer.apply({"params": p}, x) ** 2))
        return jax.jit(jax.vmap(grad))(members, xs)
    report["vmap(grad), 2 members"] = {"gradients": _max_diff(vmapped(layers.LSTM(units, use_cudnn=False)),
                                                              vmapped(layers.LSTM(units, use_cudnn=True)))}
    ok &= report["vmap(grad), 2 members"]["gradients"] <= ATOL
    return {"cases": report, "atol": ATOL, "passed": bool(ok)}


def contenders(epochs: int) -> dict:
    """``{task: {contender: run}}``, each run ``() -> (epoch times, test accuracy)`` from the bench scripts."""
    tasks = {
        "CNN": {
            "dlkit spe=1": lambda: bench_cnn.run_dlkit(epochs, False, 0, steps_per_execution=1),
            "dlkit spe=8": lambda: bench_cnn.run_dlkit(epochs, False, 0, steps_per_execution=8),
            "flax": lambda: bench_cnn.run_flax(epochs, False, 0),
            "keras": lambda: bench_cnn.run_keras(epochs, False, 0),
        },
        "LSTM": {
            "dlkit spe=1": lambda: bench_lstm.run_dlkit(epochs, 0, steps_per_execution=1),
            "dlkit spe=8": lambda: bench_lstm.run_dlkit(epochs, 0, steps_per_execution=8),
            "dlkit spe=8 own recurrence": lambda: bench_lstm.run_dlkit(epochs, 0, steps_per_execution=8,
                                                                       use_cudnn=False),
            "flax": lambda: bench_lstm.run_flax(epochs, 0),
            "keras": lambda: bench_lstm.run_keras(epochs, 0),
        },
    }
    if importlib.util.find_spec("keras") is None:
        for runs in tasks.values():
            del runs["keras"]
    return tasks


def time_all(epochs: int) -> list:
    """Check (b): one row per task and contender, with its ratios to the fastest of Flax and Keras."""
    rows = []
    for task, runs in contenders(epochs).items():
        measured = {}
        for name, run in runs.items():
            try:
                times, accuracy = run()
            except Exception as error:  # noqa: BLE001 - one contender failing must not hide the others
                print(f"{task} {name} failed: {type(error).__name__}: {error}", file=sys.stderr)
                continue
            measured[name] = {"first_s": times[0], "steady_s": statistics.median(times[1:]),
                              "test_accuracy": float(accuracy)}
        others = [measured[n] for n in ("flax", "keras") if n in measured]
        for name, m in measured.items():
            if others:
                m["steady_ratio"] = m["steady_s"] / min(o["steady_s"] for o in others)
                m["first_ratio"] = m["first_s"] / min(o["first_s"] for o in others)
            rows.append({"task": task, "contender": name, **m})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, so that it runs on a CPU")
    args = parser.parse_args()
    epochs = 2 if args.quick else max(args.epochs, 2)
    if args.quick:
        bench_cnn.ROWS, bench_lstm.UNITS = 256, 16
    on_gpu = jax.default_backend() == "gpu"
    device = str(jax.devices()[0].device_kind)
    kernel = "cuDNN" if on_gpu else "lstm_ref stand-in (no GPU)"
    with contextlib.ExitStack() as stack, jax.default_matmul_precision("float32"):
        if not on_gpu:
            stack.enter_context(stand_in_kernel())
        check = check_cudnn(args.quick)
    print(f"device: {device} ({jax.default_backend()}); (a) {kernel} vs dlkit's recurrence, atol {ATOL}: "
          f"{'PASSED' if check['passed'] else 'FAILED'}")
    for name, entry in check["cases"].items():
        print(f"  {name:<34} " + "  ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in entry.items()))
    rows = time_all(epochs)
    print(f"(b) epochs of {epochs}; ratio = time / the fastest of flax and keras (below 1: dlkit is faster)")
    print(f"{'task':<5} {'contender':<27} {'first s':>8} {'steady s':>9} {'first x':>8} {'steady x':>9} {'acc':>6}")
    for r in rows:
        print(f"{r['task']:<5} {r['contender']:<27} {r['first_s']:>8.2f} {r['steady_s']:>9.3f} "
              f"{r.get('first_ratio', float('nan')):>8.2f} {r.get('steady_ratio', float('nan')):>9.2f} "
              f"{r['test_accuracy']:>6.3f}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_check.json"), "w") as f:
            json.dump({"device": device, "backend": jax.default_backend(), "kernel": kernel, "quick": args.quick,
                       "epochs": epochs, "cudnn_check": check, "timings": rows}, f, indent=1)
    return 0 if check["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
