"""Bundled offline sample data: the official MNIST test set (10,000 digits).

``load_digits()`` returns ``(x, y)``: ``x`` float32 ``(10000, 28, 28, 1)``
scaled to [0, 1], ``y`` int32 labels 0-9. ``split_digits()`` gives dlkit's
standard split: the first 8000 for training, the last 2000 for testing.
Public data (LeCun, Cortes, Burges), read from the IDX files shipped in
``dlkit/data``; nothing is downloaded.
"""
from __future__ import annotations

import functools
import gzip
from importlib import resources

import numpy as np


def _read_idx(name: str, offset: int) -> np.ndarray:
    with resources.files("dlkit").joinpath("data", name).open("rb") as f:
        return np.frombuffer(gzip.decompress(f.read()), np.uint8, offset=offset)


@functools.lru_cache(maxsize=1)
def _digits():
    images = _read_idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    labels = _read_idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int32)
    return images, labels


def load_digits():
    """All 10,000 digits of the MNIST test set (LeCun et al., 1998), read offline.

    Returns:
        ``(x, y)``: ``x`` float32 ``(10000, 28, 28, 1)`` in [0, 1], ``y`` int32 ``(10000,)`` labels 0-9.
    """
    images, labels = _digits()
    return images.astype(np.float32) / 255.0, labels.copy()


def split_digits(n_train: int = 8000):
    """dlkit's standard split of ``load_digits()``: the first ``n_train`` digits and the rest.

    Args:
        n_train: Number of training digits (default 8000, leaving 2000 for testing).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``, as ``load_digits`` gives them.
    """
    x, y = load_digits()
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])
