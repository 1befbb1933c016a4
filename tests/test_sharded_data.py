"""Data sharded, not replicated: on 8 (forced host) devices no device holds a copy of the training set, each
device's live bytes stay near its share, and the batches are the same rows as on 1 device."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import json, sys
import jax, numpy as np
import dlkit
from dlkit import layers

x, y = dlkit.datasets.load_digits()
x, y = x[:4000], y[:4000]
data_bytes = x.nbytes + y.nbytes
seen = {"replicated": [], "per_device": []}

def inspect():
    per_device = {}
    for a in jax.live_arrays():
        if a.shape and a.shape[0] in (len(x), 3200, 800) and a.size * a.dtype.itemsize >= 0.1 * data_bytes \
                and len(a.sharding.device_set) > 1:
            seen["replicated"].append([list(a.shape), str(a.sharding)])
        for shard in a.addressable_shards:
            per_device[shard.device.id] = per_device.get(shard.device.id, 0) + shard.data.nbytes
    seen["per_device"].append(max(per_device.values()))

class Inspect(dlkit.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch % 10 == 0:
            inspect()
    def on_test_end(self, logs=None):
        inspect()

model = dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Flatten(), layers.Dense(64, activation="relu"),
                          layers.Dense(10, activation="softmax")])
trainer = dlkit.Trainer(model, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = trainer.fit(x, y, batch_size=64, epochs=2, validation_split=0.2, verbose=0, callbacks=[Inspect()])
scores = trainer.evaluate(x, y, batch_size=64, return_dict=True)
inspect()
predictions = trainer.predict(x[:500], batch_size=64)
inspect()
params = sum(a.nbytes for a in jax.tree.leaves(trainer.state.params))
print(json.dumps({"devices": trainer.mesh.size, "history": history.history, "scores": scores,
                  "predictions": predictions[:50].tolist(), "seen": seen, "data_bytes": data_bytes,
                  "params": params, "kernel": trainer.get_weights()[0][:20].ravel().tolist()}))
"""


def run(devices: int) -> dict:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_eight_devices_hold_no_copy_of_the_data_and_train_on_the_same_batches_as_one():
    """One test, not two sharing a fixture: pytest-xdist would run the subprocesses once per worker."""
    one, eight = run(1), run(8)
    assert eight["devices"] == 8
    assert eight["seen"]["replicated"] == []  # no live array of the data set on several devices
    # Each device holds its rows of the batches in flight and a copy of the (replicated) model, far less
    # than an eighth of the data: nothing of the data set stays on a device between batches.
    share = eight["data_bytes"] / 8
    budget = 4 * eight["params"] + share
    assert max(eight["seen"]["per_device"]) < budget, (eight["seen"]["per_device"], budget)

    assert one["history"]["accuracy"][-1] > 0.8  # it learned (4000 digits, 2 epochs)
    for key, values in one["history"].items():
        np.testing.assert_allclose(eight["history"][key], values, rtol=1e-4, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(eight["kernel"], one["kernel"], atol=1e-4)
    for key, value in one["scores"].items():
        np.testing.assert_allclose(eight["scores"][key], value, rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(eight["predictions"], one["predictions"], atol=1e-4)


def test_host_fed_arrays_equal_resident_ones_bitwise(monkeypatch):
    """On one device the two placements (``feeding``) run the same programs on the same rows."""
    import dlkit
    from dlkit import layers
    from dlkit.training import feeding

    x, y = dlkit.datasets.load_digits()
    x, y = x[:700], y[:700]

    def train():
        model = dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Flatten(), layers.Dense(32, activation="relu"),
                                  layers.BatchNormalization(), layers.Dropout(0.3),
                                  layers.Dense(10, activation="softmax")])
        trainer = dlkit.Trainer(model, optimizer="adam", loss="sparse_categorical_crossentropy",
                                metrics=["accuracy"], steps_per_execution=3)
        history = trainer.fit(x, y, batch_size=64, epochs=2, validation_split=0.1, verbose=0)
        return history.history, trainer.predict(x[:130], batch_size=64), trainer.get_weights()

    resident = train()
    monkeypatch.setattr(feeding, "fits_on_device", lambda mesh, size: False)
    host = train()
    assert resident[0] == host[0]
    np.testing.assert_array_equal(resident[1], host[1])
    for a, b in zip(resident[2], host[2]):
        np.testing.assert_array_equal(a, b)


def test_in_flight_bounds_how_far_the_host_runs_ahead():
    import jax
    import jax.numpy as jnp

    from dlkit.training import feeding

    ready = []

    class Token:
        def __init__(self, i):
            self.i = i

        def block_until_ready(self):
            ready.append(self.i)

    in_flight = feeding.InFlight(depth=2)
    for i in range(5):
        in_flight.add(Token(i))
        assert len(in_flight.pending) <= 2
    assert ready == [0, 1, 2]  # each wait is on the oldest program still running
    in_flight.add(jax.jit(lambda v: v + 1)(jnp.zeros(())))  # real arrays work the same


FSDP_SCRIPT = r"""
import json, sys
import jax, numpy as np
import dlkit
from dlkit import layers

x, y = dlkit.datasets.load_digits()
x, y = x[:2000], y[:2000]
out = {}
for sharding in ("replicated", "fsdp"):
    model = dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Flatten(), layers.Dense(64, activation="relu"),
                              layers.BatchNormalization(), layers.Dense(10, activation="softmax")])
    trainer = dlkit.Trainer(model, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                            sharding=sharding)
    history = trainer.fit(x, y, batch_size=64, epochs=2, validation_split=0.2, verbose=0)
    kernel = trainer.state.params["dense"]["kernel"]
    moments = [leaf for leaf in jax.tree.leaves(trainer.state.opt_state) if leaf.shape == kernel.shape]
    trainer.save_checkpoint(sys.argv[1] + "/" + sharding)
    restored = dlkit.Trainer(model, optimizer="adam", loss="sparse_categorical_crossentropy", sharding=sharding)
    restored.load_checkpoint(sys.argv[1] + "/" + sharding)
    out[sharding] = {
        "history": history.history, "predict": trainer.predict(x[:64]).tolist(),
        "kernel_shards": sorted({tuple(s.data.shape) for s in kernel.addressable_shards}),
        "moment_shards": sorted({tuple(s.data.shape) for m in moments for s in m.addressable_shards}),
        "kernel": kernel.shape, "restored": bool(np.array_equal(restored.get_weights()[-4], trainer.get_weights()[-4])),
        "restored_spec": list(restored.state.params["dense"]["kernel"].sharding.spec)}
print(json.dumps(out))
"""


def test_fsdp_splits_params_and_optimizer_state_and_trains_as_replicated(tmp_path):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", FSDP_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    replicated, fsdp = runs["replicated"], runs["fsdp"]
    rows, units = fsdp["kernel"]
    assert replicated["kernel_shards"] == [[rows, units]]  # a whole copy on each device
    assert fsdp["kernel_shards"] == [[rows // 8, units]]  # an eighth on each
    assert fsdp["moment_shards"] == [[rows // 8, units]]  # Adam's moments split the same way
    assert fsdp["restored"] and fsdp["restored_spec"][0] == "batch"  # a checkpoint restores split
    assert replicated["history"]["accuracy"][-1] > 0.7
    for key, values in replicated["history"].items():  # the same computation: the same curve
        np.testing.assert_allclose(fsdp["history"][key], values, rtol=1e-4, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(fsdp["predict"], replicated["predict"], atol=1e-5)


def test_an_unknown_sharding_is_named():
    import dlkit

    with pytest.raises(ValueError, match="sharding must be one of 'replicated', 'fsdp'"):
        dlkit.Trainer(dlkit.Sequential([dlkit.layers.Dense(1)]), loss="mse", sharding="tp")


def test_the_next_batch_is_read_and_sent_while_the_step_runs():
    """Prefetch to device: the loop reads and transfers batch i+1 while step i still runs (JAX
    dispatches the step asynchronously and the loop does not wait for it)."""
    import jax.numpy as jnp

    import dlkit
    from dlkit import layers

    def heavy_step(state, batch):  # ~0.1 s of matmuls on 2 cores, its result logged so it runs
        y = jnp.full((768, 768), 1e-3) + jnp.mean(batch.x)
        for _ in range(12):
            y = jnp.tanh(y @ y)
        return state, {"heavy": jnp.mean(y)}

    running = []

    class Batches:
        def __iter__(self):
            for i in range(6):
                if i:
                    running.append(not trainer.state.step.is_ready())  # the last step dispatched
                yield np.full((4, 3), i, np.float32), np.zeros((4, 1), np.float32)

    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((3,)), layers.Dense(1)]), train_step=heavy_step)
    trainer.fit(Batches(), epochs=1, verbose=0)
    assert sum(running) >= 3, running  # read while the step ran (the first is compiled: not timed)
