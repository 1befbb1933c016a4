"""Activations against numpy formulas, initializer statistics, and regularizers (alone and sown by layers)."""
import math
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # only read if Keras is imported, before its first import

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlkit import activations, initializers, layers, regularizers

X = np.concatenate([np.linspace(-6.0, 6.0, 41), [-20.0, -1e-3, 0.0, 1e-3, 20.0]]).astype(np.float32)
X64 = X.astype(np.float64)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def np_gelu_exact(x):
    erf = np.vectorize(math.erf)
    return x * 0.5 * (1.0 + erf(x / math.sqrt(2.0)))


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


REFERENCES = {
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "gelu": np_gelu_exact,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "softplus": lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0),
    "linear": lambda x: x,
    "identity": lambda x: x,
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_activation_by_name_matches_formula(name):
    fn = activations.get(name)
    chex.assert_trees_all_close(fn(jnp.asarray(X)), REFERENCES[name](X64), rtol=1e-5, atol=1e-6)


def test_activation_names_are_case_insensitive():
    chex.assert_trees_all_close(activations.get("ReLU")(X), REFERENCES["relu"](X64))


def test_gelu_is_exact_erf_form_not_tanh_approximation():
    x = np.array([-3.0, -1.5, -0.7, 0.5, 1.0, 2.5], np.float32)
    exact = np_gelu_exact(x.astype(np.float64))
    tanh_approx = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    # The two forms differ by more than the tolerance we hold dlkit to.
    assert np.max(np.abs(exact - tanh_approx)) > 1e-4
    chex.assert_trees_all_close(activations.get("gelu")(x), exact, rtol=1e-6, atol=1e-6)


def test_elu_alpha_is_one():
    chex.assert_trees_all_close(activations.get("elu")(jnp.float32(-2.0)), np.expm1(-2.0), rtol=1e-6)
    # and the explicit alpha argument is respected
    chex.assert_trees_all_close(activations.elu(jnp.float32(-2.0), alpha=0.5), 0.5 * np.expm1(-2.0), rtol=1e-6)


def test_softmax_last_axis():
    x = np.random.default_rng(0).standard_normal((4, 7)).astype(np.float32) * 3
    y = activations.get("softmax")(x)
    chex.assert_trees_all_close(y, np_softmax(x.astype(np.float64)), rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(jnp.sum(y, -1), np.ones(4), atol=1e-6)
    # rows are independent: a softmax over the whole array (or axis 0) would differ
    assert not np.allclose(np.asarray(y), np_softmax(x.T.astype(np.float64)).T, atol=1e-3)


def test_none_is_linear_and_callables_pass_through():
    assert activations.get(None) is activations.linear
    chex.assert_trees_all_equal(activations.get(None)(X), X)
    fn = lambda v: v * 3  # noqa: E731
    assert activations.get(fn) is fn


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown activation 'swishy'") as info:
        activations.get("swishy")
    message = str(info.value)
    for name in ("relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softmax", "softplus", "linear"):
        assert name in message
    with pytest.raises(TypeError, match="Valid names"):
        activations.get(3)


def test_activation_name_of():
    assert activations.name_of(activations.get("relu")) == "relu"
    assert activations.name_of(activations.get("softmax")) == "softmax"


# ----------------------------------------------------------------------------------------------
# Initializers
# ----------------------------------------------------------------------------------------------

KEY = jax.random.PRNGKey(42)
TRUNC_CORRECTION = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


def draw(name, shape):
    return np.asarray(initializers.get(name)(KEY, shape, jnp.float32), np.float64)


def test_glorot_uniform_bound_and_variance():
    fan_in, fan_out = 300, 500
    w = draw("glorot_uniform", (fan_in, fan_out))
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert w.dtype == np.float64 and w.shape == (fan_in, fan_out)
    assert np.abs(w).max() <= bound + 1e-7
    assert np.abs(w).max() > 0.99 * bound  # uses the whole range
    np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.03)
    assert abs(w.mean()) < 0.01 * bound


def test_glorot_uniform_conv_kernel_uses_receptive_field():
    # Keras: fan_in = kh * kw * in_ch, fan_out = kh * kw * filters.
    w = draw("glorot_uniform", (3, 3, 16, 32))
    bound = math.sqrt(6.0 / (9 * 16 + 9 * 32))
    assert np.abs(w).max() <= bound + 1e-7
    np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.05)


def test_glorot_normal_std():
    fan_in, fan_out = 300, 500
    w = draw("glorot_normal", (fan_in, fan_out))
    std = math.sqrt(2.0 / (fan_in + fan_out))
    np.testing.assert_allclose(w.std(), std, rtol=0.03)
    assert np.abs(w).max() <= 2 * std / TRUNC_CORRECTION + 1e-6  # truncated


def test_he_normal_std_is_truncation_corrected():
    fan_in = 400
    w = draw("he_normal", (fan_in, 500))
    std = math.sqrt(2.0 / fan_in)
    # An uncorrected truncated normal would have std 0.88 * std: well outside 3 %.
    np.testing.assert_allclose(w.std(), std, rtol=0.03)
    assert np.abs(w).max() <= 2 * std / TRUNC_CORRECTION + 1e-6
    assert abs(w.mean()) < 0.02 * std


def test_he_normal_conv_fan_in():
    w = draw("he_normal", (3, 3, 16, 64))
    np.testing.assert_allclose(w.std(), math.sqrt(2.0 / (9 * 16)), rtol=0.04)


def test_he_uniform():
    fan_in = 400
    w = draw("he_uniform", (fan_in, 500))
    bound = math.sqrt(6.0 / fan_in)
    assert np.abs(w).max() <= bound + 1e-7
    np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.03)


def test_lecun_normal_and_uniform():
    fan_in = 250
    w = draw("lecun_normal", (fan_in, 600))
    np.testing.assert_allclose(w.std(), math.sqrt(1.0 / fan_in), rtol=0.03)
    assert np.abs(w).max() <= 2 * math.sqrt(1.0 / fan_in) / TRUNC_CORRECTION + 1e-6
    w = draw("lecun_uniform", (fan_in, 600))
    bound = math.sqrt(3.0 / fan_in)
    assert np.abs(w).max() <= bound + 1e-7
    np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.03)


def test_zeros_ones_constant():
    chex.assert_trees_all_equal(initializers.get("zeros")(KEY, (3, 4), jnp.float32), jnp.zeros((3, 4)))
    chex.assert_trees_all_equal(initializers.get("ones")(KEY, (5,), jnp.float32), jnp.ones(5))
    chex.assert_trees_all_equal(initializers.constant(2.5)(KEY, (2, 2), jnp.float32), jnp.full((2, 2), 2.5))


def test_random_normal_and_uniform_keras_defaults():
    w = draw("random_normal", (200, 500))
    np.testing.assert_allclose(w.std(), 0.05, rtol=0.03)
    assert abs(w.mean()) < 0.002
    w = np.asarray(initializers.random_normal(mean=1.0, stddev=0.1)(KEY, (200, 500)), np.float64)
    np.testing.assert_allclose([w.mean(), w.std()], [1.0, 0.1], rtol=0.03)
    w = draw("random_uniform", (200, 500))
    assert w.min() >= -0.05 and w.max() <= 0.05
    assert w.min() < -0.049 and w.max() > 0.049
    w = np.asarray(initializers.random_uniform(1.0, 3.0)(KEY, (100, 100)), np.float64)
    assert w.min() >= 1.0 and w.max() <= 3.0
    np.testing.assert_allclose(w.mean(), 2.0, atol=0.02)


def test_initializer_lookup():
    assert initializers.get("xavier_uniform") is initializers.glorot_uniform
    assert initializers.get("He_Normal") is initializers.he_normal
    custom = lambda key, shape, dtype=jnp.float32: jnp.full(shape, 7.0, dtype)  # noqa: E731
    assert initializers.get(custom) is custom
    with pytest.raises(ValueError, match=r"Unknown initializer 'glorot'.*Valid names:.*glorot_uniform.*he_normal"):
        initializers.get("glorot")


def test_dense_uses_initializers_by_name():
    x = jnp.ones((2, 300))
    params = layers.Dense(400).init(KEY, x)["params"]
    bound = math.sqrt(6.0 / 700)
    assert float(jnp.abs(params["kernel"]).max()) <= bound + 1e-7
    np.testing.assert_allclose(float(jnp.var(params["kernel"])), bound ** 2 / 3, rtol=0.05)
    chex.assert_trees_all_equal(params["bias"], jnp.zeros(400))
    params = layers.Dense(3, kernel_initializer="ones", bias_initializer="ones").init(KEY, x)["params"]
    chex.assert_trees_all_equal(params, {"kernel": jnp.ones((300, 3)), "bias": jnp.ones(3)})
    custom = lambda key, shape, dtype=jnp.float32: jnp.full(shape, 0.5, dtype)  # noqa: E731
    params = layers.Dense(2, kernel_initializer=custom).init(KEY, x)["params"]
    chex.assert_trees_all_equal(params["kernel"], jnp.full((300, 2), 0.5))


# ----------------------------------------------------------------------------------------------
# Regularizers
# ----------------------------------------------------------------------------------------------

W = np.array([[0.5, -1.5, 2.0], [-0.25, 0.0, 3.0]], np.float32)
W64 = W.astype(np.float64)


def test_regularizer_formulas():
    np.testing.assert_allclose(regularizers.l1(0.3)(W), 0.3 * np.abs(W64).sum(), rtol=1e-6)
    np.testing.assert_allclose(regularizers.l2(0.2)(W), 0.2 * (W64 ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(regularizers.l1_l2(l1=0.1, l2=0.05)(W),
                               0.1 * np.abs(W64).sum() + 0.05 * (W64 ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(regularizers.L1L2(l1=0.0, l2=0.0)(W), 0.0)
    # Keras' defaults are 0.01
    np.testing.assert_allclose(regularizers.get("l2")(W), 0.01 * (W64 ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(regularizers.get("l1")(W), 0.01 * np.abs(W64).sum(), rtol=1e-6)
    np.testing.assert_allclose(regularizers.get("l1_l2")(W), 0.01 * (np.abs(W64).sum() + (W64 ** 2).sum()), rtol=1e-6)
    assert regularizers.get(None) is None
    with pytest.raises(ValueError, match=r"Unknown regularizer 'l3'.*Valid names: l1, l1_l2, l2"):
        regularizers.get("l3")


def test_regularizer_gradient():
    w = W + np.float32(0.125) * (W == 0)  # |w| has no derivative at 0
    grad = jax.grad(regularizers.l1_l2(0.1, 0.2))(jnp.asarray(w))
    chex.assert_trees_all_close(grad, 0.1 * np.sign(w) + 0.4 * w, atol=1e-6)


def sown(state):
    return jax.tree_util.tree_leaves(state.get("losses", {}))


def test_dense_kernel_regularizer_sows_exact_penalty():
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    kernel = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    bias = np.array([1.0, -2.0, 3.0], np.float32)
    layer = layers.Dense(3, kernel_regularizer=regularizers.l2(0.01))
    y, state = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x, mutable=["losses"])
    terms = sown(state)
    assert len(terms) == 1  # the bias is not penalised
    np.testing.assert_allclose(float(terms[0]), 0.01 * np.sum(kernel.astype(np.float64) ** 2), rtol=1e-6)
    chex.assert_trees_all_close(y, x @ kernel + bias, rtol=1e-5, atol=1e-5)
    # the name works too
    _, state = layers.Dense(3, kernel_regularizer="l2").apply(
        {"params": {"kernel": kernel, "bias": bias}}, x, mutable=["losses"])
    np.testing.assert_allclose(float(sum(sown(state))), 0.01 * np.sum(kernel.astype(np.float64) ** 2), rtol=1e-6)
    # no regularizer, nothing sown
    _, state = layers.Dense(3).apply({"params": {"kernel": kernel, "bias": bias}}, x, mutable=["losses"])
    assert sown(state) == []


def test_penalty_gradient_flows_to_kernel():
    x = np.ones((2, 4), np.float32)
    kernel = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    layer = layers.Dense(3, use_bias=False, kernel_regularizer=regularizers.l2(0.5))

    def penalty(k):
        _, state = layer.apply({"params": {"kernel": k}}, x, mutable=["losses"])
        return sum(sown(state))

    chex.assert_trees_all_close(jax.grad(penalty)(jnp.asarray(kernel)), 2 * 0.5 * kernel, rtol=1e-6)


def test_activity_regularizer_sows_keras_batch_mean_penalty():
    x = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    kernel = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    bias = np.array([0.1, -0.2, 0.3], np.float32)
    layer = layers.Dense(3, activation="relu", activity_regularizer=regularizers.l1(0.1))
    y, state = layer.apply({"params": {"kernel": kernel, "bias": bias}}, x, mutable=["losses"])
    out = np.maximum(x.astype(np.float64) @ kernel + bias, 0)
    terms = sown(state)
    assert len(terms) == 1
    # Keras applies the penalty to the layer's output (after the activation) and divides by the batch size.
    np.testing.assert_allclose(float(terms[0]), 0.1 * np.abs(out).sum() / x.shape[0], rtol=1e-5)
    chex.assert_trees_all_close(y, out, rtol=1e-5, atol=1e-5)


def test_activity_regularizer_matches_keras():
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(4).standard_normal((8, 5)).astype(np.float32)
    kernel = np.random.default_rng(5).standard_normal((5, 2)).astype(np.float32)
    bias = np.zeros(2, np.float32)
    kl = keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L2(0.01),
                            activity_regularizer=keras.regularizers.L2(0.05))
    kl.build(x.shape)
    kl.set_weights([kernel, bias])
    kl(x)
    expected = sum(float(keras.ops.convert_to_numpy(v)) for v in kl.losses)
    _, state = layers.Dense(2, kernel_regularizer=regularizers.l2(0.01),
                            activity_regularizer=regularizers.l2(0.05)).apply(
        {"params": {"kernel": kernel, "bias": bias}}, x, mutable=["losses"])
    np.testing.assert_allclose(float(sum(sown(state))), expected, rtol=1e-5)
