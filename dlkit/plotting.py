"""Training curves: what users look at to diagnose a learning rate too low or too high."""
from __future__ import annotations

from typing import Optional, Sequence


def plot_history(history, path: str, metrics: Optional[Sequence[str]] = None) -> str:
    """Draw training vs validation curves of a ``History`` (or its ``.history`` dict) to a PNG.

    One panel per quantity (``loss``, then each metric), the training curve solid
    and ``val_<name>`` dashed, against the epoch number. Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = getattr(history, "history", history)
    names = list(metrics) if metrics is not None else [k for k in logs if not k.startswith("val_")]
    if not names:
        raise ValueError("The history holds no values to plot; train with fit() first.")
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        if name not in logs:
            raise ValueError(f"No {name!r} in the history; it has {', '.join(logs)}.")
        epochs = range(1, len(logs[name]) + 1)
        axis.plot(epochs, logs[name], label=f"training {name}")
        if f"val_{name}" in logs:
            axis.plot(epochs, logs[f"val_{name}"], "--", label=f"validation {name}")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
