"""``TensorBoard(profile_batch=...)``: a JAX profiler trace of exactly the batches asked for, where
TensorBoard's profile plugin reads it; Keras' forms of the argument, and clear errors for the rest."""
import gzip
import json
import pathlib

import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.callbacks import TensorBoard
from dlkit.callbacks.base import CallbackList
from dlkit.callbacks.logging import profile_range

X = np.random.default_rng(0).standard_normal((32, 3)).astype(np.float32)
Y = X.sum(1, keepdims=True)


def fit(log_dir, steps_per_execution=1, epochs=2, **tensorboard):
    """Two epochs of four batches, logged by a ``TensorBoard``."""
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((3,)), layers.Dense(1)]), optimizer="sgd", loss="mse",
                            steps_per_execution=steps_per_execution)
    trainer.fit(X, Y, batch_size=8, epochs=epochs, verbose=0, callbacks=[TensorBoard(log_dir, **tensorboard)])


def traces(log_dir) -> list:
    return sorted(pathlib.Path(log_dir).glob("train/plugins/profile/*/*.xplane.pb"))


def events(log_dir) -> list:
    (trace,) = pathlib.Path(log_dir).glob("train/plugins/profile/*/*.trace.json.gz")
    return json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]


def profiled_batches(log_dir) -> list:
    """The ``Profiled batch <i>`` annotations of the one trace under ``log_dir``, in time order."""
    marks = sorted((e["ts"], e["name"]) for e in events(log_dir) if e.get("name", "").startswith("Profiled batch"))
    return [int(name.rsplit(" ", 1)[1]) for _, name in marks]


def matmuls(log_dir) -> int:
    """How many of XLA's ``dot`` operations ran on the device while tracing: a fixed number per batch."""
    return sum(1 for e in events(log_dir) if e.get("ph") == "X" and e.get("name", "").startswith("dot"))


def test_profile_batch_writes_a_trace_of_that_batch(tmp_path):
    fit(tmp_path, profile_batch=2)
    assert len(traces(tmp_path)) == 1
    assert profiled_batches(tmp_path) == [1]  # Keras counts from 1; the mark is the 0-based index
    assert matmuls(tmp_path) > 0


def test_a_range_spans_epochs_counted_over_the_whole_fit(tmp_path):
    fit(tmp_path / "one", profile_batch=2)
    fit(tmp_path / "four", profile_batch=(3, 6))
    assert profiled_batches(tmp_path / "four") == [2, 3, 0, 1]  # batches 3, 4 of epoch 0, then 1, 2 of epoch 1
    assert matmuls(tmp_path / "four") == 4 * matmuls(tmp_path / "one")  # their device work, and no other batch's


def test_several_batches_per_program_profile_the_whole_program(tmp_path):
    fit(tmp_path, steps_per_execution=2, profile_batch="4")
    assert profiled_batches(tmp_path) == [2]  # the program running batches 3 and 4, marked by its first


def test_a_range_past_the_end_is_stopped_with_the_fit(tmp_path):
    fit(tmp_path, epochs=1, profile_batch=(4, 100))
    assert profiled_batches(tmp_path) == [3]


def test_profile_batch_zero_writes_no_trace_and_asks_for_no_batch_hooks(tmp_path):
    fit(tmp_path, profile_batch=0)
    assert (tmp_path / "train").is_dir() and traces(tmp_path) == []
    assert not CallbackList([TensorBoard(tmp_path)], None, {}).wants_batches
    assert CallbackList([TensorBoard(tmp_path, profile_batch=1)], None, {}).wants_batches


@pytest.mark.parametrize("value, expected", [(0, (0, 0)), (5, (5, 5)), ((2, 4), (2, 4)), ([3, 3], (3, 3)),
                                             ("7", (7, 7)), ("2,9", (2, 9)), (np.int64(4), (4, 4))])
def test_keras_forms_of_profile_batch(value, expected):
    assert profile_range(value) == expected


@pytest.mark.parametrize("value", [-1, (5, 2), (0, 3), (1, 2, 3), 1.5, True, "a,b", (1, 2.0), None])
def test_bad_profile_batch_raises_naming_the_forms(value, tmp_path):
    with pytest.raises(ValueError, match=r"profile_batch must be a whole number >= 0 .* 1 <= start <= stop"):
        TensorBoard(tmp_path, profile_batch=value)
