"""dlkit.testing: each assertion passes on a sound model and fails, saying why, on the bug it is for;
the example test file users copy (examples/test_my_model.py) passes."""
import inspect
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit import layers, testing


def test_the_example_test_file_passes(load_example):
    example = load_example("test_my_model")
    tests = [fn for name, fn in inspect.getmembers(example, inspect.isfunction) if name.startswith("test_")]
    assert len(tests) >= 6
    for test in tests:
        test()


def mlp(seed=0, rate=0.01):
    model = dlkit.Sequential([dlkit.Input((64,)), layers.Dense(16, activation="relu"), layers.Dense(10)])
    return dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(rate), seed=seed,
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))


def test_assert_overfits_one_batch_fails_when_the_model_cannot_learn(digits8x8):
    x, y = digits8x8[0][:16], digits8x8[1][:16]
    losses = testing.assert_overfits_one_batch(mlp(rate=0.05), (x, y), steps=40, max_loss=0.05)
    assert len(losses) == 40 and losses[-1] < 0.05 < losses[0]
    with pytest.raises(AssertionError, match="did not overfit one batch: its loss went from 2.*in 5 steps"):
        testing.assert_overfits_one_batch(mlp(rate=1e-6), (x, y, np.ones(16)), steps=5)


def test_assert_deterministic_fails_on_an_unseeded_model(digits8x8):
    x, y = digits8x8[0][:128], digits8x8[1][:128]
    weights = testing.assert_deterministic(mlp, x, y, batch_size=32)
    assert len(weights) == 4
    with pytest.raises(AssertionError):
        testing.assert_deterministic(lambda: mlp(seed=None), x, y, batch_size=32)  # a seed drawn at each build


def test_assert_max_traces_counts_traces_and_fails_past_n():
    double = jax.jit(lambda v: v * 2)
    a, b = np.ones(3, np.float32), np.ones(4, np.float32)
    with testing.assert_max_traces(1) as traces:
        double(a)
        double(a)
    assert traces.count == 1 and traces.names == ["<lambda>"]
    with pytest.raises(AssertionError, match="2 programs were traced, at most 1 expected: <lambda>, <lambda>"):
        with testing.assert_max_traces(1):
            double(b)
            double(np.ones(5, np.float32))  # a new shape: a new program


def test_assert_compiles_once_catches_a_function_that_builds_its_program_each_call():
    x = jnp.arange(3.0)

    def rebuilt(v):
        return jax.jit(lambda w: w + 1)(v)  # a new lambda each call: a new program each call

    with pytest.raises(AssertionError, match="1 programs were traced, at most 0"):
        testing.assert_compiles_once(rebuilt, x)
    step = jax.jit(lambda v: v + 1, donate_argnums=0)  # the second call gets a copy of the donated argument
    np.testing.assert_array_equal(testing.assert_compiles_once(step, jnp.arange(3.0)), [1.0, 2.0, 3.0])


def test_assert_gradients_match_finite_differences_catches_a_cut_gradient():
    x = np.linspace(0.5, 1.5, 4)
    testing.assert_gradients_match_finite_differences(lambda v: v * v, x)
    with pytest.raises(AssertionError):
        # d/dv is taken as v, not 2v
        testing.assert_gradients_match_finite_differences(lambda v: v * jax.lax.stop_gradient(v), x)


def test_assert_output_shape_of_layers_and_of_several_outputs():
    x = np.zeros((2, 5, 3), np.float32)
    assert testing.assert_output_shape(layers.LSTM(4, return_sequences=True, return_state=True), x,
                               [(2, 5, 4), (None, 4), (2, 4)]) == [(2, 5, 4), (2, 4), (2, 4)]
    with pytest.raises(AssertionError, match=r"\(2, 5, 3\)"):
        testing.assert_output_shape(layers.Dense(3), x, (2, 5, 4))
    with pytest.raises(AssertionError, match="1 outputs"):
        testing.assert_output_shape(layers.Dense(3), x, [(2, 5, 3), (2, 5, 3)])


SHARDED = r"""
import json, jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding
import dlkit
from dlkit import testing
trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((4,)), dlkit.layers.Dense(2)]), loss="mse")
replicated = NamedSharding(trainer.mesh, PartitionSpec())
testing.assert_sharded_like(trainer.state, replicated)
testing.assert_sharded_like(trainer.state.params, {"dense": replicated})  # a prefix tree of shardings
try:
    testing.assert_sharded_like(trainer.state.params, SingleDeviceSharding(jax.devices()[0]))
    message = None
except AssertionError as error:
    message = str(error)
split = jax.device_put(np.zeros((8, 2)), NamedSharding(trainer.mesh, PartitionSpec("batch")))
testing.assert_sharded_like({"x": split}, {"x": split})  # an array laid out the wanted way
print(json.dumps({"devices": trainer.mesh.size, "message": message}))
"""


def test_assert_sharded_like_on_eight_devices():
    trainer = mlp()  # here: one device
    testing.assert_sharded_like(trainer.state, jax.sharding.NamedSharding(trainer.mesh, jax.sharding.PartitionSpec()))
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8
    assert result["message"].startswith("2 arrays are not sharded as expected")
    assert "['dense']['kernel']" in result["message"]
