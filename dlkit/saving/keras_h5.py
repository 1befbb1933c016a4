"""Weights in Keras 3's ``.weights.h5`` layout, so that Keras and dlkit read each other's files.

Keras 3 (``keras/src/saving/saving_lib.py``, ``H5IOStore``) writes one HDF5 group per layer,
found by walking the model: a ``Sequential`` or functional model keeps its layers under
``layers/``, each named by its class in snake case, numbered in order among layers of the
same class (``layers/conv2d``, ``layers/dense``, ``layers/dense_1``: not by the layers'
``name=``), nested models inside their own ``layers/``. A layer's variables are the datasets
``<group>/vars/0``, ``vars/1``, …: its trainable variables in creation order, then the
non-trainable ones (``Dense``: kernel, bias; ``BatchNormalization``: gamma, beta,
moving_mean, moving_variance), which is dlkit's ``get_weights`` order too. The model's own
``vars`` group is empty.

dlkit's layers store their variables as Keras does (a ``Dense`` kernel ``(in, units)``, a
``Conv2D`` kernel ``(height, width, in, out)``), so a file moves between the two for the
same architecture. A layer that Keras saves as sub-layers of its own (the cell of an
``LSTM``, the projections of ``MultiHeadAttention``) is one group here, with all of its
variables: such files are read back by dlkit, not by Keras. The optimizer's variables,
which Keras adds under ``optimizer/`` for a compiled model, are neither written nor read.
"""
from __future__ import annotations

import io
import os
import tempfile
import zipfile

import numpy as np

from dlkit.metrics.base import snake_case
from dlkit.saving import graph as graph_lib


def _children(module):
    """A container's ``[(name, layer)]`` (``Sequential``, ``Model``), else ``None``: a layer."""
    named = getattr(module, "named_layers", None)
    return list(named()) if callable(named) else None


def _keras_class(module) -> str:
    """The name Keras gives the group of a layer of this class (``Functional`` for a functional model)."""
    return "functional" if graph_lib.is_functional(module) else snake_case(type(module).__name__)


def layout(model, order: list) -> list:
    """Where each layer's weights lie in a ``.weights.h5`` file.

    Args:
      model: the user's model (unbound).
      order: the trainer's weight order (``(collection, layer, path)`` per weight, Keras' order).

    Returns:
      ``[(group, layer name, positions), ...]``: the HDF5 group (``'layers/dense_1'``; ``''`` for
      the model itself), the dlkit name of the layer, and the indices in ``get_weights()`` of
      its weights, in Keras' order; containers come with no positions.
    """
    found = []

    def visit(module, path: tuple, group: str) -> None:
        name = "/".join(path) or getattr(module, "name", None) or _keras_class(module)
        children = _children(module)
        if children is None:
            found.append((group, name, [i for i, (_, layer, rest) in enumerate(order)
                                        if (layer, *rest)[:len(path)] == path]))
            return
        found.append((group, name, []))
        used: dict = {}
        for name, child in children:
            key = _keras_class(child)
            used[key] = used.get(key, -1) + 1
            key = key if used[key] == 0 else f"{key}_{used[key]}"
            visit(child, (*path, name), f"{group}/layers/{key}".lstrip("/"))

    visit(model, (), "")
    return found


def write(trainer, path: str) -> None:
    """``trainer``'s weights to ``path`` in Keras 3's layout, atomically (temporary file, then rename).

    Args:
      trainer: a built ``Trainer``.
      path: the ``.weights.h5`` file (its directory is created if missing).

    Raises:
      ValueError: a weight that no layer of the walk holds (a container's own variable).
    """
    import h5py

    values = trainer.get_weights()
    entries = layout(trainer._given, trainer._weight_order)
    covered = sorted(i for _, _, positions in entries for i in positions)
    if covered != list(range(len(values))):
        raise ValueError("save_weights: some weights belong to no layer of the model's walk (a container's own "
                         "variables), which Keras' .weights.h5 layout cannot hold; save them with another suffix.")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".weights.h5.tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for group, name, positions in entries:
                variables = f.create_group(f"{group}/vars" if group else "vars")
                variables.attrs["name"] = name.rpartition("/")[2]
                for k, i in enumerate(positions):
                    variables.create_dataset(str(k), data=np.asarray(values[i]))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def is_keras_archive(path: str) -> bool:
    """Whether ``path`` is a ``.keras`` zip written by Keras (its weights in ``model.weights.h5``).

    Args:
      path: a file name.

    Returns:
      True for a zip holding ``model.weights.h5`` (dlkit's archives hold ``arrays/`` instead).
    """
    if not (path.endswith(".keras") and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    return "model.weights.h5" in names


def read(trainer, path: str) -> None:
    """Load a ``.weights.h5`` file (or the weights of a Keras-written ``.keras``) into ``trainer``.

    Args:
      trainer: a built ``Trainer`` of the same architecture.
      path: the file.

    Raises:
      ValueError: a layer the file lacks, or holds another number or shape of weights for
        (named by its group and its dlkit name).
    """
    import h5py

    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            source = io.BytesIO(archive.read("model.weights.h5"))
    else:
        source = path
    values = trainer.get_weights()
    with h5py.File(source, "r") as f:
        for group, name, positions in layout(trainer._given, trainer._weight_order):
            if not positions:
                continue
            key = f"{group}/vars" if group else "vars"
            stored = f[key] if key in f else {}
            if len(stored) != len(positions):
                raise ValueError(f"load_weights({path!r}): layer {name!r} has {len(positions)} weights, but the file "
                                 f"holds {len(stored)} at {key!r}. Is it the weights of this architecture?")
            for k, i in enumerate(positions):
                array = np.asarray(stored[str(k)])
                if array.shape != np.shape(values[i]):
                    raise ValueError(f"load_weights({path!r}): weight {k} of layer {name!r} has shape "
                                     f"{np.shape(values[i])}, but the file holds {array.shape} at {key}/{k}.")
                values[i] = array
    trainer.set_weights(values)
