"""A test file to copy next to your own model: run it with ``pytest test_my_model.py``.

Each test is one of the checks a model should pass before a long training run, written with
``dlkit.testing`` (``pip install chex`` for it). Replace ``build()`` with your model and keep the
tests that fit. They run in seconds on a CPU.

dlkit's own suite (``tests/test_testing_helpers.py``) runs this file too; pytest's default
collection (``testpaths = ["tests"]``) does not pick it up a second time.
"""
import functools

import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

import dlkit
from dlkit import layers
from dlkit.testing import (
    assert_compiles_once,
    assert_deterministic,
    assert_gradients_match_finite_differences,
    assert_max_traces,
    assert_output_shape,
    assert_overfits_one_batch,
    assert_sharded_like,
)


def build(seed: int = 0) -> dlkit.Trainer:
    """Your model, compiled: a fresh trainer at every call, its seed fixed."""
    model = dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Flatten(), layers.Dense(32, activation="relu"),
                              layers.Dense(10)])
    return dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(0.01), metrics=["accuracy"], seed=seed,
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))


@functools.cache
def digits(n: int = 256):
    """``n`` of the bundled MNIST digits: images ``(n, 28, 28, 1)`` in [0, 1] and their labels."""
    x, y = dlkit.datasets.load_digits()
    return x[:n], y[:n]


def test_outputs_have_the_expected_shape():
    x, _ = digits()
    assert_output_shape(build(), x[:4], (4, 10))
    assert_output_shape(layers.Conv2D(8, 3), np.zeros((2, 28, 28, 1), np.float32), (None, 26, 26, 8))


def test_the_model_overfits_one_batch():
    x, y = digits()
    assert_overfits_one_batch(build(), (x[:16], y[:16]), steps=60, max_loss=0.05)


def test_training_is_deterministic():
    x, y = digits()
    assert_deterministic(build, x, y, epochs=1, batch_size=64)


def test_the_training_step_compiles_once_and_fit_reuses_its_programs():
    x, y = digits()
    trainer = build()
    assert_compiles_once(trainer.train_step, trainer.state, (x[:32], y[:32]))
    trainer.fit(x, y, batch_size=64, epochs=1, verbose=0)
    with assert_max_traces(0, trainer):  # more epochs compile nothing new
        trainer.fit(x, y, batch_size=64, epochs=2, verbose=0)


def test_a_layer_s_gradients_match_finite_differences():
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3))
    assert_gradients_match_finite_differences(layers.Conv2D(4, 3, activation="tanh"), x)


def test_the_state_is_replicated_on_every_device():
    trainer = build()
    assert_sharded_like(trainer.state, NamedSharding(trainer.mesh, PartitionSpec()))
