"""Deep convnets (``dlkit.models.convnets``): residual and depthwise-separable blocks have Keras' shapes
and parameter counts, a projection shortcut appears exactly when the shapes change, a ResNet learns;
the examples' accuracies under ``-m slow``."""
import os
import re

import numpy as np
import pytest

import dlkit
from dlkit.models import mini_xception, residual_block, resnet, xception_block

ROW = re.compile(r"^(\S+) \((\w+)\)\s+(\(.*?\))\s+([\d,]+)$", re.M)


def summary_rows(model, capsys) -> dict:
    """``{layer name: (type, output shape, param count)}`` read from ``summary()``, input layers left out."""
    dlkit.Trainer(model).summary()
    rows = {name: (kind, shape, int(count.replace(",", "")))
            for name, kind, shape, count in ROW.findall(capsys.readouterr().out)}
    return {name: row for name, row in rows.items() if row[0] != "InputLayer"}


def keras_rows(model) -> dict:
    return {layer.name: (type(layer).__name__, str(tuple(layer.output.shape)), layer.count_params())
            for layer in model.layers if type(layer).__name__ != "InputLayer"}


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def keras_residual_block(keras, x, filters, strides, name):
    """The basic block as Keras' applications write it (BatchNormalization after each convolution, no bias)."""
    layers = keras.layers
    y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_1_conv")(x)
    y = layers.Activation("relu", name=f"{name}_1_relu")(layers.BatchNormalization(name=f"{name}_1_bn")(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    y = layers.BatchNormalization(name=f"{name}_2_bn")(y)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_0_bn")(shortcut)
    return layers.Activation("relu", name=f"{name}_out")(layers.add([y, shortcut], name=f"{name}_add"))


def keras_xception_block(keras, x, filters, name):
    """Chollet's mini-Xception block (Deep Learning with Python, 2nd ed., listing 9.5's loop body)."""
    layers = keras.layers
    residual = x
    for i in (1, 2):
        x = layers.BatchNormalization(name=f"{name}_{i}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_{i}_relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_{i}_sepconv")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    residual = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False, name=f"{name}_0_conv")(residual)
    return layers.add([x, residual], name=f"{name}_add")


def test_resnet_has_keras_shapes_and_parameter_counts(keras, capsys):
    ours = summary_rows(resnet((28, 28, 1), 10, filters=(8, 16, 32)), capsys)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.Activation("relu", name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
    for i, (filters, strides) in enumerate([(8, 1), (16, 2), (32, 2)], start=1):
        x = keras_residual_block(keras, x, filters, strides, f"stage{i}_block1")
    x = layers.Dense(10, name="predictions")(layers.GlobalAveragePooling2D(name="avg_pool")(x))
    theirs = keras_rows(keras.Model(inputs, x))
    assert ours == theirs
    assert sum(count for _, _, count in ours.values()) == keras.Model(inputs, x).count_params() == 20146


def test_mini_xception_has_keras_shapes_and_parameter_counts(keras, capsys):
    ours = summary_rows(mini_xception((28, 28, 1), 10, filters=(16, 32), stem_filters=8), capsys)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(8, 5, use_bias=False, name="stem_conv")(inputs)
    for i, filters in enumerate((16, 32), start=1):
        x = keras_xception_block(keras, x, filters, f"block{i}")
    x = layers.Dropout(0.5, name="top_dropout")(layers.GlobalAveragePooling2D(name="avg_pool")(x))
    theirs = keras_rows(keras.Model(inputs, layers.Dense(10, name="predictions")(x)))
    assert ours == theirs
    assert ours["block2_1_sepconv"] == ("SeparableConv2D", "(None, 12, 12, 32)", 16 * 9 + 16 * 32)


@pytest.mark.parametrize("shape, filters, strides, projected", [
    ((8, 8, 16), 16, 1, False),  # same shape: identity
    ((8, 8, 16), 32, 1, True),  # more channels
    ((8, 8, 16), 16, 2, True),  # half the size
    ((7, 7, 16), 32, 2, True),  # both, odd size: 4x4
])
def test_a_projection_shortcut_exactly_when_the_shape_changes(shape, filters, strides, projected):
    inputs = dlkit.Input(shape)
    outputs = residual_block(inputs, filters, strides, name="block")
    names = dict(dlkit.Model(inputs, outputs).named_layers())
    assert outputs.shape == (None, -(-shape[0] // strides), -(-shape[1] // strides), filters)
    assert ("block_0_conv" in names) == ("block_0_bn" in names) == projected
    convs = [layer for layer in names.values() if isinstance(layer, dlkit.layers.Conv2D)]
    assert len(convs) == 2 + projected  # the same without names
    unnamed = dlkit.Model(inputs, residual_block(inputs, filters, strides))
    assert sum(isinstance(layer, dlkit.layers.Conv2D) for _, layer in unnamed.named_layers()) == 2 + projected
    assert "predictions" not in names


def test_the_identity_shortcut_carries_the_input():
    """With the residual branch silenced (the last BatchNormalization's gamma and beta zero), an identity
    block computes relu(x); a projection block, relu(projection)."""
    inputs = dlkit.Input((6, 6, 4))
    model = dlkit.Model(inputs, residual_block(inputs, 4, name="block"))
    trainer = dlkit.Trainer(model)
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 4)).astype(np.float32)
    trainer.build(x)
    bn = trainer.get_layer("block_2_bn")
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([np.zeros_like(gamma), np.zeros_like(beta), mean, var])
    np.testing.assert_allclose(trainer.predict(x, verbose=0), np.maximum(x, 0), atol=1e-6)


def test_xception_block_halves_the_size_and_projects_the_residual():
    inputs = dlkit.Input((9, 9, 8))
    outputs = xception_block(inputs, 16, name="b")
    names = dict(dlkit.Model(inputs, outputs).named_layers())
    assert outputs.shape == (None, 5, 5, 16)
    assert names["b_0_conv"].strides == 2 and names["b_0_conv"].kernel_size == 1
    assert [n for n, layer in names.items() if isinstance(layer, dlkit.layers.SeparableConv2D)] == ["b_1_sepconv",
                                                                                                    "b_2_sepconv"]


def test_features_without_the_top_and_bad_pooling():
    assert resnet((28, 28, 1), include_top=False).output_shape == (None, 7, 7, 64)
    assert resnet((28, 28, 1), include_top=False, pooling="max").output_shape == (None, 64)
    assert mini_xception((28, 28, 1), include_top=False, pooling="avg").output_shape == (None, 128)
    with pytest.raises(ValueError, match="pooling must be None, 'avg' or 'max'"):
        resnet((28, 28, 1), include_top=False, pooling="mean")


def test_a_small_resnet_learns_a_slice_of_the_digits():
    (x, y), _ = dlkit.datasets.split_digits()
    model = resnet((28, 28, 1), 10, filters=(8, 16, 32), momentum=0.9)
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(1e-2),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = trainer.fit(x[:512], y[:512], batch_size=32, epochs=4, verbose=0)  # 64 steps
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses  # measured: 1.91 -> 0.70
    assert history.history["accuracy"][-1] > 0.6, history.history


@pytest.mark.slow
def test_the_resnet_example_is_at_least_as_accurate_as_the_cnn_example(capsys, load_example):
    accuracy = load_example("resnet_digits").main()
    out = capsys.readouterr().out
    assert "test accuracy" in out and "epoch time" in out
    assert accuracy >= 0.98  # examples/mnist_cnn.py's bar is 0.97 (it measures 0.9805 on this split)


@pytest.mark.slow
def test_the_xception_example_learns_the_digits(capsys, load_example):
    accuracy = load_example("xception_digits").main()
    assert "test accuracy" in capsys.readouterr().out
    assert accuracy >= 0.97
