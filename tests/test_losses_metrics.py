"""Losses, metrics, to_categorical and optimizers against numpy / scikit-learn / hand-written Keras formulas."""
import math
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # only read if Keras is imported, before its first import

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import metrics as skm

from dlkit import losses, metrics, optimizers, utils

RNG = np.random.default_rng(7)
N, K = 12, 4


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


LOGITS = RNG.standard_normal((N, K)).astype(np.float32) * 2
PROBS = softmax(LOGITS.astype(np.float64)).astype(np.float32)
PROBS64 = PROBS.astype(np.float64) / PROBS.astype(np.float64).sum(-1, keepdims=True)  # for sklearn's sum check
LABELS = RNG.integers(0, K, N).astype(np.int32)
LABELS[:K] = np.arange(K)  # every class present
ONE_HOT = np.eye(K, dtype=np.float32)[LABELS]

BIN_LOGITS = RNG.standard_normal((N, 1)).astype(np.float32) * 2
BIN_PROBS = sigmoid(BIN_LOGITS.astype(np.float64)).astype(np.float32)
BIN_Y = RNG.integers(0, 2, N).astype(np.float32)
BIN_Y[:2] = [0, 1]


# ----------------------------------------------------------------------------------------------
# Regression losses
# ----------------------------------------------------------------------------------------------

def test_mse_mae_per_sample_and_vs_sklearn():
    y = RNG.standard_normal((N, 3)).astype(np.float32)
    p = RNG.standard_normal((N, 3)).astype(np.float32)
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    per = losses.mean_squared_error(y, p)
    chex.assert_shape(per, (N,))
    chex.assert_trees_all_close(per, ((y64 - p64) ** 2).mean(-1), rtol=1e-5)
    chex.assert_trees_all_close(losses.mean_absolute_error(y, p), np.abs(y64 - p64).mean(-1), rtol=1e-5)
    np.testing.assert_allclose(losses.get("mse")(y, p), skm.mean_squared_error(y64, p64), rtol=1e-5)
    np.testing.assert_allclose(losses.get("mae")(y, p), skm.mean_absolute_error(y64, p64), rtol=1e-5)
    np.testing.assert_allclose(losses.get("mean_squared_error")(y, p), skm.mean_squared_error(y64, p64), rtol=1e-5)
    np.testing.assert_allclose(losses.get("MAE")(y, p), skm.mean_absolute_error(y64, p64), rtol=1e-5)


def test_regression_loss_rank_rule():
    # (N,) targets meet (N, 1) outputs, as in Keras, without broadcasting to (N, N).
    y = RNG.standard_normal(N).astype(np.float32)
    p = RNG.standard_normal((N, 1)).astype(np.float32)
    per = losses.mean_squared_error(y, p)
    chex.assert_shape(per, (N,))
    chex.assert_trees_all_close(per, (y - p[:, 0]) ** 2, rtol=1e-5)
    # (N, 1) targets meet (N,) outputs; a 1-D output still gives one value per sample.
    per = losses.mean_absolute_error(p, y)
    chex.assert_shape(per, (N,))
    chex.assert_trees_all_close(per, np.abs(y - p[:, 0]), rtol=1e-5)
    chex.assert_shape(losses.mean_squared_error(y, y + 1), (N,))
    yb = (y > 0).astype(np.float32)
    pb = sigmoid(y.astype(np.float64)).astype(np.float32)
    chex.assert_trees_all_close(losses.binary_crossentropy(yb, pb),
                                -(yb * np.log(pb) + (1 - yb) * np.log(1 - pb)), rtol=1e-5)
    chex.assert_shape(metrics.binary_accuracy(yb, pb), (N,))
    w = np.arange(N, dtype=np.float32)
    np.testing.assert_allclose(losses.MeanSquaredError()(y, p[:, 0], sample_weight=w),
                               ((y - p[:, 0]) ** 2 * w).sum() / N, rtol=1e-5)


def test_shape_mismatch_raises():
    y = np.zeros((N, 3), np.float32)
    p = np.zeros((N, 1), np.float32)
    with pytest.raises(ValueError, match=r"mean_squared_error: targets of shape \(3,\).*\(1,\).*Dense\(3\)"):
        losses.mean_squared_error(y, p)
    with pytest.raises(ValueError, match="do not match"):
        losses.get("mae")(y, p)
    with pytest.raises(ValueError, match="do not match"):
        losses.binary_crossentropy(y, p)


# ----------------------------------------------------------------------------------------------
# Cross-entropies
# ----------------------------------------------------------------------------------------------

def test_binary_crossentropy_vs_sklearn_and_formula():
    per = losses.binary_crossentropy(BIN_Y, BIN_PROBS)
    chex.assert_shape(per, (N,))
    p = BIN_PROBS[:, 0].astype(np.float64)
    chex.assert_trees_all_close(per, -(BIN_Y * np.log(p) + (1 - BIN_Y) * np.log(1 - p)), rtol=1e-5)
    np.testing.assert_allclose(losses.get("binary_crossentropy")(BIN_Y, BIN_PROBS), skm.log_loss(BIN_Y, p),
                               rtol=1e-5)


def test_binary_crossentropy_multi_label_mean_over_last_axis():
    y = RNG.integers(0, 2, (N, 3)).astype(np.float32)
    p = sigmoid(RNG.standard_normal((N, 3)))
    per = losses.binary_crossentropy(y, p.astype(np.float32))
    chex.assert_trees_all_close(per, (-(y * np.log(p) + (1 - y) * np.log(1 - p))).mean(-1), rtol=1e-5)


def test_binary_crossentropy_from_logits_agrees():
    a = losses.binary_crossentropy(BIN_Y, BIN_LOGITS, from_logits=True)
    b = losses.binary_crossentropy(BIN_Y, BIN_PROBS)
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses.BinaryCrossentropy(from_logits=True)(BIN_Y, BIN_LOGITS),
                               skm.log_loss(BIN_Y, BIN_PROBS[:, 0].astype(np.float64)), rtol=1e-5)
    # logits taken as probabilities would give something else
    assert not np.allclose(losses.binary_crossentropy(BIN_Y, sigmoid(BIN_PROBS)), b, atol=1e-3)


def test_categorical_crossentropy_vs_sklearn_and_from_logits():
    per = losses.categorical_crossentropy(ONE_HOT, PROBS)
    chex.assert_shape(per, (N,))
    chex.assert_trees_all_close(per, -np.log(PROBS.astype(np.float64)[np.arange(N), LABELS]), rtol=1e-5)
    expected = skm.log_loss(LABELS, PROBS64, labels=list(range(K)))
    np.testing.assert_allclose(losses.get("categorical_crossentropy")(ONE_HOT, PROBS), expected, rtol=1e-5)
    np.testing.assert_allclose(losses.CategoricalCrossentropy(from_logits=True)(ONE_HOT, LOGITS), expected, rtol=1e-5)
    chex.assert_trees_all_close(losses.categorical_crossentropy(ONE_HOT, LOGITS, from_logits=True), per, rtol=1e-5)


def test_sparse_categorical_crossentropy_vs_sklearn_and_from_logits():
    expected = skm.log_loss(LABELS, PROBS64, labels=list(range(K)))
    per = losses.sparse_categorical_crossentropy(LABELS, PROBS)
    chex.assert_shape(per, (N,))
    chex.assert_trees_all_close(per, losses.categorical_crossentropy(ONE_HOT, PROBS), rtol=1e-6)
    np.testing.assert_allclose(losses.get("sparse_categorical_crossentropy")(LABELS, PROBS), expected, rtol=1e-5)
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS), expected,
                               rtol=1e-5)
    # (N, 1) labels and float labels are accepted, as in Keras
    chex.assert_trees_all_close(losses.sparse_categorical_crossentropy(LABELS[:, None].astype(np.float32), PROBS), per,
                                rtol=1e-6)


def test_probabilities_are_renormalised_like_keras():
    # Keras divides by the sum before taking the log.
    p = np.array([[2.0, 1.0, 1.0]], np.float32)
    np.testing.assert_allclose(losses.categorical_crossentropy(np.array([[1.0, 0, 0]], np.float32), p), [math.log(2)],
                               rtol=1e-6)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(np.array([1]), p), [math.log(4)], rtol=1e-6)


def test_clipping_at_keras_epsilon():
    big = -math.log(1e-7)
    np.testing.assert_allclose(losses.binary_crossentropy(np.array([1.0]), np.array([[0.0]], np.float32)), [big],
                               rtol=1e-4)
    np.testing.assert_allclose(losses.binary_crossentropy(np.array([0.0]), np.array([[1.0]], np.float32)), [big],
                               rtol=2e-2)  # 1 - 1e-7 rounds in float32
    p = np.array([[0.0, 1.0, 0.0]], np.float32)
    np.testing.assert_allclose(losses.categorical_crossentropy(np.array([[1.0, 0, 0]], np.float32), p), [big],
                               rtol=1e-4)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(np.array([0]), p), [big], rtol=1e-4)
    # the right class at probability 1 costs (almost) nothing and nothing is NaN
    y = losses.categorical_crossentropy(np.array([[0.0, 1.0, 0]], np.float32), p)
    assert np.all(np.isfinite(y)) and float(y[0]) < 1e-6
    g = jax.grad(lambda q: losses.binary_crossentropy(jnp.array([1.0]), q).sum())(jnp.array([[0.0]]))
    assert np.all(np.isfinite(g))


def test_label_smoothing_formula():
    y = ONE_HOT
    ls = 0.2
    smoothed = y * (1 - ls) + ls / K
    expected = -(smoothed * np.log(PROBS.astype(np.float64))).sum(-1)
    chex.assert_trees_all_close(losses.categorical_crossentropy(y, PROBS, label_smoothing=ls), expected, rtol=1e-5)
    yb = BIN_Y[:, None]
    sb = yb * (1 - ls) + 0.5 * ls
    p = BIN_PROBS.astype(np.float64)
    chex.assert_trees_all_close(losses.binary_crossentropy(yb, BIN_PROBS, label_smoothing=ls),
                                (-(sb * np.log(p) + (1 - sb) * np.log(1 - p))).mean(-1), rtol=1e-5)


def test_crossentropies_match_keras():
    keras = pytest.importorskip("keras")
    kl = keras.losses

    def k(v):
        return float(keras.ops.convert_to_numpy(v))

    np.testing.assert_allclose(losses.get("binary_crossentropy")(BIN_Y[:, None], BIN_PROBS),
                               k(kl.BinaryCrossentropy()(BIN_Y[:, None], BIN_PROBS)), rtol=1e-5)
    smoothed = dict(from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(losses.BinaryCrossentropy(**smoothed)(BIN_Y[:, None], BIN_LOGITS),
                               k(kl.BinaryCrossentropy(**smoothed)(BIN_Y[:, None], BIN_LOGITS)), rtol=1e-5)
    np.testing.assert_allclose(losses.CategoricalCrossentropy(label_smoothing=0.1)(ONE_HOT, PROBS),
                               k(kl.CategoricalCrossentropy(label_smoothing=0.1)(ONE_HOT, PROBS)), rtol=1e-5)
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS),
                               k(kl.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS)), rtol=1e-5)
    p = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], np.float32)
    y = np.array([[1.0, 0, 0], [0, 0, 1.0]], np.float32)
    np.testing.assert_allclose(losses.get("categorical_crossentropy")(y, p), k(kl.CategoricalCrossentropy()(y, p)),
                               rtol=1e-4)
    w = np.linspace(0.0, 2.0, N).astype(np.float32)
    np.testing.assert_allclose(losses.CategoricalCrossentropy()(ONE_HOT, PROBS, sample_weight=w),
                               k(kl.CategoricalCrossentropy()(ONE_HOT, PROBS, sample_weight=w)), rtol=1e-5)


def test_wrong_label_format_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy expects integer class labels.*"
                                         r"Use loss='categorical_crossentropy'.*argmax"):
        losses.sparse_categorical_crossentropy(ONE_HOT, PROBS)
    with pytest.raises(ValueError, match=r"categorical_crossentropy expects one-hot targets.*"
                                         r"loss='sparse_categorical_crossentropy'.*to_categorical\(y, 4\)"):
        losses.categorical_crossentropy(LABELS, PROBS)
    with pytest.raises(ValueError, match="expects one-hot targets"):
        losses.get("categorical_crossentropy")(LABELS[:, None], PROBS)
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy: labels of shape"):
        losses.sparse_categorical_crossentropy(np.zeros((N, 2, 2)), PROBS)


# ----------------------------------------------------------------------------------------------
# Loss objects: reduction, lookup, custom functions
# ----------------------------------------------------------------------------------------------

def test_weighted_reduction_is_sum_over_batch_size():
    y = RNG.standard_normal((N, 2)).astype(np.float32)
    p = RNG.standard_normal((N, 2)).astype(np.float32)
    w = np.zeros(N, np.float32)
    w[:3] = [1.0, 2.0, 0.5]  # sum(w) != N: dividing by sum(w) would differ
    per = ((y.astype(np.float64) - p) ** 2).mean(-1)
    np.testing.assert_allclose(losses.MeanSquaredError()(y, p, sample_weight=w), (per * w).sum() / N, rtol=1e-5)
    np.testing.assert_allclose(losses.MeanSquaredError()(y, p), per.mean(), rtol=1e-5)
    np.testing.assert_allclose(losses.MeanSquaredError()(y, p, sample_weight=2.0), 2 * per.mean(), rtol=1e-5)
    ce = -np.log(PROBS.astype(np.float64)[np.arange(N), LABELS])
    wc = np.arange(N, dtype=np.float32) / N
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy()(LABELS, PROBS, sample_weight=wc),
                               (ce * wc).sum() / N, rtol=1e-5)


def test_loss_lookup():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("mae"), losses.MeanAbsoluteError)
    assert isinstance(losses.get("Binary_Crossentropy"), losses.BinaryCrossentropy)
    obj = losses.CategoricalCrossentropy(from_logits=True)
    assert losses.get(obj) is obj
    with pytest.raises(ValueError, match=r"Unknown loss 'msee'.*Valid names:.*mse"):
        losses.get("msee")
    with pytest.raises(ValueError, match="A loss is required"):
        losses.get(None)


def test_custom_scalar_loss_function_is_vmapped_per_sample():
    def sum_sq(y_true, y_pred):  # returns a scalar for whatever batch it sees
        return jnp.sum((y_true - y_pred) ** 2)

    y = RNG.standard_normal((N, 3)).astype(np.float32)
    p = RNG.standard_normal((N, 3)).astype(np.float32)
    loss = losses.get(sum_sq)
    assert isinstance(loss, losses.FunctionLoss)
    assert loss.name == "sum_sq"
    per_sample = ((y.astype(np.float64) - p) ** 2).sum(-1)
    chex.assert_trees_all_close(loss.per_sample(jnp.asarray(y), jnp.asarray(p)), per_sample, rtol=1e-5)
    # mean over samples of per-sample sums: NOT the batch sum the function returns
    np.testing.assert_allclose(loss(y, p), per_sample.mean(), rtol=1e-5)
    w = np.arange(N, dtype=np.float32)
    np.testing.assert_allclose(loss(y, p, sample_weight=w), (per_sample * w).sum() / N, rtol=1e-5)


def test_custom_per_sample_loss_function():
    def per_elem(y_true, y_pred):  # returns (N, 3): averaged per sample
        return jnp.abs(y_true - y_pred)

    y = RNG.standard_normal((N, 3)).astype(np.float32)
    p = RNG.standard_normal((N, 3)).astype(np.float32)
    loss = losses.get(per_elem)
    chex.assert_trees_all_close(loss.per_sample(jnp.asarray(y), jnp.asarray(p)), np.abs(y - p).mean(-1), rtol=1e-5)
    np.testing.assert_allclose(loss(y, p), np.abs(y - p).mean(), rtol=1e-5)


def test_losses_are_jittable_and_differentiable():
    g = jax.grad(lambda z: losses.CategoricalCrossentropy(from_logits=True)(ONE_HOT, z))(jnp.asarray(LOGITS))
    chex.assert_trees_all_close(g, (PROBS - ONE_HOT) / N, rtol=1e-4, atol=1e-6)
    v = jax.jit(lambda y, p: losses.get("sparse_categorical_crossentropy")(y, p))(LABELS, PROBS)
    np.testing.assert_allclose(v, skm.log_loss(LABELS, PROBS64, labels=list(range(K))), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Metrics: see tests/test_metrics.py
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# to_categorical
# ----------------------------------------------------------------------------------------------

def test_to_categorical():
    y = np.array([0, 2, 1, 2, 0])
    out = utils.to_categorical(y)
    np.testing.assert_array_equal(out, np.eye(3)[y])
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_array_equal(utils.to_categorical(y, 5), np.eye(5)[y])
    np.testing.assert_array_equal(utils.to_categorical(y[:, None], 3), np.eye(3)[y])
    np.testing.assert_array_equal(utils.to_categorical([1, 0]), np.eye(2)[[1, 0]])
    assert utils.to_categorical(y, 3, dtype="int32").dtype == np.int32
    grid = np.array([[0, 1], [2, 1]])
    np.testing.assert_array_equal(utils.to_categorical(grid, 3), np.eye(3)[grid])
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 2\)"):
        utils.to_categorical(y, 2)
    with pytest.raises(ValueError, match="Labels must lie"):
        utils.to_categorical(np.array([-1, 0]), 2)


# ----------------------------------------------------------------------------------------------
# Optimizers
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd", "SGD", "adam", "Adam", "adamw", "rmsprop", "adagrad", "nadam"])
def test_optimizer_names_resolve(name):
    opt = optimizers.get(name)
    assert isinstance(opt, optax.GradientTransformation)
    params = {"w": jnp.array([1.0, -2.0])}
    state = opt.init(params)
    updates, _ = opt.update({"w": jnp.array([0.5, -0.5])}, state, params)
    new = optax.apply_updates(params, updates)
    # a step against the gradient
    assert float(new["w"][0]) < 1.0 and float(new["w"][1]) > -2.0
    assert optimizers.learning_rate_of(state) is not None


def test_optimizer_keras_default_learning_rates():
    params = {"w": jnp.zeros(2)}
    np.testing.assert_allclose(optimizers.learning_rate_of(optimizers.get("sgd").init(params)), 0.01, rtol=1e-6)
    for name in ("adam", "adamw", "rmsprop", "adagrad", "nadam"):
        np.testing.assert_allclose(optimizers.learning_rate_of(optimizers.get(name).init(params)), 0.001, rtol=1e-6)


def test_optimizer_lookup_errors_and_passthrough():
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamax'.*Valid names: adagrad, adam, adamw, nadam, "
                                         r"rmsprop, sgd"):
        optimizers.get("adamax")
    with pytest.raises(TypeError, match=r"optimizer must be a name \(adagrad, adam, adamw, nadam, rmsprop, sgd\)"):
        optimizers.get(0.1)
    tx = optax.sgd(0.1)
    assert optimizers.get(tx) is tx
    assert optimizers.learning_rate_of(tx.init({"w": jnp.zeros(1)})) is None


def run_steps(opt, w0, grads):
    params = jnp.asarray(w0)
    state = opt.init(params)
    history = []
    for g in grads:
        updates, state = opt.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        history.append(np.asarray(params, np.float64))
    return history, state


W0 = np.array([1.0, -2.0, 0.5], np.float32)
G1 = np.array([0.3, -1.0, 2.0], np.float32)
G2 = np.array([-0.5, 0.4, 1.0], np.float32)


def test_plain_sgd():
    (w1, w2), _ = run_steps(optimizers.SGD(0.1), W0, [G1, G2])
    chex.assert_trees_all_close(w1, W0 - 0.1 * G1, rtol=1e-6)
    chex.assert_trees_all_close(w2, W0 - 0.1 * G1 - 0.1 * G2, rtol=1e-6)


def test_sgd_momentum_matches_keras_formula_over_two_steps():
    (w1, w2), state = run_steps(optimizers.SGD(0.1, momentum=0.9), W0, [G1, G2])
    v = np.zeros(3)
    w = W0.astype(np.float64)
    expected = []
    for g in (G1, G2):
        v = 0.9 * v + g
        w = w - 0.1 * v
        expected.append(w)
    chex.assert_trees_all_close(w1, expected[0], rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(w2, expected[1], rtol=1e-6, atol=1e-7)
    # without momentum the second step would be w1 - 0.1 * G2
    assert not np.allclose(w2, w1 - 0.1 * G2, atol=1e-3)
    np.testing.assert_allclose(optimizers.learning_rate_of(state), 0.1, rtol=1e-6)


def test_sgd_nesterov_matches_keras_formula():
    (w1, w2), _ = run_steps(optimizers.SGD(0.1, momentum=0.9, nesterov=True), W0, [G1, G2])
    v = np.zeros(3)
    w = W0.astype(np.float64)
    expected = []
    for g in (G1, G2):
        v = 0.9 * v + g
        w = w - 0.1 * (0.9 * v + g)
        expected.append(w)
    chex.assert_trees_all_close(w1, expected[0], rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(w2, expected[1], rtol=1e-6, atol=1e-7)


def test_adam_first_update_is_lr_times_sign_and_second_matches_formula():
    lr = 0.01
    (w1, w2), _ = run_steps(optimizers.Adam(lr), W0, [G1, G2])
    chex.assert_trees_all_close(w1 - W0, -lr * np.sign(G1), rtol=1e-5)
    # Keras' Adam by hand for step 2 (epsilon negligible at these gradient sizes)
    b1, b2 = 0.9, 0.999
    m = (1 - b1) * G1
    v = (1 - b2) * G1.astype(np.float64) ** 2
    m = b1 * m + (1 - b1) * G2
    v = b2 * v + (1 - b2) * G2.astype(np.float64) ** 2
    alpha = lr * math.sqrt(1 - b2 ** 2) / (1 - b1 ** 2)
    chex.assert_trees_all_close(w2, w1 - alpha * m / (np.sqrt(v) + 1e-7), rtol=1e-5, atol=1e-7)


def test_adamw_decoupled_weight_decay_first_step():
    lr, wd = 0.01, 0.1
    (w1,), _ = run_steps(optimizers.AdamW(lr, weight_decay=wd), W0, [G1])
    chex.assert_trees_all_close(w1, W0 - lr * np.sign(G1) - lr * wd * W0, rtol=1e-5)


def test_rmsprop_first_step_formula():
    lr, rho = 0.01, 0.9
    (w1,), _ = run_steps(optimizers.RMSprop(lr, rho=rho), W0, [G1])
    # Keras: v = rho * v + (1 - rho) g^2 (v0 = 0); w -= lr * g / sqrt(v + eps)
    expected = W0 - lr * G1 / np.sqrt((1 - rho) * G1.astype(np.float64) ** 2)
    chex.assert_trees_all_close(w1, expected, rtol=1e-4)


def test_learning_rate_is_injected_and_changeable():
    opt = optimizers.SGD(0.1)
    params = jnp.asarray(W0)
    state = opt.init(params)
    state.hyperparams["learning_rate"] = jnp.asarray(0.5)
    updates, state = opt.update(jnp.asarray(G1), state, params)
    chex.assert_trees_all_close(updates, -0.5 * G1, rtol=1e-6)
    np.testing.assert_allclose(optimizers.learning_rate_of(state), 0.5)
    sched = optax.linear_schedule(0.1, 0.0, 10)
    (w1, w2), _ = run_steps(optimizers.SGD(sched), W0, [G1, G1])
    chex.assert_trees_all_close(w2 - w1, -0.09 * G1, rtol=1e-5)
