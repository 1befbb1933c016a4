"""``trainer.save("model.keras")``: what a dlkit archive holds, and weights files by suffix.

``config.json`` of the archive (``dlkit.saving.archive``) holds:

* ``model``: the architecture (``dlkit.saving.serialization``);
* ``compile``: Keras' compile arguments: the optimizer as the ``dlkit.optimizers`` constructor
  and arguments that made it (``None``, with the reason, for one that no constructor made:
  an optax transformation, a learning-rate schedule), ``loss``, ``metrics``, ``loss_weights``,
  ``weighted_metrics``;
* ``trainer``: the seed, the sample shape the model was built for, the epochs completed, the
  freezing rules, ``pad_last_batch``, and a ``train_step``/``test_step`` given to the Trainer.

The arrays are the full training state: ``params``, ``model_state`` (batch statistics),
``opt_state``, ``step`` and ``rng``, each with its SHA-256. Device settings
(``steps_per_execution``, ``devices``, ``compiler_options``) are not saved: the loading
process chooses its own.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import jax

from dlkit import checkpoints
from dlkit.saving import archive, keras_h5, recipes
from dlkit.saving.registry import SerializationError
from dlkit.saving.serialization import serialize

_WEIGHTS_SUFFIX, _MODEL_SUFFIX = ".weights.h5", ".keras"


def save_model(trainer, filepath: str, overwrite: bool = True) -> None:
    """Write ``trainer``'s model, compile arguments and training state to a ``.keras`` archive.

    Args:
      trainer: a built ``Trainer``.
      filepath: the file, ending in ``.keras``; written atomically.
      overwrite: replace an existing file (``False``: raise instead).

    Raises:
      ValueError: ``filepath`` does not end in ``.keras``, or the model is not built.
      FileExistsError: the file exists and ``overwrite`` is False.
      SerializationError: a part of the model or of the compile arguments cannot be named (the
        field is named).
    """
    filepath = str(filepath)
    if not filepath.endswith(_MODEL_SUFFIX):
        raise ValueError(f"trainer.save({filepath!r}): the file name must end in '.keras' (the whole model). For the "
                         f"weights alone use trainer.save_weights('....weights.h5'); for the training state in "
                         f"Orbax's format, trainer.save_checkpoint(directory).")
    trainer._require_built("save")
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"trainer.save: {filepath!r} exists and overwrite=False.")
    archive.write(filepath, config(trainer), state_arrays(trainer.state))


def config(trainer) -> dict:
    """The ``config.json`` of ``trainer``'s archive (the module docstring).

    Args:
      trainer: a built ``Trainer``.

    Returns:
      A JSON-able dict.

    Raises:
      SerializationError: a part of the model or of the compile arguments cannot be named.
    """
    model = getattr(trainer, "_given", trainer.model)
    optimizer, reason = optimizer_config(trainer.tx)
    steps = {}
    for kind in ("train", "test"):
        given, own = getattr(trainer, f"_custom_{kind}"), getattr(model, f"{kind}_step", None)
        steps[f"{kind}_step"] = None if given is None or given == own else serialize(given, f"{kind}_step")
    return {
        "format": archive.FORMAT, "format_version": archive.FORMAT_VERSION, "dlkit_version": archive.version(),
        "model": serialize(model),
        "compile": {"optimizer": optimizer, "optimizer_not_saved": reason,
                    "loss": serialize(trainer.loss, "the loss"), "metrics": serialize(trainer.metric_ids, "metrics"),
                    "loss_weights": serialize(trainer.loss_weights, "loss_weights"),
                    "weighted_metrics": serialize(trainer.weighted_metric_ids, "weighted_metrics")},
        "trainer": {"seed": trainer.seed, "sample_shape": checkpoints.encode_shape(trainer._sample_shape),
                    "epoch": trainer.epoch, "frozen": [[path, value] for path, value in trainer.state.frozen],
                    "pad_last_batch": trainer.pad_last_batch, **steps},
    }


def optimizer_config(tx) -> tuple:
    """How a config names an optimizer: the ``dlkit.optimizers`` constructor and its arguments.

    Args:
      tx: the trainer's optimizer (one, or a dict of them per parameter group).

    Returns:
      ``(config, None)``, or ``(None, reason)`` when no constructor made it (an optax
      transformation) or an argument cannot be saved (a learning-rate schedule).
    """
    parts = tx.values() if isinstance(tx, Mapping) else [tx]
    if any(recipes.recipe(each) is None for each in parts):
        return None, "an optax transformation that no dlkit.optimizers constructor made"
    try:
        return serialize(dict(tx) if isinstance(tx, Mapping) else tx, "the optimizer"), None
    except SerializationError as error:
        return None, str(error)


def state_arrays(state) -> dict:
    """The arrays of a training state by their paths, as an archive stores them.

    Args:
      state: a ``TrainState``.

    Returns:
      ``{'params/dense/kernel': numpy array, ..., 'opt_state/...', 'step', 'rng'}`` in the tree's order.
    """
    return arrays_of(checkpoints.to_tree(state))


def arrays_of(tree) -> dict:
    """``{path: numpy array}`` of a tree, paths as ``dlkit.checksums`` names them (``'params/dense/kernel'``).

    Args:
      tree: a tree of arrays (device arrays are fetched once).

    Returns:
      The arrays in the tree's order.
    """
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
    return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf for path, leaf in leaves}


def handles(filepath, reading: bool = False) -> bool:
    """Whether ``save_weights``/``load_weights`` of this module handle ``filepath`` (else Flax msgpack).

    Args:
      filepath: a file name.
      reading: for ``load_weights``, which also reads the weights of a ``.keras`` archive.

    Returns:
      True for ``*.weights.h5`` (and, reading, ``*.keras``).
    """
    name = str(filepath)
    return name.endswith(_WEIGHTS_SUFFIX) or (reading and name.endswith(_MODEL_SUFFIX))


def save_weights(trainer, filepath) -> None:
    """Keras' ``save_weights("....weights.h5")``: the weights in Keras 3's HDF5 layout (``keras_h5``).

    Args:
      trainer: a built ``Trainer``.
      filepath: the ``.weights.h5`` file, written atomically.
    """
    keras_h5.write(trainer, str(filepath))


def load_weights(trainer, filepath) -> None:
    """Keras' ``load_weights``: from a ``.weights.h5`` file (dlkit's or Keras'), or the weights of a
    ``.keras`` archive (dlkit's, checked against its SHA-256s, or Keras', through its HDF5 member).

    Args:
      trainer: a built ``Trainer`` of the same architecture.
      filepath: the file.

    Raises:
      ValueError: the file holds other layers or shapes than the model (named); a damaged
        archive (``ArchiveError``).
    """
    filepath = str(filepath)
    if filepath.endswith(_WEIGHTS_SUFFIX) or keras_h5.is_keras_archive(filepath):
        keras_h5.read(trainer, filepath)
        return
    _, _, arrays = archive.read(filepath)
    values = []
    for collection, layer, path in trainer._weight_order:
        name = "/".join(["params"] if collection == "params" else ["model_state", collection])
        name = "/".join([name, str(layer), *map(str, path)])
        if name not in arrays:
            raise ValueError(f"load_weights({filepath!r}): the archive lacks the weight {name!r} of this model; was "
                             f"it saved from another architecture?")
        values.append(arrays[name])
    trainer.set_weights(values)
