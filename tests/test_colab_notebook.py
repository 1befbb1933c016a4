"""examples/colab_tpu.ipynb: its code cells run on the CPU, offline. ``load("mnist", download=True)``
is served by a small MNIST prepared beforehand in $TFDS_DATA_DIR (bundled digits, written by tfds'
own MNIST builder, so tfds finds it prepared and downloads nothing), and the bundled-digits fallback
is run on its own."""
import io
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import dlkit

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("grain")
PIL_Image = pytest.importorskip("PIL.Image")

NOTEBOOK = pathlib.Path(__file__).parents[1] / "examples" / "colab_tpu.ipynb"
ACCURACY = re.compile(r"^test loss: \d+\.\d{4} - test accuracy: (\d\.\d{4})$", re.M)
NO_NETWORK = """
import socket
def _refuse(*args, **kwargs):
    raise OSError("the notebook test forbids network access")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = _refuse
"""


def notebook() -> dict:
    return json.loads(NOTEBOOK.read_text())


def code_cells() -> list:
    """Each code cell's source, less its shell (``!``) and magic (``%``) lines."""
    return ["".join(line for line in cell["source"] if not line.lstrip().startswith(("!", "%")))
            for cell in notebook()["cells"] if cell["cell_type"] == "code"]


def write_small_mnist(data_dir, n_train: int = 3000, n_test: int = 500):
    """A small MNIST in tfds' own format (its builder's features: PNG images, class labels), of bundled digits."""
    x, y = dlkit.datasets.load_digits()
    images = np.round(x[:, :, :, 0] * 255).astype(np.uint8)

    def png(image):
        buffer = io.BytesIO()
        PIL_Image.fromarray(image).save(buffer, format="PNG")
        buffer.seek(0)
        return buffer  # tfds stores encoded images as given; encoding arrays itself would need TensorFlow

    class SmallMnist(tfds.image_classification.MNIST, skip_registration=True):
        name = "mnist"

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, n_train),
                    "test": self._generate_examples(n_train, n_train + n_test)}

        def _generate_examples(self, start, stop):
            for i in range(start, stop):
                yield i, {"image": png(images[i]), "label": int(y[i])}

    SmallMnist(data_dir=data_dir).download_and_prepare(file_format="array_record")


def test_the_notebook_is_nbformat_4_with_colab_instructions():
    book = notebook()
    assert (book["nbformat"], book["metadata"]["accelerator"]) == (4, "TPU")
    for cell in book["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["source"], list)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    text = "".join("".join(cell["source"]) for cell in book["cells"])
    assert '!pip install -q "dlkit[data] @ git+https://github.com/<OWNER>/dlkit"' in text
    assert "Unverified on a TPU" in text and "jax.device_count()" in text
    assert 'hasattr(dlkit, "mixed_precision")' in text


def test_the_code_cells_train_offline_on_the_cpu(tmp_path):
    write_small_mnist(tmp_path)
    env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path), DLKIT_NOTEBOOK_QUICK="1", JAX_PLATFORMS="cpu")
    script = NO_NETWORK + "\n".join(code_cells())
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MNIST from tfds: 24 batches of 128 to train on, 500 test digits" in out.stdout, out.stdout[-2000:]
    assert re.search(r"^backend: cpu - devices: \d+", out.stdout, re.M)
    accuracy = float(ACCURACY.findall(out.stdout)[-1])
    assert accuracy > 0.6, out.stdout[-2000:]  # twenty steps of one epoch; chance is 0.1


def test_without_tfds_data_the_notebook_trains_on_the_bundled_digits(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(dlkit.datasets, "load", offline)
    monkeypatch.setenv("DLKIT_NOTEBOOK_QUICK", "1")
    cells = code_cells()
    data = next(i for i, cell in enumerate(cells) if "dlkit.datasets.load(" in cell)
    namespace = {"__name__": "colab_tpu"}
    for cell in cells[:data + 1]:
        exec(compile(cell, str(NOTEBOOK), "exec"), namespace)  # noqa: S102 - our own notebook
    train, x_test = namespace["train"], namespace["x_test"]
    assert len(train) == 20 and train[0][0].shape == (128, 28, 28, 1) and train[0][0].dtype == np.uint8
    assert x_test.shape == (1000, 28, 28, 1) and x_test.dtype == np.uint8
    np.testing.assert_array_equal(train[0][1], dlkit.datasets.load_digits()[1][:128])
