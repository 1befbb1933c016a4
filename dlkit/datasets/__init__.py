"""Data for dlkit: the bundled digits, and any tensorflow-datasets dataset read without TensorFlow.

- ``load_digits()`` / ``split_digits()``: the MNIST test set shipped with dlkit (offline, float32 in [0, 1]).
- ``load(name, split)``: a tfds dataset as a ``grain.MapDataset`` of ``(x, y)`` numpy tuples, read
  from its array_record files (``tfds.data_source``); ``fit`` takes it as a stream of batches.
- ``load_arrays(name, split)``: a small split as ``(x, y)`` numpy arrays, for programs written as
  ``(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()``.
- ``save_arrays(name, splits, data_dir=...)``: your own arrays written as a tfds dataset in array_record.

tensorflow-datasets and grain are imported when ``load``/``save_arrays`` first run
(``pip install "dlkit[data]"``), so ``import dlkit`` stays light. docs/data.md has the details.
"""
from dlkit.datasets.digits import load_digits, split_digits
from dlkit.datasets.tfds_data import load, load_arrays, save_arrays

__all__ = ["load", "load_arrays", "load_digits", "save_arrays", "split_digits"]
