"""Utilities under Keras' names."""
from __future__ import annotations

import numpy as np


def to_categorical(y, num_classes=None, dtype="float32") -> np.ndarray:
    """One-hot encode integer labels: ``(N,)`` -> ``(N, num_classes)``."""
    y = np.asarray(y, dtype=np.int64).reshape(-1) if np.ndim(y) <= 1 else np.asarray(y, np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"Labels must lie in [0, {num_classes}); got values from {y.min()} to {y.max()}.")
    return np.eye(num_classes, dtype=dtype)[y]
