"""Preprocessing and augmentation layers (Keras ``Rescaling``, ``Random*``; ``Normalization`` is in
``dlkit.layers.normalization_preprocessing``).

Images are channels-last, ``(batch, height, width, channels)`` (or one unbatched
``(height, width, channels)`` image). The ``Random*`` layers act only with
``training=True``, drawing from the ``'dropout'`` RNG stream, and are the
identity otherwise (``RandomCrop`` centre-crops instead). Each sample of a
batch draws its own transform.

Geometric transforms are inverse maps, in Keras' ``(x, y) = (column, row)``
pixel coordinates: output pixel ``(x, y)`` takes the input value at
``M @ (x, y, 1)`` for a per-sample 2x3 matrix ``M``, read by
``jax.scipy.ndimage.map_coordinates`` (bilinear, or nearest) with Keras'
``fill_mode`` outside the image:

* ``'reflect'``: ``(d c b a | a b c d | d c b a)``
* ``'constant'``: ``(k k k k | a b c d | k k k k)`` with ``k = fill_value``
* ``'nearest'``: ``(a a a a | a b c d | d d d d)``
* ``'wrap'``: ``(a b c d | a b c d | a b c d)``
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from dlkit.layers.base import Layer, as_float
from dlkit.layers.normalization_preprocessing import Normalization, frozen_floats  # noqa: F401  (re-exported)

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = {"nearest": 0, "bilinear": 1}


def _check_choice(value, choices, what: str) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {what} {value!r}; expected one of {tuple(choices)}.")


def _factor_range(factor, what: str, low: float = -1.0, high: float = 1.0) -> tuple:
    """Keras' factor: a number ``f`` means ``(-|f|, |f|)``; a pair is ``(lower, upper)`` (sorted)."""
    pair = tuple(sorted(factor)) if isinstance(factor, (tuple, list)) else (-abs(factor), abs(factor))
    if len(pair) != 2 or not all(low <= float(f) <= high for f in pair):
        raise ValueError(f"{what} must be a number or a pair of numbers in [{low}, {high}], got {factor!r}.")
    return float(pair[0]), float(pair[1])


def _as_float(x, dtype):
    return as_float(jnp.asarray(x), dtype)


def _on_batch(fn, inputs, dtype):
    """Apply ``fn`` to a ``(batch, h, w, c)`` array (integers as ``dtype``, the layer's compute dtype);
    an unbatched ``(h, w, c)`` image is a batch of one."""
    inputs = _as_float(inputs, dtype)
    if inputs.ndim == 3:
        return fn(inputs[None])[0]
    if inputs.ndim != 4:
        raise ValueError(f"Expected channels-last images (batch, height, width, channels), got shape {inputs.shape}.")
    return fn(inputs)


def affine_transform(images, matrices, fill_mode: str = "reflect", fill_value: float = 0.0,
                     interpolation: str = "bilinear"):
    """``out[b, y, x, c] = images[b, M_b[1] @ (x, y, 1), M_b[0] @ (x, y, 1), c]``, resampled.

    ``matrices`` has shape ``(batch, 2, 3)``: each maps an output pixel's
    ``(x, y, 1)`` (column, row) to the input point it reads.

    Args:
        images: Array ``(batch, height, width, channels)``.
        matrices: Inverse maps ``(batch, 2, 3)``, one per image.
        fill_mode: ``'reflect'``, ``'wrap'``, ``'constant'`` or ``'nearest'`` (module docstring).
        fill_value: The value outside the image with ``fill_mode='constant'``.
        interpolation: ``'bilinear'`` or ``'nearest'``.

    Returns:
        The resampled images, shape and dtype of ``images``.

    Raises:
        ValueError: An unknown ``fill_mode`` or ``interpolation``.
    """
    _check_choice(fill_mode, FILL_MODES, "fill_mode")
    _check_choice(interpolation, INTERPOLATIONS, "interpolation")
    _, height, width, _ = images.shape
    # Pixel coordinates stay float32 whatever the images' dtype: bfloat16 cannot address a pixel
    # past 256 exactly.
    rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32),
                              indexing="ij")
    grid = jnp.stack([cols, rows, jnp.ones_like(rows)])  # (3, h, w)

    def one(image, matrix):
        source = jnp.einsum("ij,jhw->ihw", matrix, grid)  # input (x, y) per output pixel
        sample = lambda channel: map_coordinates(channel, [source[1], source[0]], order=INTERPOLATIONS[interpolation],
                                                 mode=fill_mode, cval=fill_value)
        return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)

    return jax.vmap(one)(images, matrices.astype(jnp.float32)).astype(images.dtype)


class Rescaling(Layer):
    """``y = x * scale + offset`` (Keras ``Rescaling``; e.g. ``Rescaling(1 / 255)``).

    ``scale`` and ``offset`` may be numbers or per-channel sequences (broadcast on the last axis).
    Integer inputs are cast to the compute dtype (float32 by default); the same in training and inference.

    Args:
        scale: Multiplier, a number or a per-channel sequence.
        offset: Added after scaling, a number or a per-channel sequence.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array of any shape.
        training: Unused; Keras' flag.

    Returns:
        A float array of the shape of ``inputs``.
    """

    scale: Any
    offset: Any = 0.0
    keras_name: ClassVar[str] = "rescaling"

    def __post_init__(self):
        object.__setattr__(self, "scale", frozen_floats(self.scale))
        object.__setattr__(self, "offset", frozen_floats(self.offset))
        super().__post_init__()

    def call(self, inputs, training: bool = False):
        x = _as_float(inputs, self.compute_dtype)
        return x * jnp.asarray(self.scale, x.dtype) + jnp.asarray(self.offset, x.dtype)


class RandomFlip(Layer):
    """Keras' ``RandomFlip``: in training, flip each image, with probability 1/2, left-right
    (``'horizontal'``), top-bottom (``'vertical'``) or both (``'horizontal_and_vertical'``: two
    independent draws); the identity in inference.

    Args:
        mode: ``'horizontal'``, ``'vertical'`` or ``'horizontal_and_vertical'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Images ``(batch, height, width, channels)`` or one ``(height, width, channels)``.
        training: Flip only if True.

    Returns:
        A float array of the shape of ``inputs``.

    Raises:
        ValueError: An unknown ``mode`` (at construction), or inputs of another rank.
    """

    mode: str = "horizontal_and_vertical"
    keras_name: ClassVar[str] = "random_flip"

    def __post_init__(self):
        _check_choice(self.mode, ("horizontal", "vertical", "horizontal_and_vertical"), "RandomFlip mode")
        super().__post_init__()

    def call(self, inputs, training: bool = False):
        if not training:
            return _as_float(inputs, self.compute_dtype)

        def flip(images):
            keys = jax.random.split(self.make_rng("dropout"))
            for key, axis, name in ((keys[0], 2, "horizontal"), (keys[1], 1, "vertical")):
                if name in self.mode:
                    flips = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
                    images = jnp.where(flips, jnp.flip(images, axis), images)
            return images

        return _on_batch(flip, inputs, self.compute_dtype)


class _RandomAffine(Layer):
    """A random geometric transform: subclasses give their factor ranges and draw the per-sample inverse maps."""

    def __post_init__(self):
        _check_choice(self.fill_mode, FILL_MODES, "fill_mode")
        _check_choice(self.interpolation, INTERPOLATIONS, "interpolation")
        self._ranges()  # refuses bad factors when the layer is made
        super().__post_init__()

    @nn.nowrap
    def _ranges(self) -> tuple:
        raise NotImplementedError

    def _matrices(self, key, n: int, height: int, width: int):
        raise NotImplementedError

    def call(self, inputs, training: bool = False):
        if not training:
            return _as_float(inputs, self.compute_dtype)

        def transform(images):
            n, height, width, _ = images.shape
            matrices = self._matrices(self.make_rng("dropout"), n, height, width)
            return affine_transform(images, matrices, self.fill_mode, self.fill_value, self.interpolation)

        return _on_batch(transform, inputs, self.compute_dtype)


def _uniform(key, n: int, bounds: tuple):
    return jax.random.uniform(key, (n,), jnp.float32, bounds[0], bounds[1])


class RandomTranslation(_RandomAffine):
    """Keras' ``RandomTranslation``: in training, shift each image by ``dy = u * height`` rows and
    ``dx = v * width`` columns, ``u ~ U(height_factor)``, ``v ~ U(width_factor)``:
    ``out(x, y) = in(x - dx, y - dy)``; the identity in inference.

    A factor ``f`` means ``(-f, f)``; positive shifts move the content down / right.

    Args:
        height_factor: Fraction of the height, a number ``f`` or a pair ``(lower, upper)`` in ``[-1, 1]``.
        width_factor: Fraction of the width, likewise.
        fill_mode: ``'reflect'``, ``'wrap'``, ``'constant'`` or ``'nearest'`` (module docstring).
        interpolation: ``'bilinear'`` or ``'nearest'``.
        fill_value: The value outside the image with ``fill_mode='constant'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Images ``(batch, height, width, channels)`` or one ``(height, width, channels)``.
        training: Transform only if True.

    Returns:
        A float array of the shape of ``inputs``.

    Raises:
        ValueError: A bad factor, ``fill_mode`` or ``interpolation`` (at construction), or inputs of another rank.
    """

    height_factor: Any
    width_factor: Any
    fill_mode: str = "reflect"
    interpolation: str = "bilinear"
    fill_value: float = 0.0
    keras_name: ClassVar[str] = "random_translation"

    @nn.nowrap
    def _ranges(self):
        return _factor_range(self.height_factor, "height_factor"), _factor_range(self.width_factor, "width_factor")

    def _matrices(self, key, n, height, width):
        (k_h, k_w), (h_range, w_range) = jax.random.split(key), self._ranges()
        dy, dx = _uniform(k_h, n, h_range) * height, _uniform(k_w, n, w_range) * width
        one, zero = jnp.ones(n), jnp.zeros(n)
        return jnp.stack([jnp.stack([one, zero, -dx], -1), jnp.stack([zero, one, -dy], -1)], 1)


class RandomRotation(_RandomAffine):
    """Keras' ``RandomRotation``: in training (the identity in inference), rotate each image by
    ``theta = 2 * pi * u``, ``u ~ U(factor)`` (a factor ``f`` means ``(-f, f)``), about its centre
    ``(cx, cy) = ((width - 1) / 2, (height - 1) / 2)``; positive angles turn the content
    counter-clockwise. Inverse map::

        x_in = cos(theta) (x - cx) - sin(theta) (y - cy) + cx
        y_in = sin(theta) (x - cx) + cos(theta) (y - cy) + cy

    Args:
        factor: Fraction of a full turn, a number ``f`` or a pair ``(lower, upper)`` in ``[-1, 1]``.
        fill_mode: ``'reflect'``, ``'wrap'``, ``'constant'`` or ``'nearest'`` (module docstring).
        interpolation: ``'bilinear'`` or ``'nearest'``.
        fill_value: The value outside the image with ``fill_mode='constant'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Images ``(batch, height, width, channels)`` or one ``(height, width, channels)``.
        training: Transform only if True.

    Returns:
        A float array of the shape of ``inputs``.

    Raises:
        ValueError: A bad factor, ``fill_mode`` or ``interpolation`` (at construction), or inputs of another rank.
    """

    factor: Any
    fill_mode: str = "reflect"
    interpolation: str = "bilinear"
    fill_value: float = 0.0
    keras_name: ClassVar[str] = "random_rotation"

    @nn.nowrap
    def _ranges(self):
        return _factor_range(self.factor, "factor")

    def _matrices(self, key, n, height, width):
        theta = 2.0 * math.pi * _uniform(key, n, self._ranges())
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        return jnp.stack([jnp.stack([cos, -sin, cx - cos * cx + sin * cy], -1),
                          jnp.stack([sin, cos, cy - sin * cx - cos * cy], -1)], 1)


class RandomZoom(_RandomAffine):
    """Keras' ``RandomZoom``: in training (the identity in inference), zoom each image about its
    centre by ``z_y = 1 + u``, ``u ~ U(height_factor)``, and ``z_x = 1 + v``, ``v ~ U(width_factor)``
    (``width_factor=None``: ``z_x = z_y``, keeping the aspect ratio). Positive factors zoom out,
    negative zoom in. Inverse map::

        x_in = z_x (x - cx) + cx,   y_in = z_y (y - cy) + cy

    Args:
        height_factor: A number ``f`` or a pair ``(lower, upper)`` in ``[-1, 1]``.
        width_factor: Likewise; ``None``: the height's zoom (aspect ratio kept).
        fill_mode: ``'reflect'``, ``'wrap'``, ``'constant'`` or ``'nearest'`` (module docstring).
        interpolation: ``'bilinear'`` or ``'nearest'``.
        fill_value: The value outside the image with ``fill_mode='constant'``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Images ``(batch, height, width, channels)`` or one ``(height, width, channels)``.
        training: Transform only if True.

    Returns:
        A float array of the shape of ``inputs``.

    Raises:
        ValueError: A bad factor, ``fill_mode`` or ``interpolation`` (at construction), or inputs of another rank.
    """

    height_factor: Any
    width_factor: Any = None
    fill_mode: str = "reflect"
    interpolation: str = "bilinear"
    fill_value: float = 0.0
    keras_name: ClassVar[str] = "random_zoom"

    @nn.nowrap
    def _ranges(self):
        width = None if self.width_factor is None else _factor_range(self.width_factor, "width_factor")
        return _factor_range(self.height_factor, "height_factor"), width

    def _matrices(self, key, n, height, width):
        (k_h, k_w), (h_range, w_range) = jax.random.split(key), self._ranges()
        zy = 1.0 + _uniform(k_h, n, h_range)
        zx = zy if w_range is None else 1.0 + _uniform(k_w, n, w_range)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        zero = jnp.zeros(n)
        return jnp.stack([jnp.stack([zx, zero, cx * (1.0 - zx)], -1), jnp.stack([zero, zy, cy * (1.0 - zy)], -1)], 1)


class RandomCrop(Layer):
    """Keras' ``RandomCrop``: crop each image to ``(height, width)``: at a uniformly random offset (drawn per
    sample) in training, at the centre (offset ``(H - height) // 2``) in inference.

    An input smaller than the target is instead centre-cropped to the target's
    aspect ratio and resized (bilinear) to it, in both modes, as Keras does.

    Args:
        height: Output height.
        width: Output width.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Images ``(batch, H, W, channels)`` or one ``(H, W, channels)``.
        training: Random offsets if True, else the centre.

    Returns:
        A float array ``(batch, height, width, channels)`` (or ``(height, width, channels)``).

    Raises:
        ValueError: Inputs of another rank.
    """

    height: int
    width: int
    keras_name: ClassVar[str] = "random_crop"

    def call(self, inputs, training: bool = False):
        def crop(images):
            n, h, w, c = images.shape
            if h < self.height or w < self.width:
                return _crop_to_aspect_and_resize(images, self.height, self.width)
            if not training:
                top, left = (h - self.height) // 2, (w - self.width) // 2
                return images[:, top:top + self.height, left:left + self.width]
            k_top, k_left = jax.random.split(self.make_rng("dropout"))
            tops = jax.random.randint(k_top, (n,), 0, h - self.height + 1)
            lefts = jax.random.randint(k_left, (n,), 0, w - self.width + 1)
            window = lambda image, top, left: jax.lax.dynamic_slice(image, (top, left, 0), (self.height, self.width, c))
            return jax.vmap(window)(images, tops, lefts)

        return _on_batch(crop, inputs, self.compute_dtype)


def _crop_to_aspect_and_resize(images, height: int, width: int):
    """Keras' ``smart_resize``: the largest centred window of the target aspect ratio, resized to it."""
    n, h, w, c = images.shape
    crop_h = max(min(h, int(w * height / width)), 1)
    crop_w = max(min(w, int(h * width / height)), 1)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    window = images[:, top:top + crop_h, left:left + crop_w]
    return jax.image.resize(window, (n, height, width, c), "bilinear").astype(images.dtype)
