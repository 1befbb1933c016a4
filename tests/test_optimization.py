"""Gradient clipping (Keras' optimizer arguments), class and sample weights."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import recall_score

import dlkit
from dlkit import layers

GRADS = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[12.0, -5.0]])}  # norms 5 and 13; global norm sqrt(194)


def one_update(optimizer):
    params = jax.tree.map(jnp.zeros_like, GRADS)
    updates, _ = optimizer.update(GRADS, optimizer.init(params), params)
    return updates


def test_clipvalue_clips_each_element():
    updates = one_update(dlkit.optimizers.SGD(1.0, clipvalue=4.5))
    np.testing.assert_allclose(updates["a"], [-3.0, -4.0])
    np.testing.assert_allclose(updates["b"], [[-4.5, 4.5]])


def test_clipnorm_rescales_each_weight_separately():
    updates = one_update(dlkit.optimizers.SGD(1.0, clipnorm=6.5))
    np.testing.assert_allclose(updates["a"], [-3.0, -4.0], rtol=1e-6)  # norm 5 <= 6.5: unchanged
    np.testing.assert_allclose(updates["b"], -np.array([[12.0, -5.0]]) * 6.5 / 13, rtol=1e-6)


def test_global_clipnorm_rescales_all_together():
    updates = one_update(dlkit.optimizers.SGD(1.0, global_clipnorm=1.0))
    scale = 1.0 / np.sqrt(194.0)
    np.testing.assert_allclose(updates["a"], -np.array([3.0, 4.0]) * scale, rtol=1e-6)
    np.testing.assert_allclose(updates["b"], -np.array([[12.0, -5.0]]) * scale, rtol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        dlkit.optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0)


def test_clipped_optimizers_still_expose_their_learning_rate():
    optimizer = dlkit.optimizers.Adam(0.01, clipnorm=1.0)
    state = optimizer.init({"w": jnp.ones(3)})
    assert float(dlkit.optimizers.learning_rate_of(state)) == pytest.approx(0.01)
    state = dlkit.optimizers.with_learning_rate(state, 0.5)
    assert float(dlkit.optimizers.learning_rate_of(state)) == 0.5
    assert dlkit.optimizers.learning_rate_of(optax.sgd(0.1).init({"w": jnp.ones(3)})) is None


def test_sample_weights_enter_the_loss_as_the_keras_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.normal(size=(50, 1)).astype(np.float32)
    w = rng.uniform(0, 3, size=50).astype(np.float32)
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((4,)), layers.Dense(1)]), loss="mse")
    residual = (trainer.predict(x) - y)[:, 0] ** 2
    expected = np.sum(w * residual) / 50  # Keras: weighted sum over the batch size
    np.testing.assert_allclose(trainer.evaluate(x, y, sample_weight=w, batch_size=50, verbose=0), expected, rtol=1e-5)
    # fit's loss uses the same weights: with a zero learning rate its epoch loss is the weighted loss
    zero = dlkit.Trainer(dlkit.Sequential([dlkit.Input((4,)), layers.Dense(1)]), loss="mse",
                         optimizer=dlkit.optimizers.SGD(0.0))
    history = zero.fit(x, y, sample_weight=w, batch_size=50, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)


def test_class_weight_raises_the_minority_recall(digits8x8):
    x, digits = digits8x8
    y = (digits == 3).astype(np.int32)  # ~10% positives
    keep = (y == 1) | (np.arange(len(y)) % 3 == 0)  # a third of the other digits: ~25% positives
    x, y = x[keep], y[keep]
    x_train, y_train, x_test, y_test = x[:500], y[:500], x[500:], y[500:]

    def minority_recall(class_weight):
        trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((64,)), layers.Dense(2)]),
                                optimizer=dlkit.optimizers.SGD(0.05),
                                loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))
        trainer.fit(x_train, y_train, batch_size=32, epochs=3, class_weight=class_weight, verbose=0)
        return recall_score(y_test, trainer.predict(x_test).argmax(-1))

    plain = minority_recall(None)
    weighted = minority_recall({0: 1.0, 1: float(np.sum(y_train == 0) / np.sum(y_train == 1))})
    assert weighted > plain + 0.1, (plain, weighted)


def test_class_weight_for_an_unknown_class_is_an_error(digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(dlkit.Sequential([layers.Dense(10)]), loss=dlkit.losses.SparseCategoricalCrossentropy(True))
    with pytest.raises(ValueError, match="class_weight has no weight for class"):
        trainer.fit(x, y, class_weight={0: 1.0, 1: 2.0}, verbose=0)


def test_use_ema_keeps_the_keras_moving_average_of_the_weights():
    """average_1 = w_1; average_t = m * average_{t-1} + (1 - m) * w_t (Keras' use_ema)."""
    optimizer = dlkit.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.8)
    params = {"w": jnp.array([1.5, -2.0])}
    state = optimizer.init(params)
    w, average = np.array([1.5, -2.0]), None
    for t in range(4):
        grads = {"w": jnp.array([1.0, 3.0]) * (t + 1)}
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        w = w - 0.1 * np.array([1.0, 3.0]) * (t + 1)
        average = w if average is None else 0.8 * average + 0.2 * w
    chex.assert_trees_all_close(params, {"w": w}, rtol=1e-6)  # the weights follow plain SGD
    chex.assert_trees_all_close(state.average, {"w": average}, rtol=1e-6)


def test_ema_overwrite_frequency_sets_the_weights_to_the_average():
    optimizer = dlkit.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=2)
    params = {"w": jnp.zeros(2)}
    state = optimizer.init(params)
    for _ in range(2):
        updates, state = optimizer.update({"w": jnp.ones(2)}, state, params)
        params = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(params, {"w": jnp.full(2, 0.5 * -0.1 + 0.5 * -0.2)}, rtol=1e-6)


def test_fit_ends_with_the_averaged_weights_and_frozen_ones_untouched(digits8x8):
    x, y = digits8x8[0][:512], digits8x8[1][:512]

    def trained(**ema):
        trainer = dlkit.Trainer(dlkit.Sequential([layers.Dense(16, activation="relu", name="base"),
                                                  layers.Dense(10, name="head")]),
                                optimizer=dlkit.optimizers.Adam(0.01, **ema),
                                loss="sparse_categorical_crossentropy", input_shape=(64,))
        trainer.build(x)
        frozen = jax.tree.map(np.asarray, trainer.state.params["base"])
        trainer.freeze("base")
        trainer.compile(optimizer=dlkit.optimizers.Adam(0.01, **ema), loss="sparse_categorical_crossentropy")
        trainer.fit(x, y, batch_size=64, epochs=3, verbose=0)
        return trainer, frozen

    raw, _ = trained()
    averaged, frozen = trained(use_ema=True, ema_momentum=0.9)
    average = dlkit.optimizers._find(averaged.state.opt_state, dlkit.optimizers.EmaState).average
    chex.assert_trees_all_close(averaged.state.params["head"], average["head"])
    chex.assert_trees_all_close(averaged.state.params["base"], frozen)
    gap = np.abs(np.asarray(averaged.state.params["head"]["kernel"]) - np.asarray(raw.state.params["head"]["kernel"]))
    assert gap.max() > 1e-3  # the average, not the last weights


def test_bad_ema_arguments_are_named():
    with pytest.raises(ValueError, match="ema_momentum"):
        dlkit.optimizers.Adam(use_ema=True, ema_momentum=1.5)
    with pytest.raises(ValueError, match="ema_overwrite_frequency"):
        dlkit.optimizers.Adam(use_ema=True, ema_overwrite_frequency=0)
    with pytest.raises(TypeError, match="use_ema"):
        dlkit.optimizers.Adam(use_emma=True)


def test_an_ema_optimizer_state_survives_a_checkpoint_and_keeps_its_learning_rate(tmp_path, digits8x8):
    x, y = digits8x8[0][:128], digits8x8[1][:128]

    def trainer():
        return dlkit.Trainer(dlkit.Sequential([layers.Dense(10)]), loss="sparse_categorical_crossentropy",
                             optimizer=dlkit.optimizers.Adam(0.01, use_ema=True))

    saved = trainer()
    saved.fit(x, y, epochs=2, verbose=0)
    saved.save_checkpoint(str(tmp_path / "ckpt"))
    loaded = trainer()
    loaded.load_checkpoint(str(tmp_path / "ckpt"))
    chex.assert_trees_all_equal(loaded.state.opt_state, saved.state.opt_state)
    assert float(dlkit.optimizers.learning_rate_of(loaded.state.opt_state)) == pytest.approx(0.01)
