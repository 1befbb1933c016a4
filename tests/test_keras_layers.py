"""The Keras layers added for course programs (separable, depthwise and transposed convolutions,
padding, cropping, upsampling, spatial dropout, ``TimeDistributed``, ``RepeatVector``, ``Permute``,
batch renormalization) against Keras 3 on the same weights, and ``summary()`` of every public layer.

The numpy references run without Keras; the comparisons with Keras skip when it is not installed.
"""
import importlib
import importlib.util
import inspect
import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported anywhere

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit import summary as summary_lib
from dlkit.layers.base import DIAGNOSTICS, LOSSES
from dlkit.training import weights as weights_lib

RNG = np.random.default_rng(0)


def _keras():
    return pytest.importorskip("keras")


def _normal(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def _in_sequential(layer, x):
    """The layer inside a Sequential (so its variables sit under its name, as Keras lists them), its
    variables as zeros (their shapes traced, nothing compiled) and their key paths in Keras' order."""
    model, order = dlkit.Sequential([layer]), []

    def init(x):
        variables = model.init(jax.random.key(0), x)
        order.append(weights_lib.keras_order(dict(variables)))  # creation order, before the keys are sorted
        return variables

    shapes = jax.eval_shape(init, x)
    return model, jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), dict(shapes)), order[0]


def _initialized(layer, x):
    """The layer inside a Sequential and its initial variables."""
    model = dlkit.Sequential([layer])
    return model, jax.tree.map(np.asarray, dict(jax.jit(model.init)(jax.random.key(0), x)))


def _with_keras_weights(layer, klayer, x):
    """Copy ``klayer``'s weights (built on ``x``) into ``layer`` in Keras' order; the model and its variables."""
    model, variables, order = _in_sequential(layer, x)
    ours = [a.shape for a in weights_lib.flatten(variables, order)]
    assert ours == [tuple(w.shape) for w in klayer.weights], (ours, [w.path for w in klayer.weights])
    return model, weights_lib.unflatten(variables, order, [np.asarray(w) for w in klayer.get_weights()])


# ---------------------------------------------------------------------------------------- Keras numerics
# (constructor on a layers module -- dlkit.layers or keras.layers --, input shape)
CASES = {
    "depthwise2d_same_strided": (lambda m: m.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
                                 (2, 7, 7, 3)),
    "depthwise2d_relu_nobias": (lambda m: m.DepthwiseConv2D((2, 3), activation="relu", use_bias=False), (2, 5, 6, 2)),
    "depthwise1d_dilated": (lambda m: m.DepthwiseConv1D(3, depth_multiplier=3, dilation_rate=2), (2, 9, 2)),
    "separable2d_same": (lambda m: m.SeparableConv2D(5, 3, padding="same", depth_multiplier=2), (2, 6, 6, 3)),
    "separable2d_strided": (lambda m: m.SeparableConv2D(4, (3, 2), strides=(2, 1), activation="tanh"), (2, 7, 5, 2)),
    "separable1d": (lambda m: m.SeparableConv1D(4, 3, strides=2, activation="relu"), (2, 9, 3)),
    "conv1d_transpose_same": (lambda m: m.Conv1DTranspose(4, 3, strides=2, padding="same"), (2, 5, 3)),
    "conv1d_transpose_valid": (lambda m: m.Conv1DTranspose(3, 4, strides=3), (2, 5, 2)),
    "conv1d_transpose_output_padding": (lambda m: m.Conv1DTranspose(2, 3, strides=3, output_padding=2), (2, 4, 3)),
    "conv1d_transpose_dilated": (lambda m: m.Conv1DTranspose(2, 3, padding="same", dilation_rate=2), (2, 6, 3)),
    "conv2d_transpose_output_padding": (lambda m: m.Conv2DTranspose(3, 3, strides=2, padding="same",
                                                                    output_padding=1), (2, 4, 5, 2)),
    "conv3d_transpose_same": (lambda m: m.Conv3DTranspose(2, (3, 2, 3), strides=(2, 1, 2), padding="same"),
                              (2, 3, 4, 3, 2)),
    "conv3d_transpose_valid": (lambda m: m.Conv3DTranspose(2, 2, strides=2, activation="relu"), (2, 2, 3, 2, 3)),
    "zero_padding1d": (lambda m: m.ZeroPadding1D((1, 2)), (2, 4, 3)),
    "zero_padding2d": (lambda m: m.ZeroPadding2D(((1, 2), 3)), (2, 4, 3, 2)),
    "zero_padding3d": (lambda m: m.ZeroPadding3D(), (2, 2, 3, 2, 2)),
    "cropping1d": (lambda m: m.Cropping1D((1, 2)), (2, 5, 3)),
    "cropping2d": (lambda m: m.Cropping2D(((1, 0), 2)), (2, 4, 6, 2)),
    "cropping3d": (lambda m: m.Cropping3D(), (2, 3, 4, 5, 2)),
    "up_sampling1d": (lambda m: m.UpSampling1D(3), (2, 3, 2)),
    "up_sampling2d_bilinear": (lambda m: m.UpSampling2D((2, 3), interpolation="bilinear"), (2, 3, 4, 2)),
    "up_sampling3d": (lambda m: m.UpSampling3D((1, 2, 3)), (2, 2, 2, 2, 2)),
    "repeat_vector": (lambda m: m.RepeatVector(3), (2, 4)),
    "permute": (lambda m: m.Permute((3, 1, 2)), (2, 3, 4, 5)),
    "time_distributed_dense": (lambda m: m.TimeDistributed(m.Dense(3, activation="relu")), (2, 4, 5)),
    "time_distributed_conv2d": (lambda m: m.TimeDistributed(m.Conv2D(3, 2)), (2, 3, 4, 4, 2)),
    "batch_renorm_inference": (lambda m: m.BatchNormalization(renorm=True), (4, 3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_keras_on_the_same_weights(case):
    keras = _keras()
    make, shape = CASES[case]
    x = _normal(*shape)
    klayer = make(keras.layers)
    klayer.build(x.shape)
    for w in klayer.weights:  # Keras' zero biases would hide a misplaced bias
        w.assign(RNG.normal(size=w.shape).astype(np.float32) * 0.1 + (1.0 if "variance" in w.path else 0.0))
    expected = np.asarray(klayer(x))
    model, variables = _with_keras_weights(make(layers), klayer, x)
    out = np.asarray(model.apply(variables, x))
    assert out.shape == expected.shape
    chex.assert_trees_all_close(out, expected, atol=1e-5)
    assert sum(w.size for w in jax.tree.leaves(variables)) == klayer.count_params()


def test_keras_weight_names_and_order():
    def paths(layer, x):
        return ["/".join([collection, *path]) for collection, _, path in _in_sequential(layer, x)[2]]

    x = np.zeros((1, 5, 5, 2), np.float32)
    assert paths(layers.SeparableConv2D(3, 3), x) == [
        "params/depthwise_kernel", "params/pointwise_kernel", "params/bias"]
    assert paths(layers.DepthwiseConv2D(3), x) == ["params/kernel", "params/bias"]  # Keras 3's names
    assert paths(layers.TimeDistributed(layers.Dense(3)), x[:, 0]) == ["params/dense/kernel", "params/dense/bias"]
    assert paths(layers.BatchNormalization(renorm=True), x) == [
        "params/gamma", "params/beta", "batch_stats/moving_mean", "batch_stats/moving_variance",
        "batch_stats/moving_stddev", "batch_stats/renorm_mean", "batch_stats/renorm_stddev"]


# ----------------------------------------------------------------------------- numpy references (no Keras)
def test_depthwise_is_a_convolution_per_channel_and_separable_adds_a_pointwise_one():
    x = _normal(2, 6, 5, 3)
    depthwise = layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)
    kernel = _normal(3, 3, 3, 2)
    out = np.asarray(depthwise.apply({"params": {"kernel": kernel}}, x))
    for c in range(3):
        conv = layers.Conv2D(2, 3, use_bias=False).apply({"params": {"kernel": kernel[:, :, c:c + 1]}}, x[..., c:c + 1])
        chex.assert_trees_all_close(out[..., 2 * c:2 * c + 2], np.asarray(conv), atol=1e-5)
    pointwise, bias = _normal(1, 1, 6, 4), _normal(4)
    separable = layers.SeparableConv2D(4, 3, depth_multiplier=2).apply(
        {"params": {"depthwise_kernel": kernel, "pointwise_kernel": pointwise, "bias": bias}}, x)
    chex.assert_trees_all_close(np.asarray(separable), out @ pointwise[0, 0] + bias, atol=1e-5)


def test_padding_cropping_upsampling_repeat_permute_against_numpy():
    x = _normal(2, 4, 5, 3)
    apply = lambda layer, v=x: np.asarray(layer.apply({}, v))  # noqa: E731
    np.testing.assert_array_equal(apply(layers.ZeroPadding2D(((1, 0), (2, 3)))),
                                  np.pad(x, ((0, 0), (1, 0), (2, 3), (0, 0))))
    np.testing.assert_array_equal(apply(layers.Cropping2D(((1, 2), 1))), x[:, 1:2, 1:4])
    np.testing.assert_array_equal(apply(layers.UpSampling2D(2)), x.repeat(2, axis=1).repeat(2, axis=2))
    np.testing.assert_array_equal(apply(layers.Permute((2, 1, 3))), x.transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(apply(layers.ZeroPadding1D(2), x[:, 0]), np.pad(x[:, 0], ((0, 0), (2, 2), (0, 0))))
    np.testing.assert_array_equal(apply(layers.Cropping1D(), x[:, 0]), x[:, 0, 1:4])
    np.testing.assert_array_equal(apply(layers.UpSampling1D(), x[:, 0]), x[:, 0].repeat(2, axis=1))
    np.testing.assert_array_equal(apply(layers.RepeatVector(3), x[:, 0, 0]), np.stack([x[:, 0, 0]] * 3, axis=1))
    v = x[..., None]
    np.testing.assert_array_equal(apply(layers.ZeroPadding3D(1), v),
                                  np.pad(v, ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0))))
    np.testing.assert_array_equal(apply(layers.Cropping3D(((0, 1), 1, (2, 0))), v), v[:, :3, 1:4, 2:])
    np.testing.assert_array_equal(apply(layers.UpSampling3D((1, 2, 1)), v), v.repeat(2, axis=2))


@pytest.mark.parametrize("rank", [1, 3])
def test_conv_transpose_is_the_gradient_of_the_convolution(rank):
    """<conv(u), v> = <u, conv_transpose(v)> with the same kernel, in 1 and 3 dimensions."""
    conv, transpose = (layers.Conv1D, layers.Conv1DTranspose) if rank == 1 else (layers.Conv3D, layers.Conv3DTranspose)
    kernel = _normal(*(3,) * rank, 2, 4)
    u, v = _normal(1, *(6,) * rank, 2), _normal(1, *(3,) * rank, 4)
    forward = conv(4, 3, strides=2, padding="same", use_bias=False).apply({"params": {"kernel": kernel}}, u)
    backward = transpose(2, 3, strides=2, padding="same", use_bias=False).apply({"params": {"kernel": kernel}}, v)
    chex.assert_shape(backward, u.shape)
    np.testing.assert_allclose(np.sum(forward * v), np.sum(u * backward), rtol=1e-4)


@pytest.mark.parametrize("dilation", [(2,), (1, 2, 1)])
def test_conv_transpose_gradients_equal_autodiff_with_dilation(dilation):
    """The hand-written kernel gradient (through the adjoint convolution) against JAX's own, in 1 and 3 dimensions."""
    from dlkit.layers.transposed import _dilated_conv, transpose_padding, transposed_conv
    rank = len(dilation)
    x, k = RNG.normal(size=(2, *(4,) * rank, 3)), RNG.normal(size=(*(3,) * rank, 3, 2))
    strides = (2,) * rank
    pads = tuple(transpose_padding(3, 2, "same", d) for d in dilation)
    target = RNG.normal(size=_dilated_conv(x, k, strides, pads, dilation).shape)
    with jax.enable_x64():
        grads = [jax.grad(lambda x, k, f=f: jnp.sum(f(x, k, strides, pads, dilation) * target), argnums=(0, 1))(x, k)
                 for f in (transposed_conv, _dilated_conv)]
    chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-10)


def test_time_distributed_applies_one_layer_to_every_step():
    x = _normal(3, 4, 5)
    model, variables = _initialized(layers.TimeDistributed(layers.Dense(2, activation="tanh")), x)
    dense = variables["params"]["time_distributed"]["dense"]
    expected = np.stack([np.tanh(x[:, t] @ dense["kernel"] + dense["bias"]) for t in range(4)], axis=1)
    chex.assert_trees_all_close(np.asarray(model.apply(variables, x)), expected, atol=1e-6)
    with pytest.raises(ValueError, match="rank 3"):
        layers.TimeDistributed(layers.Dense(2)).init(jax.random.key(0), x[:, 0])


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_spatial_dropout_drops_whole_channels_in_training_only(rank):
    cls = (layers.SpatialDropout1D, layers.SpatialDropout2D, layers.SpatialDropout3D)[rank - 1]
    rate = 0.4
    x = np.abs(_normal(200, *(3,) * rank, 30)) + 0.5  # no zeros of its own
    layer = cls(rate)
    out = np.asarray(layer.apply({}, x, training=True, rngs={"dropout": jax.random.key(1)}))
    dropped = (out == 0).reshape(200, -1, 30)
    assert np.all(dropped.all(axis=1) | ~dropped.any(axis=1)), "a channel was dropped at some positions only"
    np.testing.assert_allclose(dropped[:, 0].mean(), rate, atol=0.03)
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / (1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(layer.apply({}, x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(cls(0.0).apply({}, x, training=True)), x)


# ----------------------------------------------------------------------------------- batch renormalization
CLIP = {"rmax": 1.3, "rmin": 0.8, "dmax": 0.4}


def _renorm_reference(batches, gamma, beta, momentum, renorm_momentum, eps, clip):
    """Ioffe (2017), as Keras updates it: outputs per batch and the final (moving_mean, moving_variance,
    moving_stddev, renorm_mean, renorm_stddev), in float64."""
    size = gamma.shape[0]
    moving_mean, moving_stddev = np.zeros(size), np.sqrt(np.ones(size))
    renorm_mean, renorm_stddev = np.zeros(size), np.sqrt(np.ones(size))
    outputs = []
    for x in batches:
        x = x.astype(np.float64)
        mean, var = x.mean(axis=0), x.var(axis=0)
        sigma = np.sqrt(var + eps)
        r = np.clip(sigma / np.maximum(renorm_stddev, np.sqrt(eps)), clip["rmin"], clip["rmax"])
        d = np.clip((mean - renorm_mean) / np.maximum(renorm_stddev, np.sqrt(eps)), -clip["dmax"], clip["dmax"])
        outputs.append(gamma * ((x - mean) / sigma * r + d) + beta)
        renorm_mean = renorm_momentum * renorm_mean + (1 - renorm_momentum) * mean
        renorm_stddev = renorm_momentum * renorm_stddev + (1 - renorm_momentum) * sigma
        moving_mean = momentum * moving_mean + (1 - momentum) * mean
        moving_stddev = momentum * moving_stddev + (1 - momentum) * sigma
    moving_variance = np.maximum(moving_stddev ** 2 - eps, 0.0)
    return outputs, [moving_mean, moving_variance, moving_stddev, renorm_mean, renorm_stddev]


def _renorm_steps(layer, batches, gamma, beta):
    """dlkit's layer run in training on each batch; its outputs and final variables in Keras' order."""
    model, variables = _initialized(layer, batches[0])
    variables["params"] = {"batch_normalization": {"gamma": gamma, "beta": beta}}
    outputs = []
    step = jax.jit(lambda v, x: model.apply(v, x, training=True, mutable=["batch_stats"]))
    for x in batches:
        y, state = step(variables, x)
        variables = {"params": variables["params"], "batch_stats": state["batch_stats"]}
        outputs.append(np.asarray(y))
    stats = variables["batch_stats"]["batch_normalization"]
    names = ["moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev"]
    return model, variables, outputs, [np.asarray(stats[n]) for n in names]


def _renorm_case():
    batches = [_normal(16, 3) * s + m for s, m in ((2.0, 1.0), (0.5, -1.0), (1.5, 3.0), (1.0, 0.0))]
    gamma, beta = _normal(3) * 0.3 + 1.0, _normal(3) * 0.3
    kwargs = dict(momentum=0.9, renorm=True, renorm_clipping=CLIP, renorm_momentum=0.6)
    return batches, gamma, beta, kwargs


def test_batch_renormalization_follows_the_papers_formulas():
    batches, gamma, beta, kwargs = _renorm_case()
    model, variables, outputs, stats = _renorm_steps(layers.BatchNormalization(**kwargs), batches, gamma, beta)
    ref_outputs, ref_stats = _renorm_reference(batches, gamma, beta, 0.9, 0.6, 1e-3, CLIP)
    chex.assert_trees_all_close(outputs, ref_outputs, atol=1e-5)
    chex.assert_trees_all_close(stats, ref_stats, atol=1e-5)
    # Inference is batch normalization with the moving statistics, as without renorm.
    x = batches[0]
    expected = (x - stats[0]) / np.sqrt(stats[1] + 1e-3) * gamma + beta
    chex.assert_trees_all_close(np.asarray(model.apply(variables, x, training=False)), expected, atol=1e-5)
    assert layers.BatchNormalization.inference_when_frozen  # a frozen one still runs in inference mode


def test_batch_renormalization_equals_keras_in_training():
    keras = _keras()
    batches, gamma, beta, kwargs = _renorm_case()
    klayer = keras.layers.BatchNormalization(**kwargs)
    klayer.build(batches[0].shape)
    klayer.gamma.assign(gamma)
    klayer.beta.assign(beta)
    expected = [np.asarray(klayer(x, training=True)) for x in batches]
    _, _, outputs, stats = _renorm_steps(layers.BatchNormalization(**kwargs), batches, gamma, beta)
    chex.assert_trees_all_close(outputs, expected, atol=1e-5)
    chex.assert_trees_all_close(stats, [np.asarray(w) for w in klayer.get_weights()[2:]], atol=1e-5)

    # The corrections r and d are constants in the gradient, in both.
    x, t = batches[0], _normal(16, 3)
    klayer = keras.layers.BatchNormalization(**kwargs)
    klayer.build(x.shape)
    trainable, frozen = [v.value for v in klayer.trainable_variables], [v.value for v in klayer.non_trainable_variables]
    # moving_mean, moving_variance, moving_stddev, renorm_mean, renorm_stddev: r != 1 and d != 0
    frozen[2:] = [jnp.full(3, 0.7), jnp.full(3, 0.2), jnp.full(3, 0.7)]
    k_grad = jax.jit(jax.grad(lambda x: jnp.sum(klayer.stateless_call(trainable, frozen, x, training=True)[0] * t)))(x)
    model, variables = _initialized(layers.BatchNormalization(**kwargs), x)
    variables["batch_stats"]["batch_normalization"].update(
        renorm_stddev=jnp.full(3, 0.7), moving_stddev=jnp.full(3, 0.7), renorm_mean=jnp.full(3, 0.2))
    ours = lambda x: jnp.sum(model.apply(variables, x, training=True, mutable=["batch_stats"])[0] * t)  # noqa: E731
    grad = jax.jit(jax.grad(ours))(x)
    chex.assert_trees_all_close(np.asarray(grad), np.asarray(k_grad), atol=1e-5)


# ---------------------------------------------------------------------------------------- argument errors
@pytest.mark.parametrize("make,argument", [
    (lambda: layers.SeparableConv2D(0, 3), "filters"),
    (lambda: layers.SeparableConv1D(2, 3, depth_multiplier=0), "depth_multiplier"),
    (lambda: layers.DepthwiseConv2D(3, padding="causal"), "padding"),
    (lambda: layers.DepthwiseConv1D((3, 3)), "kernel_size"),
    (lambda: layers.Conv1DTranspose(2, 3, strides=2, output_padding=2), "output_padding"),
    (lambda: layers.Conv3DTranspose(2, 3, padding="full"), "padding"),
    (lambda: layers.SpatialDropout2D(1.5), "rate"),
    (lambda: layers.SpatialDropout1D("0.2"), "rate"),
    (lambda: layers.ZeroPadding2D(-1), "padding"),
    (lambda: layers.ZeroPadding3D((1, 2)), "padding"),
    (lambda: layers.Cropping1D((1, 2, 3)), "cropping"),
    (lambda: layers.UpSampling3D(0), "size"),
    (lambda: layers.UpSampling2D(interpolation="bicubic"), "interpolation"),
    (lambda: layers.RepeatVector(0), "n"),
    (lambda: layers.Permute((1, 3)), "dims"),
    (lambda: layers.TimeDistributed(3), "layer"),
    (lambda: layers.BatchNormalization(renorm=True, renorm_clipping={"rmax": 0.5, "rmin": 1.0}), "renorm_clipping"),
    (lambda: layers.BatchNormalization(renorm=True, renorm_clipping={"r_max": 2.0}), "renorm_clipping"),
])
def test_bad_arguments_are_refused_when_the_layer_is_made(make, argument):
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        make()


def test_inputs_of_the_wrong_rank_are_explained():
    with pytest.raises(ValueError, match="rank 4"):
        layers.SeparableConv2D(2, 3).init(jax.random.key(0), np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="leaves nothing"):
        layers.Cropping1D(3).init(jax.random.key(0), np.zeros((1, 6, 2)))
    with pytest.raises(ValueError, match="larger than its input"):
        layers.DepthwiseConv2D(5).init(jax.random.key(0), np.zeros((1, 4, 4, 2)))


# ------------------------------------------------------------------------- summary() of every public layer
SHAPES = {"vec": (6,), "seq": (5, 4), "img": (6, 6, 3), "vol": (4, 4, 4, 2), "ids": (5,)}
# (class name, constructor on a layers module, input: a SHAPES key, "pair" (two vectors) or "attend"
# (two sequences), Keras' parameter count: None to ask Keras, or a number for dlkit's Chollet blocks)
SUMMARY_SPECS = [
    ("Activation", lambda m: m.Activation("relu"), "vec", None),
    ("Add", lambda m: m.Add(), "pair", None),
    ("Average", lambda m: m.Average(), "pair", None),
    ("AveragePooling1D", lambda m: m.AveragePooling1D(2), "seq", None),
    ("AveragePooling2D", lambda m: m.AveragePooling2D(2), "img", None),
    ("AveragePooling3D", lambda m: m.AveragePooling3D(2), "vol", None),
    ("BatchNormalization", lambda m: m.BatchNormalization(), "img", None),
    ("BatchNormalization", lambda m: m.BatchNormalization(renorm=True), "img", None),
    ("Bidirectional", lambda m: m.Bidirectional(m.SimpleRNN(2)), "seq", None),
    ("Concatenate", lambda m: m.Concatenate(), "pair", None),
    ("Conv1D", lambda m: m.Conv1D(4, 3), "seq", None),
    ("Conv1DTranspose", lambda m: m.Conv1DTranspose(4, 3, strides=2), "seq", None),
    ("Conv2D", lambda m: m.Conv2D(4, 3), "img", None),
    ("Conv2DTranspose", lambda m: m.Conv2DTranspose(4, 3, strides=2, padding="same"), "img", None),
    ("Conv3D", lambda m: m.Conv3D(2, 2), "vol", None),
    ("Conv3DTranspose", lambda m: m.Conv3DTranspose(2, 2, strides=2), "vol", None),
    ("Cropping1D", lambda m: m.Cropping1D(1), "seq", None),
    ("Cropping2D", lambda m: m.Cropping2D(1), "img", None),
    ("Cropping3D", lambda m: m.Cropping3D(1), "vol", None),
    ("Dense", lambda m: m.Dense(3), "vec", None),
    ("DepthwiseConv1D", lambda m: m.DepthwiseConv1D(3, depth_multiplier=2), "seq", None),
    ("DepthwiseConv2D", lambda m: m.DepthwiseConv2D(3, depth_multiplier=2), "img", None),
    ("Dropout", lambda m: m.Dropout(0.5), "vec", None),
    ("Embedding", lambda m: m.Embedding(20, 4), "ids", None),
    ("Flatten", lambda m: m.Flatten(), "img", None),
    ("GaussianNoise", lambda m: m.GaussianNoise(0.1), "vec", None),
    ("GlobalAveragePooling1D", lambda m: m.GlobalAveragePooling1D(), "seq", None),
    ("GlobalAveragePooling2D", lambda m: m.GlobalAveragePooling2D(), "img", None),
    ("GlobalAveragePooling3D", lambda m: m.GlobalAveragePooling3D(), "vol", None),
    ("GlobalMaxPooling1D", lambda m: m.GlobalMaxPooling1D(), "seq", None),
    ("GlobalMaxPooling2D", lambda m: m.GlobalMaxPooling2D(), "img", None),
    ("GlobalMaxPooling3D", lambda m: m.GlobalMaxPooling3D(), "vol", None),
    ("GRU", lambda m: m.GRU(3), "seq", None),
    ("Lambda", lambda m: m.Lambda(lambda x: x * 2.0), "vec", None),
    ("LayerNormalization", lambda m: m.LayerNormalization(), "seq", None),
    ("LeakyReLU", lambda m: m.LeakyReLU(), "vec", None),
    ("LSTM", lambda m: m.LSTM(3, return_sequences=True), "seq", None),
    ("Maximum", lambda m: m.Maximum(), "pair", None),
    ("MaxPooling1D", lambda m: m.MaxPooling1D(2), "seq", None),
    ("MaxPooling2D", lambda m: m.MaxPooling2D(2), "img", None),
    ("MaxPooling3D", lambda m: m.MaxPooling3D(2), "vol", None),
    ("Minimum", lambda m: m.Minimum(), "pair", None),
    ("MultiHeadAttention", lambda m: m.MultiHeadAttention(2, 3), "attend", None),
    ("Multiply", lambda m: m.Multiply(), "pair", None),
    ("Normalization", lambda m: m.Normalization(mean=0.5, variance=2.0), "img", None),
    ("Permute", lambda m: m.Permute((2, 1)), "seq", None),
    # Chollet's blocks (no Keras class): two embeddings 20 * 4 + 5 * 4; MultiHeadAttention(2, key_dim=4) on
    # 4 features is 3 * (4 * 8 + 8) + (8 * 4 + 4) = 156, the feed-forward 4 * 8 + 8 + 8 * 4 + 4 = 76, a
    # LayerNormalization 8.
    ("PositionalEmbedding", lambda m: m.PositionalEmbedding(5, 20, 4), "ids", 100),
    ("RandomCrop", lambda m: m.RandomCrop(4, 4), "img", None),
    ("RandomFlip", lambda m: m.RandomFlip(), "img", None),
    ("RandomRotation", lambda m: m.RandomRotation(0.1), "img", None),
    ("RandomTranslation", lambda m: m.RandomTranslation(0.1, 0.1), "img", None),
    ("RandomZoom", lambda m: m.RandomZoom(0.1), "img", None),
    ("RepeatVector", lambda m: m.RepeatVector(3), "vec", None),
    ("Rescaling", lambda m: m.Rescaling(1 / 255), "img", None),
    ("Reshape", lambda m: m.Reshape((3, 2)), "vec", None),
    ("SeparableConv1D", lambda m: m.SeparableConv1D(4, 3), "seq", None),
    ("SeparableConv2D", lambda m: m.SeparableConv2D(4, 3, depth_multiplier=2), "img", None),
    ("SimpleRNN", lambda m: m.SimpleRNN(3), "seq", None),
    ("SpatialDropout1D", lambda m: m.SpatialDropout1D(0.3), "seq", None),
    ("SpatialDropout2D", lambda m: m.SpatialDropout2D(0.3), "img", None),
    ("SpatialDropout3D", lambda m: m.SpatialDropout3D(0.3), "vol", None),
    ("Subtract", lambda m: m.Subtract(), "pair", None),
    ("TimeDistributed", lambda m: m.TimeDistributed(m.Dense(3)), "seq", None),
    ("TransformerDecoder", lambda m: m.TransformerDecoder(4, 8, 2), "attend", 2 * 156 + 76 + 3 * 8),
    ("TransformerEncoder", lambda m: m.TransformerEncoder(4, 8, 2), "seq", 156 + 76 + 2 * 8),
    ("UpSampling1D", lambda m: m.UpSampling1D(), "seq", None),
    ("UpSampling2D", lambda m: m.UpSampling2D(), "img", None),
    ("UpSampling3D", lambda m: m.UpSampling3D(), "vol", None),
    ("ZeroPadding1D", lambda m: m.ZeroPadding1D(), "seq", None),
    ("ZeroPadding2D", lambda m: m.ZeroPadding2D(), "img", None),
    ("ZeroPadding3D", lambda m: m.ZeroPadding3D(), "vol", None),
]
NOT_IN_MODELS = {
    "Layer": "the base class",
    "TextVectorization": "turns strings into ids in numpy, before the model (it refuses to be inside one)",
}


def _public_layer_classes() -> set:
    return {name for name in layers.__all__ if inspect.isclass(getattr(layers, name))
            and issubclass(getattr(layers, name), nn.Module) and getattr(layers, name).__name__ == name}


def test_every_public_layer_class_has_a_summary_case():
    missing = _public_layer_classes() - {spec[0] for spec in SUMMARY_SPECS} - set(NOT_IN_MODELS)
    assert not missing, f"add a case to SUMMARY_SPECS in {__file__} for {sorted(missing)}"


def _call(layer, kind, tensors):
    if kind == "pair":
        return layer([tensors["vec"], tensors["vec_2"]])
    if kind == "attend":
        return layer(tensors["seq"], tensors["seq_2"])
    return layer(tensors[kind])


def _summary_rows(text: str) -> dict:
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^(\S+) \((\w+)\)\s+(\(.*?\)|\[.*\]|-)\s+([\d,]+)$", line)
        if match:
            rows[match[1]] = (match[2], match[3], int(match[4].replace(",", "")))
    return rows


SEQUENCE_KINDS = ("seq", "attend", "ids")  # the recurrent and attention layers: most of the compilation


def _abstract_summary(model) -> str:
    """``trainer.summary()``'s table from the variables' shapes: ``summary.render`` on what the
    trainer's ``build`` makes, traced, not compiled (the recurrent and attention layers compile slowly)."""
    batch = weights_lib.zeros_batch(model.input_shape)
    variables = dict(jax.eval_shape(lambda x: model.init(jax.random.key(0), x, training=False), batch))
    for collection in (LOSSES, DIAGNOSTICS, "intermediates"):  # as Trainer.build drops them
        variables.pop(collection, None)
    return summary_lib.render(model, variables, jax.tree.map(lambda a: a.shape[1:], batch))


@pytest.mark.parametrize("sequences", [False, True], ids=["images_vectors", "sequences"])
def test_summary_renders_every_public_layer_with_keras_parameter_counts(sequences):
    """A functional model holding a layer of each public class, every layer on the model's inputs: the
    layers on images and vectors (the ``Random*`` ones among them) in ``Trainer.summary()``, those on
    sequences in the same table rendered from their variables' shapes."""
    specs = [(i, spec) for i, spec in enumerate(SUMMARY_SPECS) if (spec[2] in SEQUENCE_KINDS) == sequences]
    tensors = {kind: dlkit.Input(shape, dtype="int32" if kind == "ids" else "float32", name=kind)
               for kind, shape in SHAPES.items()}
    tensors.update(vec_2=dlkit.Input(SHAPES["vec"], name="vec_2"), seq_2=dlkit.Input(SHAPES["seq"], name="seq_2"))
    outputs = [_call(make(layers).clone(name=f"case_{i}"), kind, tensors) for i, (_, make, kind, _) in specs]
    model = dlkit.Model(list(tensors.values()), outputs, name="every_layer")
    lines = []
    if sequences:
        lines.append(_abstract_summary(model))
    else:
        dlkit.Trainer(model, loss="mse").summary(print_fn=lines.append)
    rows = _summary_rows("\n".join(lines))
    for i, (name, _, _, _) in specs:
        assert rows[f"case_{i}"][0] == name, (i, rows.get(f"case_{i}"))
    if importlib.util.find_spec("keras") is None:
        return  # rendered, every layer in its row; Keras' counts need Keras
    keras = importlib.import_module("keras")
    k_tensors = {kind: keras.Input(shape, dtype="int32" if kind == "ids" else "float32")
                 for kind, shape in SHAPES.items()}
    k_tensors.update(vec_2=keras.Input(SHAPES["vec"]), seq_2=keras.Input(SHAPES["seq"]))
    for i, (name, make, kind, count) in specs:
        _, shape, params = rows[f"case_{i}"]
        if count is None:
            klayer = make(keras.layers)
            out = _call(klayer, kind, k_tensors)
            count = klayer.count_params()
            assert shape == "(" + ", ".join(map(str, out.shape)) + ")", (name, shape, out.shape)
        assert params == count, (name, params, count)
