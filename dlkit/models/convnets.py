"""Deep convnets in Keras' functional style: residual blocks (ResNet) and depthwise-separable
blocks (Xception), and small models built from them.

::

    inputs = dlkit.Input((28, 28, 16))
    x = residual_block(inputs, 16)              # identity shortcut: the output has the input's shape
    x = residual_block(x, 32, strides=2)        # projection shortcut: a 1x1 Conv2D with strides 2
    x = xception_block(x, 64)                   # SeparableConv2D twice, MaxPooling2D, strided 1x1 shortcut

The blocks take and return symbolic tensors (``dlkit.Input(...)`` or a layer's output), as the
Keras course writes them; ``resnet`` and ``mini_xception`` return a ``dlkit.Model``. With
``name=``, a block names its layers as Keras' applications do (``{name}_1_conv``,
``{name}_1_bn``, ``{name}_0_conv`` for the shortcut, ``{name}_add``, ``{name}_out``), so that
``model.get_layer(...)`` and fine-tuning can pick a block out; without it, Keras' default
names (``conv2d_3``...).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from dlkit import layers, symbolic
from dlkit.models.functional import Model


def _named(name: Optional[str], suffix: str) -> dict:
    """``{"name": f"{name}_{suffix}"}``, or no name (Keras' default naming) when ``name`` is None."""
    return {} if name is None else {"name": f"{name}_{suffix}"}


def conv_bn(x, filters: int, kernel_size: int, strides: Any = 1, batch_norm: bool = True, relu: bool = True,
            momentum: float = 0.99, name: Optional[str] = None):
    """``Conv2D(padding="same")``, then ``BatchNormalization`` and ``relu``: the unit of a ResNet.

    Args:
        x: A symbolic 4-D tensor (batch, height, width, channels).
        filters: The convolution's output channels.
        kernel_size: Its window (an int or a pair).
        strides: Its strides (an int or a pair).
        batch_norm: Whether a ``BatchNormalization`` follows (the convolution then has no bias,
            which the normalization would cancel).
        relu: Whether a ``relu`` activation ends the unit.
        momentum: The ``BatchNormalization``'s momentum (Keras' default 0.99; 0.9 for a few hundred steps).
        name: The prefix of the layers' names (``{name}_conv``, ``{name}_bn``, ``{name}_relu``), or None.

    Returns:
        The unit's symbolic output.
    """
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=not batch_norm,
                      **_named(name, "conv"))(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=momentum, **_named(name, "bn"))(x)
    return layers.Activation("relu", **_named(name, "relu"))(x) if relu else x


def residual_block(x, filters: int, strides: Any = 1, batch_norm: bool = True, momentum: float = 0.99,
                   name: Optional[str] = None):
    """A ResNet basic block (He et al. 2016): two 3x3 convolutions and a shortcut, ``add``-ed.

    ``Conv2D(3x3, strides)`` + ``BatchNormalization`` + ``relu``, then ``Conv2D(3x3)`` +
    ``BatchNormalization``; the shortcut is ``x`` itself (identity) when the result has the shape
    of ``x``, else a projection: a 1x1 ``Conv2D`` with the same strides (and its
    ``BatchNormalization``); then ``layers.add`` and ``relu``.

    Args:
        x: A symbolic 4-D tensor (batch, height, width, channels).
        filters: The block's output channels.
        strides: The first convolution's (and the projection's) strides: 2 halves height and width.
        batch_norm: Whether each convolution is followed by ``BatchNormalization``.
        momentum: The ``BatchNormalization``'s momentum.
        name: The prefix of the block's layer names (``{name}_1_conv``, ``{name}_0_conv``...), or None.

    Returns:
        The block's symbolic output: ``filters`` channels, height and width divided by ``strides``
        (rounded up).
    """
    def unit(z, kernel_size, unit_strides, relu, part):
        return conv_bn(z, filters, kernel_size, unit_strides, batch_norm, relu, momentum,
                       name=None if name is None else f"{name}_{part}")

    y = unit(unit(x, 3, strides, True, 1), 3, 1, False, 2)
    shortcut = x
    if tuple(y.shape) != tuple(x.shape):  # the projection shortcut
        shortcut = unit(x, 1, strides, False, 0)
    y = layers.add([y, shortcut], **_named(name, "add"))
    return layers.Activation("relu", **_named(name, "out"))(y)


def xception_block(x, filters: int, momentum: float = 0.99, name: Optional[str] = None):
    """A depthwise-separable residual block, as in the "mini Xception" of Chollet's *Deep Learning
    with Python* (2nd ed., ch. 9): twice ``BatchNormalization`` + ``relu`` + ``SeparableConv2D(3x3)``,
    then ``MaxPooling2D(3, strides=2, padding="same")``; the residual is a 1x1 ``Conv2D`` with
    strides 2, ``add``-ed.

    Args:
        x: A symbolic 4-D tensor (batch, height, width, channels).
        filters: The block's output channels.
        momentum: The ``BatchNormalization``'s momentum.
        name: The prefix of the block's layer names (``{name}_1_bn``, ``{name}_1_sepconv``, ``{name}_pool``,
            ``{name}_0_conv``, ``{name}_add``), or None.

    Returns:
        The block's symbolic output: ``filters`` channels, height and width halved (rounded up).
    """
    residual = x
    for i in (1, 2):
        x = layers.BatchNormalization(momentum=momentum, **_named(name, f"{i}_bn"))(x)
        x = layers.Activation("relu", **_named(name, f"{i}_relu"))(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, **_named(name, f"{i}_sepconv"))(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", **_named(name, "pool"))(x)
    residual = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False, **_named(name, "0_conv"))(residual)
    return layers.add([x, residual], **_named(name, "add"))


def _augmented(inputs, augmentation):
    """``inputs`` through the augmentation layer(s), in order."""
    if augmentation is None:
        return inputs
    x = inputs
    for layer in augmentation if isinstance(augmentation, Sequence) else [augmentation]:
        x = layer(x)
    return x


def _model(inputs, x, classes: int, include_top: bool, pooling: Optional[str], dropout: float,
           classifier_activation: Any, name: Optional[str]) -> Model:
    """Keras' applications' top: global pooling, ``Dropout``, ``Dense(classes)``; or features only."""
    if include_top or pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    elif pooling is not None:
        raise ValueError(f"pooling must be None, 'avg' or 'max'; got {pooling!r}.")
    if include_top:
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return Model(inputs, x, name=name)


def resnet(input_shape: Sequence[int], classes: int = 10, filters: Sequence[int] = (16, 32, 64), blocks: int = 1,
           augmentation: Any = None, batch_norm: bool = True, momentum: float = 0.99, include_top: bool = True,
           pooling: Optional[str] = None, dropout: float = 0.0, classifier_activation: Any = None,
           name: Optional[str] = None) -> Model:
    """A small ResNet: a 3x3 ``Conv2D`` + ``BatchNormalization`` + ``relu`` stem, then one stage of
    ``blocks`` residual blocks per entry of ``filters`` (every stage after the first starts with
    strides 2 and a projection shortcut), then Keras' applications' top.

    Args:
        input_shape: The shape of one image, (height, width, channels).
        classes: The number of classes of the top ``Dense`` layer.
        filters: The channels of each stage (the stem has ``filters[0]``).
        blocks: The residual blocks per stage; block ``j`` of stage ``i`` is named ``stage{i}_block{j}``
            (from 1).
        augmentation: A layer, or a list of layers (``RandomTranslation``...), applied to the inputs
            first; None: none.
        batch_norm: Whether the convolutions are followed by ``BatchNormalization``.
        momentum: The ``BatchNormalization``'s momentum (0.9 trains a few hundred steps well).
        include_top: Whether to end with ``GlobalAveragePooling2D``, ``Dropout`` and ``Dense(classes)``
            (Keras' ``include_top``); False: the model outputs the features.
        pooling: Without the top: None (the last stage's 4-D output), ``"avg"`` or ``"max"`` (global
            pooling to one vector per image), as in Keras' applications.
        dropout: The rate of the ``Dropout`` before the top ``Dense`` (0: none).
        classifier_activation: The top ``Dense``'s activation; None (default): logits, for a loss with
            ``from_logits=True``; ``"softmax"`` as in Keras' applications.
        name: The model's name (``"base"`` for a base to reuse), or None.

    Returns:
        A ``dlkit.Model``.
    """
    inputs = symbolic.Input(tuple(input_shape))
    x = conv_bn(_augmented(inputs, augmentation), filters[0], 3, batch_norm=batch_norm, momentum=momentum, name="stem")
    for i, width in enumerate(filters, start=1):
        for j in range(1, blocks + 1):
            x = residual_block(x, width, strides=2 if i > 1 and j == 1 else 1, batch_norm=batch_norm,
                               momentum=momentum, name=f"stage{i}_block{j}")
    return _model(inputs, x, classes, include_top, pooling, dropout, classifier_activation, name)


def mini_xception(input_shape: Sequence[int], classes: int = 10, filters: Sequence[int] = (32, 64, 128),
                  stem_filters: int = 32, stem_kernel_size: int = 5, stem_strides: Any = 1, augmentation: Any = None,
                  momentum: float = 0.99, include_top: bool = True, pooling: Optional[str] = None, dropout: float = 0.5,
                  classifier_activation: Any = None, name: Optional[str] = None) -> Model:
    """The "mini Xception" of Chollet's book (ch. 9): a ``Conv2D(stem_filters, stem_kernel_size,
    use_bias=False)`` stem, one ``xception_block`` per entry of ``filters`` (each halves height and
    width), then Keras' applications' top (``GlobalAveragePooling2D``, ``Dropout(0.5)``, ``Dense``).

    Args:
        input_shape: The shape of one image, (height, width, channels).
        classes: The number of classes of the top ``Dense`` layer.
        filters: The channels of each block; block ``i`` is named ``block{i}`` (from 1).
        stem_filters: The stem convolution's channels.
        stem_kernel_size: The stem convolution's window ("valid" padding, as in the book).
        stem_strides: The stem convolution's strides (1 in the book, on 180x180 images; 2 quarters the
            work of the blocks).
        augmentation: A layer, or a list of layers, applied to the inputs first; None: none.
        momentum: The ``BatchNormalization``'s momentum.
        include_top: Whether to end with pooling, ``Dropout`` and ``Dense(classes)``; False: the features.
        pooling: Without the top: None (4-D features), ``"avg"`` or ``"max"``.
        dropout: The rate of the ``Dropout`` before the top ``Dense`` (0: none).
        classifier_activation: The top ``Dense``'s activation; None (default): logits.
        name: The model's name, or None.

    Returns:
        A ``dlkit.Model``.
    """
    inputs = symbolic.Input(tuple(input_shape))
    x = _augmented(inputs, augmentation)
    x = layers.Conv2D(stem_filters, stem_kernel_size, strides=stem_strides, use_bias=False, name="stem_conv")(x)
    for i, width in enumerate(filters, start=1):
        x = xception_block(x, width, momentum, name=f"block{i}")
    return _model(inputs, x, classes, include_top, pooling, dropout, classifier_activation, name)
