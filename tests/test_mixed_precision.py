"""Keras' mixed precision: policies, per-layer dtypes, float32 parameters with bfloat16 activations,
float32 losses, dynamic loss scaling under mixed_float16, and Keras 3's own dtypes to compare with."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # only read if Keras is imported, before its first import

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit import mixed_precision as mp


@pytest.fixture(autouse=True)
def float32_global_policy():
    """Each test starts, and leaves, with the global policy float32."""
    mp.set_global_policy("float32")
    yield
    mp.set_global_policy("float32")


def floating_leaves(tree) -> list:
    return [a for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)]


def test_policies_and_their_dtypes():
    expected = {"float32": ("float32", "float32"), "bfloat16": ("bfloat16", "bfloat16"),
                "float16": ("float16", "float16"), "mixed_bfloat16": ("bfloat16", "float32"),
                "mixed_float16": ("float16", "float32")}
    for name, (compute, variable) in expected.items():
        policy = mp.Policy(name)
        assert (policy.name, policy.compute_dtype, policy.variable_dtype) == (name, compute, variable)
    assert mp.DTypePolicy().name == "float32" and dlkit.DTypePolicy is mp.DTypePolicy
    assert mp.get(jnp.bfloat16) == mp.DTypePolicy("bfloat16")
    with pytest.raises(ValueError, match="Unknown dtype policy 'mixed_int8'.*mixed_bfloat16"):
        mp.DTypePolicy("mixed_int8")
    with pytest.raises(ValueError, match="Unknown dtype policy"):
        layers.Dense(3, dtype="float8")
    mp.set_global_policy("mixed_bfloat16")
    assert mp.global_policy() == mp.dtype_policy() == mp.DTypePolicy("mixed_bfloat16")


def _captured(layer, *args):
    variables = layer.init(jax.random.key(0), *args)
    out, state = layer.apply(variables, *args, capture_intermediates=True, mutable=["intermediates"])
    return variables, out, state["intermediates"]


LAYERS = {
    "Dense": lambda: (layers.Dense(4, activation="softmax"), (jnp.ones((2, 3)),)),
    "Conv2D": lambda: (layers.Conv2D(4, 3, activation="relu"), (jnp.ones((2, 6, 6, 1), jnp.uint8),)),
    "LSTM": lambda: (layers.LSTM(5, return_sequences=True), (jnp.ones((2, 4, 3)),)),
    "MultiHeadAttention": lambda: (layers.MultiHeadAttention(2, 4), (jnp.ones((2, 5, 8)), jnp.ones((2, 3, 8)))),
    "TransformerEncoder": lambda: (layers.TransformerEncoder(8, 16, 2), (jnp.ones((2, 5, 8)),)),
    "Embedding": lambda: (layers.Embedding(10, 4), (jnp.array([[1, 2, 9]]),)),
    "BatchNormalization": lambda: (layers.BatchNormalization(), (jnp.ones((4, 3)) * jnp.arange(4.0)[:, None],)),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_mixed_bfloat16_keeps_params_float32_and_computes_in_bfloat16(kind):
    mp.set_global_policy("mixed_bfloat16")
    layer, args = LAYERS[kind]()
    mp.set_global_policy("float32")  # the layer keeps the policy it was made under (Keras' rule)
    variables, out, intermediates = _captured(layer, *args)
    chex.assert_type(floating_leaves(variables), jnp.float32)  # params and batch statistics
    outputs = floating_leaves(intermediates)
    assert len(outputs) >= 1 + (kind in ("MultiHeadAttention", "TransformerEncoder"))  # sub-layers' too
    chex.assert_type(outputs, jnp.bfloat16)
    chex.assert_type(out, jnp.bfloat16)
    assert layer.dtype_policy.name == "mixed_bfloat16" and layer.compute_dtype == "bfloat16"
    assert layer.variable_dtype == "float32"


def test_batch_normalization_statistics_are_float32_and_close_to_float32_run():
    x = jax.random.normal(jax.random.key(1), (64, 3)) * 3.0 + 100.0  # a bfloat16 variance would be coarse
    ref = layers.BatchNormalization()
    mixed = layers.BatchNormalization(dtype="mixed_bfloat16")
    variables = ref.init(jax.random.key(0), x)
    rounded = x.astype(jnp.bfloat16).astype(jnp.float32)  # what the layer's bfloat16 input holds
    y32, s32 = ref.apply(variables, rounded, training=True, mutable=["batch_stats"])
    y16, s16 = mixed.apply(variables, x, training=True, mutable=["batch_stats"])
    chex.assert_type([s16["batch_stats"]["moving_mean"], s16["batch_stats"]["moving_variance"]], jnp.float32)
    np.testing.assert_allclose(s16["batch_stats"]["moving_variance"], s32["batch_stats"]["moving_variance"],
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, rtol=1e-2, atol=1e-2)  # the output's rounding


def test_precedence_own_dtype_then_trainer_policy_then_global_policy():
    mp.set_global_policy("mixed_bfloat16")
    inherited, own = layers.Dense(3), layers.Dense(2, dtype="float32")
    model = dlkit.Sequential([dlkit.Input((4,)), inherited, own])
    mp.set_global_policy("float32")
    assert inherited.dtype == mp.InheritedPolicy("mixed_bfloat16") and own.dtype == mp.DTypePolicy("float32")
    assert inherited.clone().dtype == inherited.dtype  # Flax's clones keep the policy

    # The global policy at creation: the first Dense computes in bfloat16, the second (its own float32) not.
    trainer = dlkit.Trainer(model, loss="mse")
    assert trainer.predict(np.ones((2, 4), np.float32)).dtype == np.float32
    x = jnp.ones((1, 4))
    _, state = model.apply(trainer.state.variables, x, capture_intermediates=True, mutable=["intermediates"])
    assert state["intermediates"]["dense"]["__call__"][0].dtype == jnp.bfloat16
    assert state["intermediates"]["dense_1"]["__call__"][0].dtype == jnp.float32
    # A Trainer's dtype_policy replaces the inherited policy only.
    with mp.policy_scope("mixed_float16"):
        _, state = model.apply(trainer.state.variables, x, capture_intermediates=True, mutable=["intermediates"])
    assert state["intermediates"]["dense"]["__call__"][0].dtype == jnp.float16
    assert state["intermediates"]["dense_1"]["__call__"][0].dtype == jnp.float32
    last = dlkit.Sequential([dlkit.Input((4,)), layers.Dense(3)])  # made under float32
    assert dlkit.Trainer(last, loss="mse", dtype_policy="mixed_bfloat16").predict(np.ones((2, 4))).dtype == \
        jnp.bfloat16
    assert dlkit.Trainer(last, loss="mse").predict(np.ones((2, 4))).dtype == np.float32
    with pytest.raises(ValueError, match="Unknown dtype policy 'half'"):
        dlkit.Trainer(last, loss="mse", dtype_policy="half")


def small_cnn() -> dlkit.Sequential:
    return dlkit.Sequential([
        dlkit.Input((28, 28, 1)),
        layers.Conv2D(8, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])


def test_mixed_bfloat16_cnn_learns_digits_with_a_float32_loss():
    (x, y), _ = dlkit.datasets.split_digits()
    x, y = x[:1024], y[:1024]
    trainer = dlkit.Trainer(small_cnn(), optimizer="adam", loss="sparse_categorical_crossentropy",
                            metrics=["accuracy"], dtype_policy="mixed_bfloat16")
    history = trainer.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    chex.assert_type(jax.tree.leaves(trainer.state.params), jnp.float32)
    _, logs = trainer.train_step(trainer.state, (x[:32], y[:32]))
    chex.assert_type([logs["loss"], logs["accuracy"]], jnp.float32)
    assert trainer.predict(x[:8]).dtype == jnp.bfloat16  # Keras: a softmax output in the compute dtype
    assert history["loss"][0] < 2.0 and history["loss"][1] < 0.8 * history["loss"][0], history
    assert history["accuracy"][1] > 0.75, history


def test_losses_and_metrics_cast_half_precision_outputs_to_float32():
    y_true = np.array([0, 1])
    y_pred = jnp.array([[0.9, 0.1], [0.2, 0.8]], jnp.bfloat16)
    loss = dlkit.losses.SparseCategoricalCrossentropy()(y_true, y_pred)
    chex.assert_type(loss, jnp.float32)
    p = np.asarray(y_pred, np.float32)
    p = p / p.sum(-1, keepdims=True)  # Keras' cross-entropy normalises the probabilities
    np.testing.assert_allclose(loss, -np.mean(np.log(p[[0, 1], [0, 1]])), rtol=1e-6)
    metric = dlkit.metrics.get("mean_squared_error")
    state = metric.measure(np.eye(2, dtype=np.float32), y_pred).state
    chex.assert_type(jax.tree.leaves(state), jnp.float32)
    np.testing.assert_allclose(metric.result(state), np.mean((np.asarray(y_pred, np.float64) - np.eye(2)) ** 2),
                               rtol=1e-6)


def test_same_dtypes_as_keras_under_mixed_bfloat16():
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).random((2, 6, 6, 1), np.float32)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        kept = [keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.BatchNormalization(),
                keras.layers.Flatten(), keras.layers.Dense(8), keras.layers.LayerNormalization(),
                keras.layers.Dense(3, activation="softmax"), keras.layers.Activation("softmax")]
        inputs = keras.Input((6, 6, 1))
        outputs, h = [], inputs
        for layer in kept:
            h = layer(h)
            outputs.append(h)
        probe = keras.Model(inputs, outputs)
        keras_outputs = [np.asarray(o).dtype.name for o in probe(x)]
        keras_weights = sorted({w.dtype for w in probe.weights})
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mp.set_global_policy("mixed_bfloat16")
    ours = [layers.Conv2D(4, 3, activation="relu"), layers.BatchNormalization(), layers.Flatten(), layers.Dense(8),
            layers.LayerNormalization(), layers.Dense(3, activation="softmax"), layers.Activation("softmax")]
    model = dlkit.Sequential([dlkit.Input((6, 6, 1)), *ours])
    mp.set_global_policy("float32")
    variables = model.init(jax.random.key(0), x)
    _, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    names = [name for name, _ in model.named_layers()]
    our_outputs = [state["intermediates"][name]["__call__"][0].dtype.name for name in names]
    assert our_outputs == keras_outputs == ["bfloat16"] * len(ours)
    assert sorted({a.dtype.name for a in jax.tree.leaves(variables)}) == keras_weights == ["float32"]


def _f16_trainer():
    model = dlkit.Sequential([dlkit.Input((8,)), layers.Dense(1, kernel_initializer="ones")])
    trainer = dlkit.Trainer(model, optimizer="sgd", loss="mse", dtype_policy="mixed_float16")
    trainer.build(np.ones((1, 8), np.float32))
    return trainer


def test_mixed_float16_skips_an_overflowing_step_and_halves_the_scale():
    trainer = _f16_trainer()
    state = trainer.state
    assert float(state.loss_scale.scale) == 2.0 ** 15 and int(state.loss_scale.fin_steps) == 0
    x, y = np.full((4, 8), 100.0, np.float32), np.zeros((4, 1), np.float32)  # 2**15 * d(loss)/dy > 65504
    after, logs = trainer.train_step(state, (x, y))
    chex.assert_trees_all_equal(after.params, state.params)
    assert float(after.loss_scale.scale) == 2.0 ** 14 and int(after.loss_scale.fin_steps) == 0
    assert np.isfinite(float(logs["loss"])) and float(logs["loss"]) == pytest.approx(800.0 ** 2, rel=1e-2)
    # A finite step updates the parameters, by the unscaled gradient, and counts towards growth.
    small = np.full((4, 8), 0.01, np.float32)
    moved, _ = trainer.train_step(after, (small, y))
    expected = 1.0 - 0.01 * 2 * 0.08 * 0.01  # sgd(0.01): kernel - lr * 2 * y_pred * x
    np.testing.assert_allclose(moved.params["dense"]["kernel"], expected, rtol=1e-3)
    assert int(moved.loss_scale.fin_steps) == 1 and float(moved.loss_scale.scale) == 2.0 ** 14


def test_loss_scale_grows_after_dynamic_growth_steps_and_is_checkpointed(tmp_path):
    trainer = _f16_trainer()
    state = trainer.state.replace(loss_scale=mp.initial_loss_scale(dynamic_growth_steps=3))
    batch = (np.full((4, 8), 0.01, np.float32), np.zeros((4, 1), np.float32))
    scales = []
    for _ in range(4):
        state, _ = trainer.train_step(state, batch)
        scales.append(float(state.loss_scale.scale))
    assert scales == [2.0 ** 15, 2.0 ** 15, 2.0 ** 16, 2.0 ** 16]  # Keras: doubled at the 3rd finite step
    trainer.state = trainer.state.replace(loss_scale=state.loss_scale)
    trainer.save_checkpoint(str(tmp_path))
    restored = _f16_trainer()
    restored.load_checkpoint(str(tmp_path))
    assert float(restored.state.loss_scale.scale) == 2.0 ** 16 and int(restored.state.loss_scale.fin_steps) == 1


def test_no_loss_scaling_under_bfloat16():
    model = dlkit.Sequential([dlkit.Input((8,)), layers.Dense(1)])
    trainer = dlkit.Trainer(model, loss="mse", dtype_policy="mixed_bfloat16")
    assert trainer.state.loss_scale is None
    mp.set_global_policy("mixed_float16")  # a model made under it gets loss scaling without dtype_policy=
    assert dlkit.Trainer(dlkit.Sequential([dlkit.Input((8,)), layers.Dense(1)]), loss="mse").state.loss_scale \
        is not None


# ---------------------------------------------------------------------- slow: the examples under bfloat16
@pytest.mark.slow
def test_example_cnn_under_mixed_bfloat16_reaches_97_percent(load_example):
    mp.set_global_policy("mixed_bfloat16")  # the example builds its model under it, as in Keras' guide
    assert load_example("mnist_cnn").main(epochs=3) >= 0.97


@pytest.mark.slow
def test_lstm_and_transformer_examples_learn_under_mixed_bfloat16(load_example):
    mp.set_global_policy("mixed_bfloat16")
    lstm = load_example("lstm_mnist_rows")
    (x, y), _ = dlkit.datasets.split_digits()
    trainer = dlkit.Trainer(lstm.build_model(), optimizer=dlkit.optimizers.Adam(1e-3),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    losses = trainer.fit(x[:4000].reshape(-1, 28, 28), y[:4000], batch_size=128, epochs=3, verbose=0).history["loss"]
    chex.assert_type(jax.tree.leaves(trainer.state.params), jnp.float32)
    assert losses[2] < 0.7 * losses[0], losses
    seq = load_example("seq2seq_transformer")
    source, target = seq.make_data(4000)
    trainer = dlkit.Trainer(seq.build_model(), optimizer=dlkit.optimizers.Adam(3e-3),
                            loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    losses = trainer.fit([source, seq.shift_right(target, seq.START)], target, batch_size=64, epochs=3,
                         verbose=0).history["loss"]
    chex.assert_type(jax.tree.leaves(trainer.state.params), jnp.float32)
    assert trainer.predict([source[:4], source[:4]]).dtype == jnp.bfloat16
    assert losses[2] < 0.7 * losses[0], losses
