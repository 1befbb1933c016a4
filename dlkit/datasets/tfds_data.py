"""tensorflow-datasets without TensorFlow: a prepared dataset's array_record files read through
``tfds.data_source`` into a ``grain.MapDataset``.

Both libraries are imported inside the functions, so ``import dlkit`` does not pay for them and
works without them. Reading needs neither TensorFlow nor the network. Preparing a dataset
(``download=True``) runs tfds' own builder, which downloads the source files; tfds 4.9 encodes
images with ``tf.image`` while preparing, so preparing an image dataset such as MNIST needs
TensorFlow once (Colab has it), and reading the prepared files afterwards does not.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

_INSTALL = 'pip install "dlkit[data]"'


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(f"dlkit.datasets reads tfds datasets with tensorflow-datasets, which is not installed: "
                          f"{_INSTALL} (TensorFlow itself is not needed).") from error
    return tfds


def _grain():
    try:
        import grain
    except ImportError as error:
        raise ImportError(f"dlkit.datasets.load returns a grain.MapDataset; grain is not installed: {_INSTALL}.") \
            from error
    return grain


def _prepared_builder(name: str, data_dir, download: bool):
    """The tfds builder of ``name``, its files prepared (downloaded first only when ``download``)."""
    tfds = _tfds()
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    if not download:
        where = "the directory in $TFDS_DATA_DIR, else ~/tensorflow_datasets" if data_dir is None else repr(data_dir)
        raise FileNotFoundError(
            f"The tfds dataset {name!r} is not prepared in {builder.data_dir} (data_dir: {where}), and "
            f"download=False never touches the network. Pass download=True to download and prepare it there "
            f"as array_record, or run `tfds build {name} --file_format=array_record --data_dir=DIR` on a machine "
            f"with network and copy DIR here (then pass data_dir=DIR).")
    try:
        builder.download_and_prepare(file_format="array_record")
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing == "tensorflow":
            raise ModuleNotFoundError(
                f"tfds needs TensorFlow to prepare {name!r} (its builder encodes the examples with TensorFlow); "
                f"reading the prepared files does not. Prepare it once where TensorFlow is installed (`pip install "
                f"tensorflow`, or on Colab) with dlkit.datasets.load({name!r}, download=True) or `tfds build {name} "
                f"--file_format=array_record`, then copy the data_dir here.", name=error.name) from error
        if missing == "importlib_resources":  # tfds 4.9 declares it for Python < 3.9 only, and uses it here
            raise ModuleNotFoundError(f"tfds needs importlib_resources to prepare {name!r}: pip install "
                                      f"importlib-resources (or {_INSTALL}).", name=error.name) from error
        raise
    return builder


def pick(keys, example):
    """``example``'s features named by ``keys``: tfds' supervised keys as ``(x, y)``.

    Args:
      keys: a feature name, or a tuple/dict of them (nested as tfds' ``supervised_keys``).
      example: one example's feature dict.

    Returns:
      The features in the structure of ``keys``.
    """
    if isinstance(keys, str):
        return example[keys]
    if isinstance(keys, Mapping):
        return {key: pick(value, example) for key, value in keys.items()}
    return tuple(pick(key, example) for key in keys)


def load(name: str, split="train", *, data_dir=None, download: bool = False, batch_size=None, shuffle: bool = False,
         seed: int = 0, drop_remainder: bool = False, as_supervised: bool = True):
    """A tensorflow-datasets dataset, read from its array_record files without TensorFlow.

    The examples come as tfds decodes them, as numpy: images stay uint8 (a dlkit layer casts
    integer inputs to float32, as Keras does), labels int64, text ``bytes``. ``fit``/``evaluate``
    take the result as a stream of batches (``trainer.fit(ds, epochs=3)``); ``fit`` keeps one
    iterator over it for the run, so with ``shuffle=True`` each epoch is a new order and a resumed
    run continues the pipeline where it stopped (``dlkit.training.pipelines``).

    Args:
      name: the tfds name, e.g. ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"imdb_reviews"``
        (``"name:1.2.3"`` or ``"name/config"`` as tfds spells them).
      split: a split (``"train"``, ``"test"``, tfds' slices such as ``"train[:90%]"``), or a list of
        them (then a list of datasets, in that order).
      data_dir: where the prepared datasets live; ``None``: tfds' default (``$TFDS_DATA_DIR``, else
        ``~/tensorflow_datasets``).
      download: when the dataset is not prepared in ``data_dir``, download and prepare it there (tfds'
        ``download_and_prepare``, as array_record). ``False`` never touches the network and raises
        ``FileNotFoundError`` instead.
      batch_size: ``None``: one example at a time; else batches of this many (numpy, stacked).
      shuffle: shuffle the examples (before batching), in the order ``seed`` gives.
      seed: the shuffle's seed.
      drop_remainder: drop a last batch of fewer than ``batch_size`` examples.
      as_supervised: ``(x, y)`` tuples by the builder's supervised keys (``("image", "label")`` for
        MNIST); ``False``: the feature dicts.

    Returns:
      A ``grain.MapDataset`` of ``(x, y)`` tuples (or feature dicts), batched when ``batch_size`` is
      given; a list of them for a list of splits.

    Raises:
      FileNotFoundError: the dataset is not prepared in ``data_dir`` and ``download`` is ``False``.
      ValueError: for a bad ``batch_size``, or ``as_supervised`` on a dataset without supervised keys.
      ImportError: without tensorflow-datasets or grain (``pip install "dlkit[data]"``).
    """
    if isinstance(split, (list, tuple)):
        return [load(name, one, data_dir=data_dir, download=download, batch_size=batch_size, shuffle=shuffle,
                     seed=seed, drop_remainder=drop_remainder, as_supervised=as_supervised) for one in split]
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None (one example at a time); got {batch_size!r}.")
    grain = _grain()
    builder = _prepared_builder(name, data_dir, download)
    keys = builder.info.supervised_keys
    if as_supervised and not keys:
        raise ValueError(f"The tfds dataset {name!r} has no supervised keys, so there is no (x, y) to give; pass "
                         f"as_supervised=False for its feature dicts (features: {list(builder.info.features)}).")
    source = builder.as_data_source(split=split)
    keys = keys if as_supervised else None
    if batch_size is None:
        dataset = grain.MapDataset.source(source)
        dataset = dataset.shuffle(seed=seed) if shuffle else dataset
        return dataset.map(functools.partial(pick, keys)) if keys else dataset
    # Batches of indices, each read with one call (array_record reads a batch at once, faster
    # than record by record), then decoded and stacked.
    dataset = grain.MapDataset.range(len(source))
    dataset = dataset.shuffle(seed=seed) if shuffle else dataset
    return dataset.batch(int(batch_size), drop_remainder=drop_remainder).map(
        functools.partial(_read_batch, source, keys))


def _read_batch(source, keys, indices) -> Any:
    """The examples at ``indices`` (one batched read), their ``keys`` picked, stacked feature by feature."""
    indices = [int(i) for i in indices]
    try:
        examples = source.__getitems__(indices)
    except TypeError:  # tfds.testing.mock_data's sources lack the batched read
        examples = [source[i] for i in indices]
    if keys is not None:
        examples = [pick(keys, example) for example in examples]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *examples)


def load_arrays(name: str, split="train", *, data_dir=None, download: bool = False, as_supervised: bool = True):
    """A tfds split read whole into numpy arrays, as ``keras.datasets.mnist.load_data()`` gives them.

    ``(x_train, y_train), (x_test, y_test) = load_arrays("mnist", ["train", "test"])``. The arrays
    keep tfds' shapes and dtypes: MNIST images are uint8 ``(n, 28, 28, 1)`` (Keras' ``load_data``
    has no channel axis), labels int64. Meant for splits that fit in memory; ``load`` streams.

    Args:
      name: the tfds name, as for ``load``.
      split: a split, or a list of them (then a list of results).
      data_dir: where the prepared datasets live, as for ``load``.
      download: download and prepare the dataset when it is not in ``data_dir``, as for ``load``.
      as_supervised: ``(x, y)`` by the builder's supervised keys; ``False``: a dict of arrays, one per feature.

    Returns:
      ``(x, y)`` numpy arrays of every example of the split in its stored order (or a dict of arrays),
      or a list of them for a list of splits.

    Raises:
      ValueError: for an empty split.
    """
    datasets = load(name, split, data_dir=data_dir, download=download, as_supervised=as_supervised)
    if not isinstance(split, (list, tuple)):
        return _whole(datasets, name, split)
    return [_whole(dataset, name, one) for dataset, one in zip(datasets, split)]


def _whole(dataset, name: str, split):
    if not len(dataset):
        raise ValueError(f"The split {split!r} of the tfds dataset {name!r} has no examples.")
    return dataset.batch(len(dataset))[0]


def save_arrays(name: str, splits: Mapping, *, data_dir, keys: Sequence[str] = ("image", "label"),
                version: str = "1.0.0"):
    """Write arrays as a tfds dataset in array_record files, readable by ``load(name, data_dir=...)``.

    Each key becomes a ``tfds.features.Tensor`` of its arrays' shape and dtype, and the examples keep
    their order. With two or three keys they are the supervised keys, so ``load`` gives ``(x, y)``
    (or ``(x, y, sample_weight)``).

    Args:
      name: the dataset's tfds name (snake_case), e.g. ``"my_digits"``.
      splits: ``{split name: (array per key)}``, e.g. ``{"train": (x_train, y_train), "test": (x_test, y_test)}``.
      data_dir: the directory to write into (``data_dir/name/version/``).
      keys: the feature names of the arrays, in order.
      version: the dataset's version, ``"major.minor.patch"``.

    Returns:
      The directory the dataset was written to (a string).

    Raises:
      ValueError: for no splits, a split with another number of arrays than ``keys``, arrays of
        different lengths, or a key whose shape or dtype differs between splits.
      TypeError: for non-numeric arrays.
      FileExistsError: when ``data_dir`` already holds this name and version.
    """
    tfds = _tfds()
    keys = tuple(keys)
    columns = _checked_splits(splits, keys)
    first = next(iter(columns.values()))
    features = tfds.features.FeaturesDict({
        key: tfds.features.Tensor(shape=array.shape[1:], dtype=array.dtype) for key, array in zip(keys, first)})
    dataset_name, dataset_version = name, version

    class ArraysBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = dataset_name
        VERSION = tfds.core.Version(dataset_version)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True,
                                         supervised_keys=keys if len(keys) in (2, 3) else None,
                                         description="Arrays written by dlkit.datasets.save_arrays.")

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(arrays) for split, arrays in columns.items()}

        def _generate_examples(self, arrays):
            for index in range(len(arrays[0])):
                yield index, {key: array[index] for key, array in zip(keys, arrays)}

    # tfds looks for a builder's checksums file beside the module that defines it, and for a module
    # inside a package that lookup needs importlib_resources, which tfds does not install. These
    # builders download nothing, so they are given a top-level module name, which tfds skips.
    ArraysBuilder.__module__ = "dlkit_save_arrays"
    builder = ArraysBuilder(data_dir=data_dir, file_format="array_record")
    if builder.is_prepared():
        raise FileExistsError(f"{builder.data_dir} already holds the dataset {name!r} version {version}; delete it, "
                              f"or write under another name, version or data_dir.")
    builder.download_and_prepare(file_format="array_record")
    return str(builder.data_dir)


def _checked_splits(splits, keys: tuple) -> dict:
    """``{split: tuple of numpy arrays}``, one per key, checked against each other."""
    if not isinstance(splits, Mapping) or not splits:
        raise ValueError(f"splits must be a non-empty dict {{split name: arrays}}, e.g. {{'train': (x, y)}}; "
                         f"got {type(splits).__name__}.")
    columns, reference = {}, None
    for split, arrays in splits.items():
        arrays = (arrays,) if isinstance(arrays, np.ndarray) else tuple(arrays)
        if len(arrays) != len(keys):
            raise ValueError(f"Split {split!r} has {len(arrays)} arrays for the {len(keys)} keys {keys}; give one "
                             f"array per key (or pass keys=...).")
        arrays = tuple(np.asarray(array) for array in arrays)
        for key, array in zip(keys, arrays):
            if array.dtype.kind not in "biuf":
                raise TypeError(f"save_arrays writes numeric arrays; {split!r}/{key!r} has dtype {array.dtype}.")
            if array.ndim == 0:
                raise ValueError(f"{split!r}/{key!r} is a scalar; each array needs a first axis of examples.")
        lengths = {len(array) for array in arrays}
        if len(lengths) > 1:
            raise ValueError(f"The arrays of split {split!r} have different lengths {[len(a) for a in arrays]}; "
                             f"each key needs one entry per example.")
        specs = [(array.shape[1:], array.dtype) for array in arrays]
        if reference is not None and specs != reference:
            raise ValueError(f"Split {split!r}'s arrays have shapes/dtypes {specs}, another split's {reference}; "
                             f"every split of a dataset has the same features.")
        reference, columns[split] = specs, arrays
    return columns
