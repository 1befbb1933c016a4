"""Each dlkit layer against a direct numpy reference (and, where installed, Keras 3 itself)."""
import itertools
import math
import os

# Keras 3 must pick its backend before its first import; jax is what we have. setdefault leaves
# a user's (or another test module's) choice alone.
os.environ.setdefault("KERAS_BACKEND", "jax")

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlkit import layers, regularizers

RNG = np.random.default_rng(1234)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def init_and_apply(layer, x, params=None, **kwargs):
    variables = layer.init(jax.random.PRNGKey(0), x)
    if params is not None:
        variables = {**variables, "params": params}
    return variables, layer.apply(variables, x, **kwargs)


# ----------------------------------------------------------------------------------------------
# numpy references
# ----------------------------------------------------------------------------------------------

def same_pads(size, k, s, d=1):
    """TF 'SAME': out = ceil(in / s), total pad split with the extra at the end."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def np_conv(x, kernel, bias, strides, padding, dilation):
    """Direct loop: y[n, p, o] = sum_{k, i} xpad[n, p*s + k*d, i] * kernel[k, i, o] + bias[o]."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    rank = x.ndim - 2
    ksize = kernel.shape[:rank]
    pads = [same_pads(x.shape[1 + a], ksize[a], strides[a], dilation[a]) if padding == "same" else (0, 0)
            for a in range(rank)]
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    out_shape = [(xp.shape[1 + a] - (ksize[a] - 1) * dilation[a] - 1) // strides[a] + 1 for a in range(rank)]
    y = np.zeros((x.shape[0], *out_shape, kernel.shape[-1]))
    for pos in itertools.product(*[range(o) for o in out_shape]):
        acc = np.zeros((x.shape[0], kernel.shape[-1]))
        for kk in itertools.product(*[range(k) for k in ksize]):
            idx = tuple(pos[a] * strides[a] + kk[a] * dilation[a] for a in range(rank))
            acc += xp[(slice(None), *idx, slice(None))] @ kernel[kk]
        y[(slice(None), *pos, slice(None))] = acc + bias
    return y


def np_pool(x, pool, strides, padding, op):
    """Pool with windows that ignore padded entries (NaN-padded, then nanmax / nanmean)."""
    x = np.asarray(x, np.float64)
    rank = x.ndim - 2
    pads = [same_pads(x.shape[1 + a], pool[a], strides[a]) if padding == "same" else (0, 0) for a in range(rank)]
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=np.nan)
    out_shape = [(xp.shape[1 + a] - pool[a]) // strides[a] + 1 for a in range(rank)]
    y = np.zeros((x.shape[0], *out_shape, x.shape[-1]))
    reduce = np.nanmax if op == "max" else np.nanmean
    axes = tuple(range(1, rank + 1))
    for pos in itertools.product(*[range(o) for o in out_shape]):
        window = xp[(slice(None), *[slice(pos[a] * strides[a], pos[a] * strides[a] + pool[a]) for a in range(rank)],
                     slice(None))]
        y[(slice(None), *pos, slice(None))] = reduce(window, axis=axes)
    return y


def test_reference_same_padding_formula():
    # The reference itself: TF's SAME gives ceil(in / s) outputs with the extra pad at the end.
    assert same_pads(5, 3, 2) == (1, 1)
    assert same_pads(6, 3, 2) == (0, 1)
    assert same_pads(7, 3, 1, 2) == (2, 2)
    assert same_pads(4, 2, 1) == (0, 1)


# ----------------------------------------------------------------------------------------------
# Dense
# ----------------------------------------------------------------------------------------------

def test_dense_values_and_param_names():
    x = randn(4, 3)
    kernel, bias = randn(3, 5), randn(5)
    layer = layers.Dense(5)
    variables = layer.init(jax.random.PRNGKey(0), x)
    assert set(variables["params"]) == {"kernel", "bias"}
    chex.assert_shape(variables["params"]["kernel"], (3, 5))
    chex.assert_shape(variables["params"]["bias"], (5,))
    chex.assert_trees_all_equal(variables["params"]["bias"], jnp.zeros(5))
    y = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x)
    chex.assert_trees_all_close(y, x.astype(np.float64) @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_dense_activation_and_no_bias():
    x = randn(6, 4)
    kernel = randn(4, 2)
    layer = layers.Dense(2, activation="relu", use_bias=False)
    variables = layer.init(jax.random.PRNGKey(0), x)
    assert set(variables["params"]) == {"kernel"}
    y = layer.apply({"params": {"kernel": kernel}}, x)
    chex.assert_trees_all_close(y, np.maximum(x @ kernel, 0), rtol=1e-5, atol=1e-6)
    # Keras positional order: Dense(units, activation).
    y2 = layers.Dense(2, "tanh", use_bias=False).apply({"params": {"kernel": kernel}}, x)
    chex.assert_trees_all_close(y2, np.tanh(x @ kernel), rtol=1e-5, atol=1e-6)


def test_dense_applies_to_last_axis():
    x = randn(2, 3, 4)
    kernel, bias = randn(4, 5), randn(5)
    y = layers.Dense(5).apply({"params": {"kernel": kernel, "bias": bias}}, x)
    chex.assert_shape(y, (2, 3, 5))
    chex.assert_trees_all_close(y, np.einsum("abi,io->abo", x, kernel) + bias, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Convolutions
# ----------------------------------------------------------------------------------------------

CONV_CASES = [
    # (layer class, input spatial shape, kernel_size, strides, dilation, padding, expected spatial output)
    (layers.Conv1D, (9,), (3,), (1,), (1,), "valid", (7,)),
    (layers.Conv1D, (9,), (3,), (1,), (1,), "same", (9,)),
    (layers.Conv1D, (10,), (4,), (3,), (1,), "same", (4,)),
    (layers.Conv1D, (10,), (4,), (3,), (1,), "valid", (3,)),
    (layers.Conv1D, (11,), (3,), (1,), (2,), "same", (11,)),
    (layers.Conv1D, (11,), (3,), (1,), (3,), "valid", (5,)),
    (layers.Conv2D, (6, 7), (3, 2), (1, 1), (1, 1), "valid", (4, 6)),
    (layers.Conv2D, (6, 7), (3, 2), (1, 1), (1, 1), "same", (6, 7)),
    (layers.Conv2D, (7, 6), (3, 3), (2, 2), (1, 1), "same", (4, 3)),
    (layers.Conv2D, (7, 6), (3, 3), (2, 3), (1, 1), "valid", (3, 2)),
    (layers.Conv2D, (8, 7), (3, 2), (1, 1), (2, 3), "same", (8, 7)),
    (layers.Conv2D, (8, 7), (3, 2), (1, 1), (2, 3), "valid", (4, 4)),
    (layers.Conv2D, (6, 6), (2, 2), (2, 2), (1, 1), "same", (3, 3)),
    (layers.Conv3D, (4, 5, 3), (2, 3, 2), (1, 1, 1), (1, 1, 1), "valid", (3, 3, 2)),
    (layers.Conv3D, (4, 5, 3), (2, 3, 2), (2, 2, 1), (1, 1, 1), "same", (2, 3, 3)),
    (layers.Conv3D, (5, 4, 4), (2, 2, 2), (1, 1, 1), (2, 1, 2), "same", (5, 4, 4)),
]


@pytest.mark.parametrize("cls, spatial, ksize, strides, dilation, padding, expected", CONV_CASES)
def test_conv_shapes_and_values_vs_numpy_loop(cls, spatial, ksize, strides, dilation, padding, expected):
    cin, filters = 2, 3
    x = randn(2, *spatial, cin)
    kernel, bias = randn(*ksize, cin, filters), randn(filters)
    layer = cls(filters, ksize, strides=strides, padding=padding, dilation_rate=dilation)
    variables = layer.init(jax.random.PRNGKey(0), x)
    # Keras' kernel layout (*kernel_size, in_channels, filters).
    chex.assert_shape(variables["params"]["kernel"], (*ksize, cin, filters))
    y = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x)
    chex.assert_shape(y, (2, *expected, filters))
    ref = np_conv(x, kernel, bias, strides, padding, dilation)
    assert ref.shape == y.shape
    chex.assert_trees_all_close(y, ref, rtol=1e-4, atol=1e-4)


def test_conv_int_arguments_expand_like_keras():
    x = randn(1, 7, 7, 2)
    kernel, bias = randn(3, 3, 2, 4), randn(4)
    y = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu").apply(
        {"params": {"kernel": kernel, "bias": bias}}, x)
    ref = np.maximum(np_conv(x, kernel, bias, (2, 2), "same", (1, 1)), 0)
    chex.assert_shape(y, (1, 4, 4, 4))
    chex.assert_trees_all_close(y, ref, rtol=1e-4, atol=1e-4)


def test_conv_padding_is_case_insensitive_and_validated():
    x = randn(1, 5, 5, 1)
    _, y = init_and_apply(layers.Conv2D(1, 3, padding="SAME"), x)
    chex.assert_shape(y, (1, 5, 5, 1))
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        layers.Conv2D(1, 3, padding="full").init(jax.random.PRNGKey(0), x)


def test_conv_bad_kernel_size_errors():
    x = randn(1, 5, 5, 1)
    with pytest.raises(ValueError, match=r"kernel_size must be an int or a tuple of 2 ints"):
        layers.Conv2D(2, (3, 3, 3)).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"kernel_size must be an int or a tuple of 1 ints"):
        layers.Conv1D(2, (3, 3)).init(jax.random.PRNGKey(0), randn(1, 5, 1))
    with pytest.raises(ValueError, match=r"strides must be an int or a tuple of 2 ints"):
        layers.Conv2D(2, 3, strides=(1, 1, 1)).init(jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("cls, bad_shape, rank", [
    (layers.Conv1D, (2, 5), 3),
    (layers.Conv2D, (2, 5, 5), 4),
    (layers.Conv3D, (2, 5, 5, 1), 5),
])
def test_conv_wrong_input_rank_error(cls, bad_shape, rank):
    with pytest.raises(ValueError, match=rf"{cls.__name__} expects inputs of rank {rank}.*channel axis"):
        cls(2, 2).init(jax.random.PRNGKey(0), randn(*bad_shape))


def test_conv_groups_and_data_format_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        layers.Conv2D(3, 2, groups=2).init(jax.random.PRNGKey(0), randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="channels_last"):
        layers.Conv2D(2, 2, data_format="channels_first").init(jax.random.PRNGKey(0), randn(1, 4, 4, 4))


def test_grouped_conv_matches_per_group_convs():
    x = randn(2, 6, 6, 4)
    kernel, bias = randn(3, 3, 2, 6), randn(6)
    y = layers.Conv2D(6, 3, groups=2).apply({"params": {"kernel": kernel, "bias": bias}}, x)
    ref = np.concatenate([
        np_conv(x[..., :2], kernel[..., :3], bias[:3], (1, 1), "valid", (1, 1)),
        np_conv(x[..., 2:], kernel[..., 3:], bias[3:], (1, 1), "valid", (1, 1)),
    ], axis=-1)
    chex.assert_trees_all_close(y, ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------------------------

POOL_CASES = [
    # (class, op, input spatial, pool, strides (None = pool), padding, expected output spatial)
    (layers.MaxPooling1D, "max", (9,), (2,), None, "valid", (4,)),
    (layers.MaxPooling1D, "max", (9,), (2,), None, "same", (5,)),
    (layers.MaxPooling1D, "max", (10,), (3,), (2,), "same", (5,)),
    (layers.AveragePooling1D, "mean", (9,), (2,), None, "valid", (4,)),
    (layers.AveragePooling1D, "mean", (9,), (2,), None, "same", (5,)),
    (layers.AveragePooling1D, "mean", (10,), (3,), (2,), "same", (5,)),
    (layers.MaxPooling2D, "max", (5, 6), (2, 2), None, "valid", (2, 3)),
    (layers.MaxPooling2D, "max", (5, 7), (2, 3), None, "same", (3, 3)),
    (layers.MaxPooling2D, "max", (6, 6), (3, 3), (1, 2), "valid", (4, 2)),
    (layers.AveragePooling2D, "mean", (5, 6), (2, 2), None, "valid", (2, 3)),
    (layers.AveragePooling2D, "mean", (5, 7), (2, 3), None, "same", (3, 3)),
    (layers.AveragePooling2D, "mean", (5, 5), (3, 3), (1, 1), "same", (5, 5)),
    (layers.AveragePooling2D, "mean", (6, 7), (3, 2), (2, 2), "same", (3, 4)),
    (layers.MaxPooling3D, "max", (4, 5, 3), (2, 2, 2), None, "same", (2, 3, 2)),
    (layers.AveragePooling3D, "mean", (4, 5, 3), (2, 2, 2), None, "same", (2, 3, 2)),
]


@pytest.mark.parametrize("cls, op, spatial, pool, strides, padding, expected", POOL_CASES)
def test_pooling_values_vs_numpy_loop(cls, op, spatial, pool, strides, padding, expected):
    # Negative-heavy inputs: a max-pool that counted padded zeros would be caught.
    x = randn(2, *spatial, 3) - 2.0
    layer = cls(pool_size=pool, strides=strides, padding=padding)
    _, y = init_and_apply(layer, x)
    chex.assert_shape(y, (2, *expected, 3))
    ref = np_pool(x, pool, pool if strides is None else strides, padding, op)
    chex.assert_trees_all_close(y, ref, rtol=1e-5, atol=1e-5)


def test_average_pooling_same_excludes_padding_from_mean():
    # A 3x3 ones image, 2x2 windows: every window (full or cut by the pad) averages to exactly 1;
    # dividing by 4 would give 0.5 / 0.25 at the border.
    x = np.ones((1, 3, 3, 1), np.float32)
    y = layers.AveragePooling2D(2, padding="same").apply({}, x)
    chex.assert_shape(y, (1, 2, 2, 1))
    chex.assert_trees_all_close(y, np.ones((1, 2, 2, 1)), atol=1e-6)
    # Values: the bottom-right window sees only x[2, 2].
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    y = layers.AveragePooling2D(2, padding="same").apply({}, x)
    expected = np.array([[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8.0]])
    chex.assert_trees_all_close(y[0, :, :, 0], expected, atol=1e-6)


def test_pooling_int_pool_size_and_default_strides():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    y = layers.MaxPooling2D(2).apply({}, x)
    chex.assert_trees_all_equal(y[0, :, :, 0], jnp.array([[5.0, 7.0], [13.0, 15.0]]))
    y = layers.AveragePooling2D().apply({}, x)  # Keras default pool_size 2
    chex.assert_trees_all_close(y[0, :, :, 0], np.array([[2.5, 4.5], [10.5, 12.5]]))
    y = layers.MaxPooling1D(2, strides=1).apply({}, np.array([[[1.0], [3.0], [2.0]]], np.float32))
    chex.assert_trees_all_equal(y[0, :, 0], jnp.array([3.0, 3.0]))


def test_pooling_wrong_rank_error():
    with pytest.raises(ValueError, match="MaxPooling2D expects inputs of rank 4"):
        layers.MaxPooling2D().apply({}, randn(2, 4, 4))
    with pytest.raises(ValueError, match="AveragePooling1D expects inputs of rank 3"):
        layers.AveragePooling1D().apply({}, randn(2, 4, 4, 1))


@pytest.mark.parametrize("cls, np_op, spatial", [
    (layers.GlobalMaxPooling1D, np.max, (5,)),
    (layers.GlobalAveragePooling1D, np.mean, (5,)),
    (layers.GlobalMaxPooling2D, np.max, (4, 3)),
    (layers.GlobalAveragePooling2D, np.mean, (4, 3)),
    (layers.GlobalMaxPooling3D, np.max, (2, 3, 4)),
    (layers.GlobalAveragePooling3D, np.mean, (2, 3, 4)),
])
def test_global_pooling(cls, np_op, spatial):
    x = randn(3, *spatial, 2)
    axes = tuple(range(1, len(spatial) + 1))
    y = cls().apply({}, x)
    chex.assert_shape(y, (3, 2))
    chex.assert_trees_all_close(y, np_op(x, axis=axes), rtol=1e-5, atol=1e-6)
    y = cls(keepdims=True).apply({}, x)
    chex.assert_shape(y, (3, *([1] * len(spatial)), 2))
    chex.assert_trees_all_close(y, np_op(x, axis=axes, keepdims=True), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# BatchNormalization
# ----------------------------------------------------------------------------------------------

def test_batchnorm_variables_have_keras_names():
    x = randn(8, 3)
    variables = layers.BatchNormalization().init(jax.random.PRNGKey(0), x)
    assert set(variables["params"]) == {"gamma", "beta"}
    assert set(variables["batch_stats"]) == {"moving_mean", "moving_variance"}
    chex.assert_trees_all_equal(variables["params"]["gamma"], jnp.ones(3))
    chex.assert_trees_all_equal(variables["params"]["beta"], jnp.zeros(3))
    chex.assert_trees_all_equal(variables["batch_stats"]["moving_mean"], jnp.zeros(3))
    chex.assert_trees_all_equal(variables["batch_stats"]["moving_variance"], jnp.ones(3))


def test_batchnorm_training_uses_batch_stats_and_updates_moving_stats():
    x = (randn(16, 4) * np.array([1.0, 2.0, 0.5, 3.0]) + np.array([0.5, -1.0, 2.0, 4.0])).astype(np.float32)
    layer = layers.BatchNormalization()
    gamma, beta = randn(4), randn(4)
    mm0, mv0 = randn(4), np.abs(randn(4)) + 0.5
    variables = {"params": {"gamma": gamma, "beta": beta},
                 "batch_stats": {"moving_mean": mm0, "moving_variance": mv0}}
    y, updates = layer.apply(variables, x, training=True, mutable=["batch_stats"])
    x64 = x.astype(np.float64)
    mean, var = x64.mean(0), x64.var(0)  # biased variance
    ref = gamma * (x64 - mean) / np.sqrt(var + 1e-3) + beta
    chex.assert_trees_all_close(y, ref, rtol=1e-4, atol=1e-4)
    chex.assert_trees_all_close(updates["batch_stats"]["moving_mean"], 0.99 * mm0 + 0.01 * mean, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(updates["batch_stats"]["moving_variance"], 0.99 * mv0 + 0.01 * var,
                                rtol=1e-5, atol=1e-6)


def test_batchnorm_inference_uses_moving_stats_and_does_not_update():
    x = randn(16, 4) + 3.0
    layer = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    gamma, beta = randn(4), randn(4)
    mm, mv = randn(4), np.abs(randn(4)) + 0.5
    variables = {"params": {"gamma": gamma, "beta": beta},
                 "batch_stats": {"moving_mean": mm, "moving_variance": mv}}
    y_inf, state = layer.apply(variables, x, training=False, mutable=["batch_stats"])
    ref = gamma * (x.astype(np.float64) - mm) / np.sqrt(mv + 1e-5) + beta
    chex.assert_trees_all_close(y_inf, ref, rtol=1e-4, atol=1e-4)
    chex.assert_trees_all_close(state["batch_stats"], variables["batch_stats"])
    y_train, state = layer.apply(variables, x, training=True, mutable=["batch_stats"])
    assert not np.allclose(y_inf, y_train, atol=1e-2)
    chex.assert_trees_all_close(state["batch_stats"]["moving_mean"], 0.9 * mm + 0.1 * x.astype(np.float64).mean(0),
                                rtol=1e-5, atol=1e-5)


def test_batchnorm_conv_axis_reduces_over_batch_and_space():
    x = randn(4, 3, 5, 2) * 2.0 + 1.0
    y, updates = layers.BatchNormalization().apply(
        {"params": {"gamma": np.ones(2, np.float32), "beta": np.zeros(2, np.float32)},
         "batch_stats": {"moving_mean": np.zeros(2, np.float32), "moving_variance": np.ones(2, np.float32)}},
        x, training=True, mutable=["batch_stats"])
    x64 = x.astype(np.float64)
    mean, var = x64.mean((0, 1, 2)), x64.var((0, 1, 2))
    chex.assert_trees_all_close(y, (x64 - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-4)
    chex.assert_trees_all_close(updates["batch_stats"]["moving_mean"], 0.01 * mean, rtol=1e-4, atol=1e-6)
    # axis=1 normalises per entry of axis 1 instead.
    layer = layers.BatchNormalization(axis=1)
    variables = layer.init(jax.random.PRNGKey(0), x)
    chex.assert_shape(variables["params"]["gamma"], (3,))
    y1, _ = layer.apply(variables, x, training=True, mutable=["batch_stats"])
    m1, v1 = x64.mean((0, 2, 3), keepdims=True), x64.var((0, 2, 3), keepdims=True)
    chex.assert_trees_all_close(y1, (x64 - m1) / np.sqrt(v1 + 1e-3), rtol=1e-4, atol=1e-4)


def test_batchnorm_center_scale_off():
    variables = layers.BatchNormalization(center=False, scale=False).init(jax.random.PRNGKey(0), randn(4, 3))
    assert "params" not in variables or not variables["params"]


# ----------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------

def test_dropout_identity_when_not_training():
    x = randn(50, 40)
    layer = layers.Dropout(0.5)
    chex.assert_trees_all_equal(layer.apply({}, x), x)
    chex.assert_trees_all_equal(layer.apply({}, x, training=False, rngs={"dropout": jax.random.PRNGKey(1)}), x)
    # rate 0 is identity even in training (and needs no rng).
    chex.assert_trees_all_equal(layers.Dropout(0.0).apply({}, x, training=True), x)


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_dropout_training_rate_and_scaling(rate):
    x = np.abs(randn(200, 100)) + 0.1  # no zeros of its own
    y = np.asarray(layers.Dropout(rate).apply({}, x, training=True, rngs={"dropout": jax.random.PRNGKey(3)}))
    dropped = y == 0
    assert abs(dropped.mean() - rate) < 0.02
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1.0 - rate), rtol=1e-6)


def test_dropout_keys_give_different_masks_and_same_key_same_mask():
    x = np.ones((64, 64), np.float32)
    layer = layers.Dropout(0.5)
    a = layer.apply({}, x, training=True, rngs={"dropout": jax.random.PRNGKey(0)})
    b = layer.apply({}, x, training=True, rngs={"dropout": jax.random.PRNGKey(1)})
    c = layer.apply({}, x, training=True, rngs={"dropout": jax.random.PRNGKey(0)})
    assert not np.array_equal(np.asarray(a) == 0, np.asarray(b) == 0)
    chex.assert_trees_all_equal(a, c)


def test_dropout_noise_shape_shares_mask():
    x = np.ones((8, 5, 16), np.float32)
    y = np.asarray(layers.Dropout(0.5, noise_shape=(None, 1, None)).apply(
        {}, x, training=True, rngs={"dropout": jax.random.PRNGKey(2)}))
    # Same mask along axis 1.
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1, :], y.shape))
    assert 0 < (y == 0).mean() < 1


def test_dropout_bad_rate():
    with pytest.raises(ValueError, match=r"Dropout\(rate=...\) must be a number in \[0, 1\)"):
        layers.Dropout(1.0)  # when the layer is made, as Keras checks it


# ----------------------------------------------------------------------------------------------
# Flatten, Reshape, Activation
# ----------------------------------------------------------------------------------------------

def test_flatten():
    x = randn(3, 2, 4, 5)
    y = layers.Flatten().apply({}, x)
    chex.assert_shape(y, (3, 40))
    chex.assert_trees_all_equal(y, x.reshape(3, -1))


def test_reshape():
    x = randn(3, 12)
    y = layers.Reshape((3, 4)).apply({}, x)
    chex.assert_shape(y, (3, 3, 4))
    chex.assert_trees_all_equal(y, x.reshape(3, 3, 4))
    y = layers.Reshape((-1, 2)).apply({}, x)
    chex.assert_shape(y, (3, 6, 2))


@pytest.mark.parametrize("name, fn", [
    ("relu", lambda v: np.maximum(v, 0)),
    ("sigmoid", lambda v: 1 / (1 + np.exp(-v))),
    ("tanh", np.tanh),
    ("linear", lambda v: v),
    ("softmax", lambda v: np.exp(v) / np.exp(v).sum(-1, keepdims=True)),
])
def test_activation_layer(name, fn):
    x = randn(4, 5)
    chex.assert_trees_all_close(layers.Activation(name).apply({}, x), fn(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_activation_layer_callable_and_unknown():
    x = randn(4, 5)
    chex.assert_trees_all_close(layers.Activation(lambda v: 2 * v).apply({}, x), 2 * x)
    with pytest.raises(ValueError, match="Unknown activation 'relux'. Valid names:.*relu"):
        layers.Activation("relux").apply({}, x)


# ----------------------------------------------------------------------------------------------
# Regularizers sown by layers
# ----------------------------------------------------------------------------------------------

def sown_total(state):
    return sum(float(v) for v in jax.tree_util.tree_leaves(state.get("losses", {})))


def test_conv_kernel_and_bias_regularizer_sown():
    x = randn(2, 5, 5, 2)
    kernel, bias = randn(3, 3, 2, 4), randn(4)
    layer = layers.Conv2D(4, 3, kernel_regularizer=regularizers.l2(0.01), bias_regularizer=regularizers.l1(0.1))
    _, state = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x, mutable=["losses"])
    expected = 0.01 * np.sum(kernel.astype(np.float64) ** 2) + 0.1 * np.sum(np.abs(bias))
    assert len(jax.tree_util.tree_leaves(state["losses"])) == 2
    np.testing.assert_allclose(sown_total(state), expected, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Against Keras 3 itself
# ----------------------------------------------------------------------------------------------

def _keras():
    keras = pytest.importorskip("keras")
    return keras


def _to_np(keras, value):
    return np.asarray(keras.ops.convert_to_numpy(value))


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, strides=2, padding="same"),
    dict(kernel_size=(3, 2), strides=1, padding="same", dilation_rate=(2, 1)),
    dict(kernel_size=(2, 3), strides=(1, 2), padding="valid", activation="relu"),
])
def test_conv2d_matches_keras(kwargs):
    keras = _keras()
    x = randn(2, 7, 8, 3)
    ksize = kwargs["kernel_size"]
    ksize = (ksize, ksize) if isinstance(ksize, int) else ksize
    kernel, bias = randn(*ksize, 3, 4), randn(4)
    klayer = keras.layers.Conv2D(4, **kwargs)
    klayer.build(x.shape)
    klayer.set_weights([kernel, bias])
    expected = _to_np(keras, klayer(x))
    y = layers.Conv2D(4, **kwargs).apply({"params": {"kernel": kernel, "bias": bias}}, x)
    chex.assert_shape(y, expected.shape)
    chex.assert_trees_all_close(y, expected, rtol=1e-4, atol=1e-4)


def test_conv1d_conv3d_and_dense_match_keras():
    keras = _keras()
    x1 = randn(2, 9, 3)
    k1, b1 = randn(3, 3, 2), randn(2)
    kl = keras.layers.Conv1D(2, 3, strides=2, padding="same")
    kl.build(x1.shape)
    kl.set_weights([k1, b1])
    chex.assert_trees_all_close(layers.Conv1D(2, 3, strides=2, padding="same").apply(
        {"params": {"kernel": k1, "bias": b1}}, x1), _to_np(keras, kl(x1)), rtol=1e-4, atol=1e-4)

    x3 = randn(1, 4, 5, 3, 2)
    k3, b3 = randn(2, 2, 2, 2, 3), randn(3)
    kl = keras.layers.Conv3D(3, 2, strides=(2, 2, 1), padding="same")
    kl.build(x3.shape)
    kl.set_weights([k3, b3])
    chex.assert_trees_all_close(layers.Conv3D(3, 2, strides=(2, 2, 1), padding="same").apply(
        {"params": {"kernel": k3, "bias": b3}}, x3), _to_np(keras, kl(x3)), rtol=1e-4, atol=1e-4)

    xd = randn(4, 6)
    kd, bd = randn(6, 3), randn(3)
    kl = keras.layers.Dense(3, activation="gelu")
    kl.build(xd.shape)
    kl.set_weights([kd, bd])
    chex.assert_trees_all_close(layers.Dense(3, activation="gelu").apply(
        {"params": {"kernel": kd, "bias": bd}}, xd), _to_np(keras, kl(xd)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kcls, dcls, spatial, kwargs", [
    ("MaxPooling2D", layers.MaxPooling2D, (5, 7), dict(pool_size=2, padding="same")),
    ("AveragePooling2D", layers.AveragePooling2D, (5, 7), dict(pool_size=2, padding="same")),
    ("AveragePooling2D", layers.AveragePooling2D, (6, 7), dict(pool_size=(3, 2), strides=2, padding="same")),
    ("AveragePooling2D", layers.AveragePooling2D, (6, 7), dict(pool_size=3, strides=(1, 2), padding="valid")),
    ("MaxPooling1D", layers.MaxPooling1D, (9,), dict(pool_size=3, strides=2, padding="same")),
    ("AveragePooling1D", layers.AveragePooling1D, (9,), dict(pool_size=2, padding="same")),
    ("GlobalAveragePooling2D", layers.GlobalAveragePooling2D, (4, 5), {}),
    ("GlobalMaxPooling1D", layers.GlobalMaxPooling1D, (6,), {}),
])
def test_pooling_matches_keras(kcls, dcls, spatial, kwargs):
    keras = _keras()
    x = randn(2, *spatial, 3)
    expected = _to_np(keras, getattr(keras.layers, kcls)(**kwargs)(x))
    y = dcls(**kwargs).apply({}, x)
    chex.assert_shape(y, expected.shape)
    chex.assert_trees_all_close(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_batchnorm_matches_keras():
    keras = _keras()
    x = randn(8, 3) * 2 + 1
    gamma, beta = randn(3), randn(3)
    mm, mv = randn(3), np.abs(randn(3)) + 0.5
    kl = keras.layers.BatchNormalization()
    kl.build(x.shape)
    kl.set_weights([gamma, beta, mm, mv])
    expected_inf = _to_np(keras, kl(x, training=False))
    expected_train = _to_np(keras, kl(x, training=True))
    expected_mm, expected_mv = (_to_np(keras, w) for w in (kl.moving_mean, kl.moving_variance))
    variables = {"params": {"gamma": gamma, "beta": beta}, "batch_stats": {"moving_mean": mm, "moving_variance": mv}}
    layer = layers.BatchNormalization()
    chex.assert_trees_all_close(layer.apply(variables, x), expected_inf, rtol=1e-4, atol=1e-4)
    y, state = layer.apply(variables, x, training=True, mutable=["batch_stats"])
    chex.assert_trees_all_close(y, expected_train, rtol=1e-4, atol=1e-4)
    chex.assert_trees_all_close(state["batch_stats"]["moving_mean"], expected_mm, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(state["batch_stats"]["moving_variance"], expected_mv, rtol=1e-5, atol=1e-6)


def test_conv_output_sizes_follow_keras_formulas():
    # ceil(in / stride) outputs for SAME, floor((in - eff_k) / s) + 1 for VALID, across sizes.
    for size, k, s, d in itertools.product(range(4, 9), (1, 2, 3), (1, 2, 3), (1, 2)):
        if (k - 1) * d + 1 > size:
            continue
        x = np.zeros((1, size, 1), np.float32)
        same = layers.Conv1D(1, k, strides=s, dilation_rate=d, padding="same")
        valid = layers.Conv1D(1, k, strides=s, dilation_rate=d, padding="valid")
        params = {"params": {"kernel": np.zeros((k, 1, 1), np.float32), "bias": np.zeros(1, np.float32)}}
        assert jax.eval_shape(same.apply, params, x).shape[1] == math.ceil(size / s)
        assert jax.eval_shape(valid.apply, params, x).shape[1] == (size - (k - 1) * d - 1) // s + 1
