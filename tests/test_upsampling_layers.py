"""The layers generative models are built from: Conv2DTranspose, UpSampling2D, LeakyReLU, GaussianNoise."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported anywhere

import chex
import jax
import numpy as np
import pytest

import dlkit
from dlkit import layers


@pytest.mark.parametrize("kernel,strides,padding", [(3, 2, "same"), (4, 2, "same"), (5, 2, "same"), (3, 1, "same"),
                                                    (2, 3, "same"), (3, 2, "valid"), (1, 2, "valid"), (5, 3, "valid")])
def test_conv2d_transpose_equals_keras(kernel, strides, padding):
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype(np.float32)
    reference = keras.layers.Conv2DTranspose(4, kernel, strides=strides, padding=padding)
    expected = np.asarray(reference(x))
    kernel_weights, bias = reference.get_weights()
    out = layers.Conv2DTranspose(4, kernel, strides=strides, padding=padding).apply(
        {"params": {"kernel": kernel_weights, "bias": bias}}, x)
    chex.assert_trees_all_close(np.asarray(out), expected, atol=1e-5)


@pytest.mark.parametrize("kernel,strides,padding", [(4, 2, "same"), (3, 2, "same"), (2, 3, "same"), (5, 3, "valid"),
                                                    (3, 1, "same")])
def test_conv2d_transpose_gradients_equal_autodiff_of_the_dilated_convolution(kernel, strides, padding):
    """The hand-written kernel gradient (through the adjoint convolution) against JAX's own."""
    from dlkit.layers.transposed import _dilated_conv, transpose_padding, transposed_conv
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 6, 3))
    k = rng.normal(size=(kernel, kernel, 3, 4))
    pads = (transpose_padding(kernel, strides, padding),) * 2
    target = rng.normal(size=_dilated_conv(x, k, (strides,) * 2, pads).shape)
    with jax.enable_x64():
        grads = [jax.grad(lambda x, k, f=f: jax.numpy.sum(f(x, k, (strides,) * 2, pads) * target),
                          argnums=(0, 1))(x, k) for f in (transposed_conv, _dilated_conv)]
    chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-10)


def test_conv2d_transpose_is_the_gradient_of_conv2d_with_respect_to_its_input():
    """<conv(u), v> = <u, conv_transpose(v)> with the same kernel: the defining identity."""
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)  # Conv2D layout (h, w, in=2, out=4)
    u = rng.normal(size=(1, 8, 8, 2)).astype(np.float32)
    v = rng.normal(size=(1, 4, 4, 4)).astype(np.float32)
    conv = layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)
    transpose = layers.Conv2DTranspose(2, 3, strides=2, padding="same", use_bias=False)
    forward = conv.apply({"params": {"kernel": kernel}}, u)
    backward = transpose.apply({"params": {"kernel": kernel}}, v)  # Keras' (h, w, filters=2, in=4) layout
    chex.assert_shape(backward, u.shape)
    np.testing.assert_allclose(np.sum(forward * v), np.sum(u * backward), rtol=1e-4)


def test_conv2d_transpose_explains_a_wrong_rank():
    with pytest.raises(ValueError, match="Add a channel axis"):
        layers.Conv2DTranspose(2, 3).init(jax.random.key(0), np.zeros((1, 8, 8)))


def test_upsampling2d_repeats_rows_and_columns():
    x = np.arange(2 * 2 * 3 * 1, dtype=np.float32).reshape(2, 2, 3, 1)
    out = np.asarray(layers.UpSampling2D((2, 3)).apply({}, x))
    chex.assert_trees_all_equal(out, x.repeat(2, axis=1).repeat(3, axis=2))
    chex.assert_shape(layers.UpSampling2D().apply({}, x), (2, 4, 6, 1))


def test_leaky_relu_keeps_a_slope_below_zero():
    x = np.array([-2.0, -0.5, 0.0, 3.0], np.float32)
    chex.assert_trees_all_close(layers.LeakyReLU(0.2).apply({}, x), np.where(x > 0, x, 0.2 * x))
    chex.assert_trees_all_close(layers.LeakyReLU().apply({}, x), np.where(x > 0, x, 0.3 * x))  # Keras 3 default
    chex.assert_trees_all_close(dlkit.activations.get("leaky_relu")(x), np.where(x > 0, x, 0.2 * x))


def test_gaussian_noise_only_in_training_with_the_given_stddev():
    x = np.zeros((200, 50), np.float32)
    layer = layers.GaussianNoise(0.3)
    noisy = np.asarray(layer.apply({}, x, training=True, rngs={"dropout": jax.random.key(0)}))
    np.testing.assert_allclose(noisy.std(), 0.3, rtol=0.03)
    np.testing.assert_allclose(noisy.mean(), 0.0, atol=0.01)
    chex.assert_trees_all_equal(np.asarray(layer.apply({}, x, training=False)), x)
