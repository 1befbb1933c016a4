"""Data parallelism: 8 (forced host) devices give the losses of 1 device."""
import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import json, sys
import jax, numpy as np
import dlkit
from dlkit import layers, metrics
x, y = dlkit.datasets.load_digits()
x, y = x[:1000], y[:1000]

def model():
    return dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Conv2D(8, 3, activation="relu"),
                             layers.BatchNormalization(), layers.MaxPooling2D(2), layers.Flatten(),
                             layers.Dropout(0.2), layers.Dense(10)])

trainer = dlkit.Trainer(model(), optimizer=dlkit.optimizers.SGD(0.01, momentum=0.9),
                        loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
history = trainer.fit(x, y, batch_size=64, epochs=2, validation_split=0.1, verbose=0)
# The streaming metrics on the same weights (the 1-device run's, from a file): 64-row batches split over
# the devices, and a padded last batch of 40.
mode, path = sys.argv[1:3]
if mode == "save":
    np.savez(path, *trainer.get_weights())
evaluator = dlkit.Trainer(model(), loss=dlkit.losses.CategoricalCrossentropy(from_logits=True), metrics=[
    metrics.AUC(from_logits=True), metrics.F1Score(average="macro"), metrics.TopKCategoricalAccuracy(k=3),
    metrics.MeanIoU(10, sparse_y_true=False, sparse_y_pred=False), metrics.Precision(thresholds=0.0)])
with np.load(path) as saved:
    evaluator.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
scores = evaluator.evaluate(x, np.eye(10, dtype=np.float32)[y], batch_size=64, return_dict=True)
print(json.dumps({"devices": len(jax.devices()), "mesh": trainer.mesh.size, "history": history.history,
                  "kernel": trainer.get_weights()[0].ravel().tolist(), "scores": scores}))
"""


def run(devices: int, *args) -> dict:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT, *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_eight_devices_match_one_device(tmp_path):
    weights = str(tmp_path / "weights.npz")
    one, eight = run(1, "save", weights), run(8, "load", weights)
    assert (one["devices"], one["mesh"]) == (1, 1)
    assert (eight["devices"], eight["mesh"]) == (8, 8)
    for key, values in one["history"].items():
        np.testing.assert_allclose(eight["history"][key], values, rtol=1e-3, atol=1e-5, err_msg=key)
    # BN amplifies float-order differences over 28 steps; the losses above are the tight check.
    np.testing.assert_allclose(eight["kernel"], one["kernel"], atol=5e-3)
    assert one["scores"]["auc"] > 0.9  # trained weights, not chance
    for key, value in one["scores"].items():  # the same weights: every metric to 1e-6
        np.testing.assert_allclose(eight["scores"][key], value, rtol=1e-6, atol=1e-6, err_msg=key)


def test_xla_options_are_gated_on_what_this_jaxlib_accepts(monkeypatch):
    from dlkit.training import devices

    unknown, off = {"xla_cpu_option_no_jaxlib_has": ""}, {"xla_cpu_experimental_ynn_fusion_type": ""}
    assert not devices._accepted("cpu", tuple(unknown.items()))  # this jaxlib refuses an unknown flag
    assert devices._accepted("cpu", tuple(off.items()))
    accepted = [c for c in devices._cpu_candidates() if devices._accepted("cpu", tuple(sorted(c.items())))]
    assert accepted and devices.default_compiler_options("cpu") == accepted[0]  # the first accepted candidate
    assert devices.default_compiler_options("gpu") == {}  # no options on other backends
    monkeypatch.setattr(devices, "_cpu_candidates", lambda: (unknown, off))
    assert devices.default_compiler_options("cpu") == off  # a dropped flag falls back to the next candidate
    monkeypatch.setattr(devices, "_cpu_candidates", lambda: (unknown,))
    assert devices.default_compiler_options("cpu") == {}  # and none accepted is not an error


def test_xla_options_follow_the_cpu_features(monkeypatch, tmp_path):
    from dlkit.training import devices

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\n")
    assert devices._cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx2", "fma"}
    assert devices._cpu_flags(str(tmp_path / "missing")) is None
    for flags, expected in (({"avx2", "fma"}, devices._CPU_OPTIONS_WITHOUT_AVX512),
                            ({"avx2", "avx512f"}, devices._CPU_OPTIONS),
                            (None, devices._CPU_OPTIONS)):  # unknown CPU (not Linux): YNNPACK for dots
        monkeypatch.setattr(devices, "_cpu_flags", lambda flags=flags: flags)
        assert devices._cpu_candidates() == expected
    assert devices._CPU_OPTIONS_WITHOUT_AVX512 != devices._CPU_OPTIONS  # the two CPU kinds get different options


def test_importing_dlkit_changes_no_global_jax_setting():
    script = ("import os, jax; before = (os.environ.get('XLA_FLAGS'), jax.config.values.copy()); import dlkit; "
              "t = dlkit.Trainer(dlkit.Sequential([dlkit.layers.Dense(1)]), loss='mse', compiler_options={}); "
              "print(before == (os.environ.get('XLA_FLAGS'), jax.config.values), t.compiler_options)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "{}"], out.stderr[-2000:]
