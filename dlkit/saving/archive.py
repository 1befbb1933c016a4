"""dlkit's ``.keras`` archive: one zip file holding a model's config and its arrays.

Members (stored uncompressed, as Keras stores its own ``.keras`` zip):

* ``config.json``: the architecture, the compile arguments and the trainer's settings
  (``dlkit.saving.model_file``), with the format and the dlkit version that wrote it;
* ``metadata.json``: the format, the dlkit version, the date, and the record of every array:
  its path in the training state (``'params/dense/kernel'``, ``'opt_state/0/mu/dense/kernel'``),
  shape, dtype, SHA-256 and member name;
* ``arrays/<k>.bin``: each array's raw bytes (C order), read back with the recorded dtype and shape.

The file is written to a temporary name in the same directory and renamed over ``path``
when complete (``os.replace``), so a crash mid-save leaves the previous file intact. Reading
checks the zip's CRC and each array's SHA-256: a damaged file raises ``ArchiveError`` naming
the member or the array.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
import zipfile

import jax.numpy as jnp
import numpy as np

import dlkit

FORMAT = "dlkit.keras"
FORMAT_VERSION = 1
_CONFIG, _METADATA = "config.json", "metadata.json"


class ArchiveError(ValueError):
    """A ``.keras`` file that cannot be read as dlkit wrote it: not a zip, damaged (a checksum or
    size that differs), or another program's; the message names the file and what is wrong."""


def version() -> str:
    """The dlkit version recorded in archives.

    Returns:
      ``dlkit.__version__``.
    """
    return getattr(dlkit, "__version__", "unknown")


def write(path: str, config: dict, arrays: dict) -> None:
    """Write an archive atomically: a temporary file in ``path``'s directory, renamed over ``path``.

    Args:
      path: the ``.keras`` file (its directory is created if missing).
      config: the JSON-able config (``config.json``).
      arrays: ``{path in the state: numpy array}``, in the order to store them.
    """
    record, blobs = [], []
    for k, (name, array) in enumerate(arrays.items()):
        data = np.ascontiguousarray(array).tobytes()
        record.append({"path": name, "shape": list(np.shape(array)), "dtype": np.asarray(array).dtype.name,
                       "sha256": hashlib.sha256(data).hexdigest(), "file": f"arrays/{k}.bin"})
        blobs.append(data)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "dlkit_version": version(),
                "date_saved": datetime.datetime.now(datetime.UTC).isoformat(), "arrays": record}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".keras.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
                archive.writestr(_CONFIG, json.dumps(config, indent=1))
                archive.writestr(_METADATA, json.dumps(metadata, indent=1))
                for entry, data in zip(record, blobs):
                    archive.writestr(entry["file"], data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read(path: str) -> tuple:
    """Read an archive, every array checked against its recorded size and SHA-256.

    Args:
      path: a file written by ``write``.

    Returns:
      ``(config, metadata, arrays)``: the two JSON dicts and ``{path in the state: numpy array}``.

    Raises:
      FileNotFoundError: no file at ``path``.
      ArchiveError: not a zip, a zip of another format (a Keras-written ``.keras``), or a member
        or array that is damaged (named).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if _CONFIG not in names or _METADATA not in names:
                keras = " It looks like an archive written by Keras: load its weights into the same " \
                        "architecture with trainer.load_weights(path)." if "model.weights.h5" in names else ""
                raise ArchiveError(f"{path!r} is a zip file but not a dlkit model archive (no {_CONFIG} and "
                                   f"{_METADATA}).{keras}")
            config, metadata = (json.loads(_member(archive, path, name)) for name in (_CONFIG, _METADATA))
            if metadata.get("format") != FORMAT or metadata.get("format_version", 0) > FORMAT_VERSION:
                raise ArchiveError(f"{path!r} is in format {metadata.get('format')!r} version "
                                   f"{metadata.get('format_version')}; this dlkit reads {FORMAT!r} up to "
                                   f"version {FORMAT_VERSION}.")
            arrays = {entry["path"]: _array(entry, _member(archive, path, entry["file"]), path)
                      for entry in metadata["arrays"]}
    except zipfile.BadZipFile as error:
        raise ArchiveError(f"{path!r} is damaged or not a dlkit .keras archive (not a readable zip file: "
                           f"{error}).") from error
    return config, metadata, arrays


def _member(archive: zipfile.ZipFile, path: str, name: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError as error:
        raise ArchiveError(f"{path!r} is damaged: it lacks its member {name!r}.") from error
    except (zipfile.BadZipFile, OSError, EOFError) as error:  # a CRC that differs, a truncated member
        raise ArchiveError(f"{path!r} is damaged: its member {name!r} does not read back ({error}).") from error


def _array(entry: dict, data: bytes, path: str) -> np.ndarray:
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ArchiveError(f"{path!r} is damaged: the array {entry['path']!r} ({entry['file']}) does not match "
                           f"its SHA-256. Save the model again, or load an intact copy.")
    dtype = jnp.dtype(entry["dtype"])
    if len(data) != dtype.itemsize * int(np.prod(entry["shape"], dtype=np.int64)):
        raise ArchiveError(f"{path!r} is damaged: the array {entry['path']!r} has {len(data)} bytes, not the "
                           f"size of {entry['dtype']} {tuple(entry['shape'])}.")
    return np.frombuffer(data, dtype).reshape(entry["shape"]).copy()
