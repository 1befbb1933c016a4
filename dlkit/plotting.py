"""Pictures users look at: training curves (a learning rate too low or too high), heatmaps over
images (Grad-CAM, ``dlkit.inspection``), grids of generated images, and a VAE's 2-D latent space."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from dlkit.callbacks.monitor import auto_mode


def plot_history(history, path: Optional[str] = None, metrics: Optional[Sequence[str]] = None):
    """Training and validation curves of a ``History`` (or its ``.history`` dict), the best epoch marked.

    One axes per quantity (``loss``, then each metric): the training curve solid, ``val_<name>`` dashed on
    the same axes, against the epoch number (1-based), then a star at the best epoch of the validation
    curve (of the training curve without one). Best is the minimum for loss-like names and the maximum
    for accuracy-like ones (``acc``, ``auc``, ``precision`` ...), as callbacks' ``mode="auto"`` decides
    (``dlkit.callbacks.monitor.auto_mode``); the first of equal values wins, as ``EarlyStopping`` keeps it.
    ``axes.lines`` of each axes are ``[training, validation (if any), best]``.

    Args:
        history: A ``History`` (what ``fit`` returns) or its ``.history`` dict.
        path: A PNG file to write too; ``None``: only return the figure.
        metrics: The quantities to plot; ``None``: every key without the ``val_`` prefix.

    Returns:
        The matplotlib ``Figure`` (one axes per quantity, ``figure.axes``).

    Raises:
        ValueError: The history is empty, or lacks a requested quantity.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    logs = getattr(history, "history", history)
    names = list(metrics) if metrics is not None else [k for k in logs if not k.startswith("val_")]
    if not names:
        raise ValueError("The history holds no values to plot; train with fit() first.")
    for name in names:
        if name not in logs:
            raise ValueError(f"No {name!r} in the history; it has {', '.join(logs)}.")
    figure = Figure(figsize=(4.5 * len(names), 3.5))
    for axis, name in zip(figure.subplots(1, len(names), squeeze=False)[0], names):
        epochs = np.arange(1, len(logs[name]) + 1)
        axis.plot(epochs, logs[name], label=f"training {name}")
        watched = f"val_{name}" if f"val_{name}" in logs else name
        if watched != name:
            axis.plot(epochs, logs[watched], "--", label=f"validation {name}")
        best = best_epoch(logs[watched], watched)
        axis.plot([best + 1], [logs[watched][best]], "*", markersize=12, label=f"best: epoch {best + 1}")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(name)
        axis.legend()
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure


def best_epoch(values: Sequence[float], name: str) -> int:
    """The 0-based index of the best value of a logged quantity: the lowest for a loss-like ``name``, the
    highest for an accuracy-like one (``dlkit.callbacks.monitor.auto_mode``); NaNs are skipped and the
    first of equal values wins.

    Args:
        values: The quantity per epoch.
        name: Its logs key (``val_loss``, ``accuracy`` ...), which decides min or max.

    Returns:
        The index of the best epoch.
    """
    values = np.asarray(values, np.float64)
    return int(np.nanargmax(values) if auto_mode(name) == "max" else np.nanargmin(values))


def plot_heatmap(image, heatmap, ax=None, alpha: float = 0.5, cmap: str = "jet"):
    """Overlay a heatmap (Grad-CAM, a class activation map, a saliency map) on its image.

    Args:
        image: ``(rows, cols)``, ``(rows, cols, 1)`` (drawn in gray) or ``(rows, cols, 3)`` array.
        heatmap: ``(rows', cols')`` array; drawn stretched over the image, so a map at the feature map's
            size lines up too.
        ax: The matplotlib ``Axes`` to draw on; ``None``: a new figure's.
        alpha: The heatmap's opacity.
        cmap: The heatmap's colour map.

    Returns:
        The ``Axes``: ``ax.images`` holds the image then the heatmap.
    """
    image, heatmap = np.asarray(image), np.asarray(heatmap)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(3, 3)).subplots()
    extent = (-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    ax.imshow(heatmap, cmap=cmap, alpha=alpha, extent=extent, interpolation="bilinear")
    ax.axis("off")
    return ax


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images, cols: Optional[int] = None) -> np.ndarray:
    """Tile ``images`` ``(n, rows, cols[, channels])`` into one array, ``cols`` per line (default
    about ``sqrt(n)``), blank cells after the last image.

    Args:
        images: Array ``(n, height, width)`` or ``(n, height, width, channels)``; one channel is dropped.
        cols: Images per line; ``None``: ``ceil(sqrt(n))``.

    Returns:
        Array ``(lines * height, cols * width[, channels])`` of ``images``' dtype, zeros in blank cells.

    Raises:
        ValueError: ``images`` has another rank or is empty.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or not len(images):
        raise ValueError(f"images must be (n, rows, cols) or (n, rows, cols, channels) with n > 0, got shape "
                         f"{images.shape}.")
    n, height, width = images.shape[:3]
    cols = cols or int(np.ceil(np.sqrt(n)))
    lines = -(-n // cols)
    grid = np.zeros((lines * height, cols * width, *images.shape[3:]), images.dtype)
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        grid[row * height:(row + 1) * height, col * width:(col + 1) * width] = image
    return grid


def plot_image_grid(images, path: str, cols: Optional[int] = None, title: Optional[str] = None) -> str:
    """Save ``images`` (values in [0, 1]; grayscale or RGB) as one tiled PNG.

    Args:
        images: Array ``(n, height, width[, channels])``; values are clipped to [0, 1].
        path: The PNG file to write.
        cols: Images per line; ``None``: ``ceil(sqrt(n))``.
        title: Optional title above the grid.

    Returns:
        ``path``.

    Raises:
        ValueError: ``images`` has another rank or is empty.
    """
    plt = _pyplot()
    grid = image_grid(np.clip(np.asarray(images, np.float32), 0.0, 1.0), cols)
    figure = plt.figure(figsize=(grid.shape[1] / 28, grid.shape[0] / 28 + (0.4 if title else 0)))
    plt.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0)
    plt.axis("off")
    if title:
        plt.title(title)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_latent_space(trainer, path: str, n: int = 15, scale: float = 1.0) -> str:
    """Decode an ``n x n`` grid of codes spanning ``[-scale, scale]^2`` with a trained 2-D-latent VAE
    (or GAN) and save the images as one PNG, ``z_1`` growing rightwards and ``z_2`` upwards.

    Args:
        trainer: A ``Trainer`` whose model has ``latent_dim == 2`` and a ``generate`` method.
        path: The PNG file to write.
        n: Grid points per axis (``n * n`` images).
        scale: The grid spans ``[-scale, scale]`` on both axes.

    Returns:
        ``path``.

    Raises:
        ValueError: The model's ``latent_dim`` is not 2.
    """
    latent_dim = getattr(trainer.model, "latent_dim", None)
    if latent_dim != 2:
        raise ValueError(f"plot_latent_space draws a 2-D latent space; this model's latent_dim is {latent_dim}. "
                         f"Train a VAE(..., latent_dim=2), or plot samples with plot_image_grid.")
    axis = np.linspace(-scale, scale, n, dtype=np.float32)
    z = np.stack(np.meshgrid(axis, axis[::-1]), axis=-1).reshape(-1, 2)
    return plot_image_grid(trainer.predict(z, method="generate"), path, cols=n)
