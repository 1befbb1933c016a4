"""dlkit.datasets over tensorflow-datasets, without TensorFlow and without the network: a real
array_record dataset written by ``save_arrays`` (the bundled digits), tfds' own ``mock_data``, and
the errors for what is not prepared."""
import json
import socket
import subprocess
import sys

import numpy as np
import pytest

import dlkit

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("grain")

# TensorFlow made unimportable for real (a finder ahead of every other that fails its import), in a
# fresh process so that nothing imported earlier leaks in. The finder answers find_spec with a spec,
# so code probing "is TensorFlow installed?" is told yes, and any import of it fails: the strictest
# case. It records every attempt, and the script writes, loads and trains with it installed.
BLOCKED_SCRIPT = r"""
import importlib.machinery, json, sys

class BlockTensorFlow:
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        self.attempts.append(spec.name)
        raise ModuleNotFoundError(f"{spec.name} is blocked by the test", name=spec.name)

    def exec_module(self, module):
        raise AssertionError("never reached")

sys.meta_path.insert(0, BlockTensorFlow())
import numpy as np
import dlkit
from dlkit import layers

light = not any(m in sys.modules for m in ("tensorflow_datasets", "grain"))
x, y = dlkit.datasets.load_digits()
x = np.round(x * 255).astype(np.uint8)  # as tfds gives MNIST
dlkit.datasets.save_arrays("blocked_digits", {"train": (x[:1500], y[:1500]), "test": (x[1500:2000], y[1500:2000])},
                           data_dir=sys.argv[1])
train = dlkit.datasets.load("blocked_digits", data_dir=sys.argv[1], batch_size=32, shuffle=True)
x_test, y_test = dlkit.datasets.load_arrays("blocked_digits", "test", data_dir=sys.argv[1])
model = dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Rescaling(1 / 255), layers.Flatten(),
                          layers.Dense(64, activation="relu"), layers.Dense(10)])
trainer = dlkit.Trainer(model, optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
history = trainer.fit(train, epochs=2, verbose=0)
_, accuracy = trainer.evaluate(x_test, y_test, verbose=0)
print(json.dumps({"light": light, "attempts": BlockTensorFlow.attempts, "accuracy": accuracy,
                  "loaded": sorted(m for m in sys.modules if m.partition(".")[0] == "tensorflow"),
                  "dtypes": [str(a.dtype) for a in train[0]], "loss": history.history["loss"]}))
"""


def test_writes_loads_and_trains_with_tensorflow_unimportable(tmp_path):
    out = subprocess.run([sys.executable, "-c", BLOCKED_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["light"], "import dlkit imported tensorflow_datasets or grain"
    assert result["attempts"] == [] and result["loaded"] == []
    assert result["dtypes"] == ["uint8", "int64"]
    assert result["loss"][1] < result["loss"][0]
    assert result["accuracy"] > 0.75, result  # 500 held-out digits (0.84 when written); chance is 0.1


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """A real array_record dataset of 300 + 100 bundled digits, as uint8 images (``tiny_digits``)."""
    x, y = dlkit.datasets.load_digits()
    x = np.round(x * 255).astype(np.uint8)
    data_dir = tmp_path_factory.mktemp("tfds")
    dlkit.datasets.save_arrays("tiny_digits", {"train": (x[:300], y[:300]), "test": (x[300:400], y[300:400])},
                               data_dir=data_dir)
    return data_dir, (x[:300], y[:300]), (x[300:400], y[300:400])


@pytest.fixture
def no_network(monkeypatch):
    """Every connection and name lookup raises, and is recorded."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("the test forbids network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return calls


def test_load_arrays_equals_the_records_read_directly(digits_dir, no_network):
    data_dir, (x_train, y_train), (x_test, y_test) = digits_dir
    (xa, ya), (xb, yb) = dlkit.datasets.load_arrays("tiny_digits", ["train", "test"], data_dir=data_dir)
    source = tfds.data_source("tiny_digits", split="test", data_dir=data_dir, download=False)
    records = [source[i] for i in range(len(source))]
    np.testing.assert_array_equal(xb, np.stack([r["image"] for r in records]))
    np.testing.assert_array_equal(yb, [r["label"] for r in records])
    np.testing.assert_array_equal(xa, x_train)  # save_arrays keeps the order
    np.testing.assert_array_equal(ya, y_train)
    np.testing.assert_array_equal(xb, x_test)
    assert (xa.dtype, ya.dtype, xa.shape) == (np.uint8, np.int64, (300, 28, 28, 1))
    assert no_network == []


def test_load_batches_shuffles_by_seed_and_gives_feature_dicts(digits_dir):
    data_dir, (x_train, y_train), _ = digits_dir
    plain = dlkit.datasets.load("tiny_digits", data_dir=data_dir, batch_size=64)
    assert len(plain) == 5 and plain[4][0].shape == (300 - 256, 28, 28, 1)
    assert len(dlkit.datasets.load("tiny_digits", data_dir=data_dir, batch_size=64, drop_remainder=True)) == 4
    shuffled = [dlkit.datasets.load("tiny_digits", data_dir=data_dir, batch_size=300, shuffle=True, seed=s)[0]
                for s in (0, 0, 1)]
    np.testing.assert_array_equal(shuffled[0][1], shuffled[1][1])
    assert not np.array_equal(shuffled[0][1], shuffled[2][1])
    np.testing.assert_array_equal(np.sort(shuffled[2][1]), np.sort(y_train))  # a permutation, nothing lost
    example = dlkit.datasets.load("tiny_digits", data_dir=data_dir, as_supervised=False)[7]
    assert set(example) == {"image", "label"}
    np.testing.assert_array_equal(example["image"], x_train[7])
    x, y = dlkit.datasets.load("tiny_digits", data_dir=data_dir)[7]
    assert x.shape == (28, 28, 1) and int(y) == y_train[7]


def test_mock_data_serves_load_through_tfds_data_source():
    with tfds.testing.mock_data(num_examples=20):
        batches = dlkit.datasets.load("mnist", split="train", batch_size=8, shuffle=True, download=True)
        x, y = batches[0]
        assert len(batches) == 3 and x.shape == (8, 28, 28, 1) and x.dtype == np.uint8
        assert y.dtype == np.int64 and ((0 <= y) & (y < 10)).all()
        x_test, _ = dlkit.datasets.load_arrays("mnist", "test", download=True)
        assert x_test.shape == (20, 28, 28, 1)


def test_download_false_raises_where_it_looked_without_the_network(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match="download=True") as error:
        dlkit.datasets.load("mnist", split="train", data_dir=tmp_path)
    assert str(tmp_path / "mnist") in str(error.value) and "tfds build mnist" in str(error.value)
    with pytest.raises(FileNotFoundError, match="not prepared"):
        dlkit.datasets.load_arrays("mnist", "test", data_dir=tmp_path)
    assert no_network == []


@pytest.mark.parametrize("missing, message", [
    ("tensorflow", "needs TensorFlow to prepare 'mnist'.*reading the prepared"),
    ("importlib_resources", "pip install importlib-resources"),
])
def test_preparing_without_a_module_tfds_needs_says_what_to_do(tmp_path, monkeypatch, missing, message):
    def needs_module(self, **kwargs):
        raise ModuleNotFoundError(f"No module named '{missing}'", name=missing)

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", needs_module)
    with pytest.raises(ModuleNotFoundError, match=message):
        dlkit.datasets.load("mnist", data_dir=tmp_path, download=True)


def test_bad_input_names_the_problem(digits_dir, tmp_path):
    data_dir, (x, y), _ = digits_dir
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        dlkit.datasets.load("tiny_digits", data_dir=data_dir, batch_size=0)
    with pytest.raises(FileExistsError, match="already holds the dataset 'tiny_digits'"):
        dlkit.datasets.save_arrays("tiny_digits", {"train": (x, y)}, data_dir=data_dir)
    with pytest.raises(ValueError, match="different lengths"):
        dlkit.datasets.save_arrays("bad", {"train": (x, y[:10])}, data_dir=tmp_path)
    with pytest.raises(ValueError, match="2 arrays for the 1 keys"):
        dlkit.datasets.save_arrays("bad", {"train": (x, y)}, data_dir=tmp_path, keys=("image",))
    with pytest.raises(ValueError, match="every split of a dataset has the same features"):
        dlkit.datasets.save_arrays("bad", {"train": (x, y), "test": (x[:, :20], y)}, data_dir=tmp_path)
    with pytest.raises(TypeError, match="numeric arrays"):
        dlkit.datasets.save_arrays("bad", {"train": (x, y.astype(str))}, data_dir=tmp_path)
    dlkit.datasets.save_arrays("images_only", {"train": x[:10]}, data_dir=tmp_path, keys=("image",))
    with pytest.raises(ValueError, match="no supervised keys.*as_supervised=False.*'image'"):
        dlkit.datasets.load("images_only", data_dir=tmp_path)
    assert dlkit.datasets.load("images_only", data_dir=tmp_path, as_supervised=False)[0]["image"].shape == (28, 28, 1)
