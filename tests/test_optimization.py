"""Gradient clipping (Keras' optimizer arguments), class and sample weights."""
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
