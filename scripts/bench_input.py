"""Input pipelines: the MNIST CNN's epoch fed by Grain from a tfds-format array_record source, against
the same epoch from in-memory arrays; and the peak host memory of training on a 600 MB float32 set.

    python scripts/bench_input.py                 # both parts
    python scripts/bench_input.py --only speed    # or memory

Speed: the README's CNN (``examples/mnist_cnn.py``) on the 8000 training digits of
``dlkit.datasets.split_digits`` stored as uint8 with ``dlkit.datasets.save_arrays`` (what tfds
gives for MNIST), batch 128, ``Rescaling(1/255)`` in the model. Contenders, interleaved epoch by
epoch in one process: ``arrays`` (``fit(x, y)``), ``grain`` (``dlkit.datasets.load(...,
batch_size=128, shuffle=True)``, read on the training thread), ``grain-threads`` (the same
pipeline read ahead by Grain's threads, ``to_iter_dataset(ReadOptions(num_threads, prefetch))``).
The steady epoch is the median after the first (compiling) one.

Memory: a fresh process per row trains one epoch of a small MLP on 600 MB of float32 features
(200,000 x 750) and reports its peak RSS (``ru_maxrss``) over the data's size: ``host`` is dlkit's
placement now (data above 256 MiB stays on the host), ``resident`` forces the copy to the device
that every size got before, ``8 devices`` is 8 simulated CPU devices (each would have held a
copy before).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

MEMORY_SCRIPT = r"""
import json, resource, sys
import numpy as np
import dlkit
from dlkit import layers
from dlkit.training import feeding

mode = sys.argv[1]
if mode == "resident":
    feeding._CPU_RESIDENT_BYTES = 1 << 40
x = np.random.default_rng(0).random((200_000, 750), dtype=np.float32)
y = (x[:, 0] > 0.5).astype(np.int32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
model = dlkit.Sequential([dlkit.Input((750,)), layers.Dense(16, activation="relu"), layers.Dense(2)])
trainer = dlkit.Trainer(model, optimizer="adam", metrics=["accuracy"],
                        loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))
trainer.fit(x, y, batch_size=512, epochs=1, verbose=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"data": x.nbytes + y.nbytes, "before_fit": before, "peak": peak}))
"""


def memory() -> list:
    rows = []
    for label, mode, devices in (("host (now)", "host", 1), ("resident (before)", "resident", 1),
                                 ("8 devices (now)", "host", 8)):
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        if devices > 1:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, mode], env=env, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        result = json.loads(out.stdout.strip().splitlines()[-1])
        extra = result["peak"] - result["before_fit"]
        rows.append({"placement": label, "data_MB": result["data"] / 1e6, "peak_MB": result["peak"] / 1e6,
                     "before_fit_MB": result["before_fit"] / 1e6, "peak_over_data": result["peak"] / result["data"],
                     "fit_extra_over_data": extra / result["data"]})
        print(f"{label:20s} data {result['data'] / 1e6:5.0f} MB  RSS before fit {result['before_fit'] / 1e6:5.0f} MB  "
              f"peak {result['peak'] / 1e6:5.0f} MB = {result['peak'] / result['data']:.2f}x the data; fit added "
              f"{extra / 1e6:5.0f} MB = {extra / result['data']:.2f}x", flush=True)
    return rows


def speed(epochs: int) -> dict:
    import grain
    import numpy as np

    import dlkit
    from dlkit import layers

    (x, y), _ = dlkit.datasets.split_digits()
    images = np.round(x * 255).astype(np.uint8)
    data_dir = tempfile.mkdtemp()
    dlkit.datasets.save_arrays("bench_digits", {"train": (images, y)}, data_dir=data_dir)

    def trainer():
        model = dlkit.Sequential([
            dlkit.Input((28, 28, 1)), layers.Rescaling(1 / 255), layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2), layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
        return dlkit.Trainer(model, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    pipeline = dlkit.datasets.load("bench_digits", "train", data_dir=data_dir, batch_size=128, shuffle=True)
    threaded = pipeline.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=8))
    contenders = {"arrays": (trainer(), lambda t: t.fit(images, y, batch_size=128, epochs=1, verbose=0)),
                  "grain": (trainer(), lambda t: t.fit(pipeline, epochs=1, verbose=0)),
                  "grain-threads": (trainer(), lambda t: t.fit(threaded, epochs=1, verbose=0))}
    times = {name: [] for name in contenders}
    accuracy = {}
    for _ in range(epochs):
        for name, (t, run) in contenders.items():
            start = time.perf_counter()
            history = run(t)
            times[name].append(time.perf_counter() - start)
            accuracy[name] = history.history["accuracy"][-1]
    steady = {name: statistics.median(values[1:]) for name, values in times.items()}
    print(f"{'contender':15s} {'steady epoch s':>15s} {'/ arrays':>9s} {'train acc':>10s}")
    for name in contenders:
        print(f"{name:15s} {steady[name]:15.3f} {steady[name] / steady['arrays']:9.3f} {accuracy[name]:10.4f}")
    return {"steady_s": steady, "ratio": {k: v / steady["arrays"] for k, v in steady.items()}, "epochs": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["speed", "memory"])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = {}
    if args.only in (None, "memory"):
        results["memory"] = memory()
    if args.only in (None, "speed"):
        results["speed"] = speed(args.epochs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
