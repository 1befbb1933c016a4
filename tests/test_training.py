"""The loop learns on real data, reports exact epoch values and compiles a fixed number of programs."""
import chex
import flax.linen as nn
import jax
import numpy as np
import pytest
from sklearn import datasets as skdatasets
from sklearn.preprocessing import StandardScaler

import dlkit
from dlkit import layers


def mlp(*hidden, out=10, out_activation=None, **kw):
    return dlkit.Sequential([*(layers.Dense(h, activation="relu", **kw) for h in hidden),
                             layers.Dense(out, activation=out_activation)])


def test_regression_mlp_learns_diabetes():
    x, y = skdatasets.load_diabetes(return_X_y=True)
    scaler = StandardScaler().fit(x[:350])  # statistics of the training part only
    x = scaler.transform(x).astype(np.float32)
    y = ((y - y[:350].mean()) / y[:350].std()).astype(np.float32)
    trainer = dlkit.Trainer(mlp(32, out=1), optimizer=dlkit.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    history = trainer.fit(x[:350], y[:350], batch_size=32, epochs=60, verbose=0)
    test_mse = trainer.evaluate(x[350:], y[350:], verbose=0)[0]
    baseline = float(np.mean((y[350:] - 0.0) ** 2))  # predicting the training mean
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    assert test_mse < 0.7 * baseline
    assert trainer.predict(x[:5]).shape == (5, 1)


def test_binary_classifier_learns_breast_cancer():
    x, y = skdatasets.load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(x))
    x, y = x[order], y[order].astype(np.float32)
    x = StandardScaler().fit(x[:450]).transform(x).astype(np.float32)
    trainer = dlkit.Trainer(mlp(16, out=1, out_activation="sigmoid"), optimizer="adam",
                            loss="binary_crossentropy", metrics=["accuracy"])
    trainer.fit(x[:450], y[:450], batch_size=32, epochs=30, verbose=0)
    loss, accuracy = trainer.evaluate(x[450:], y[450:], verbose=0)
    predicted = (trainer.predict(x[450:])[:, 0] > 0.5).astype(np.float32)
    assert accuracy > 0.93
    np.testing.assert_allclose(accuracy, np.mean(predicted == y[450:]), atol=1e-6)


def test_softmax_classifier_learns_digits(digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(mlp(64, out_activation="softmax"), optimizer="adam",
                            loss="sparse_categorical_crossentropy", metrics=["acc"])
    history = trainer.fit(x[:1400], y[:1400], batch_size=64, epochs=15, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "acc", "val_loss", "val_acc"}
    assert len(history.history["loss"]) == 15
    assert trainer.evaluate(x[1400:], y[1400:], verbose=0)[1] > 0.93


def test_epoch_values_are_exact_averages_with_a_short_last_batch(digits8x8):
    x, y = digits8x8[0][:1000], digits8x8[1][:1000]
    trainer = dlkit.Trainer(mlp(16), optimizer=dlkit.optimizers.SGD(0.0),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = trainer.fit(x, y, batch_size=96, epochs=1, verbose=0)  # 10 full batches + one of 40
    logits = trainer.predict(x)
    expected_loss = np.mean(jax.nn.logsumexp(logits, -1) - logits[np.arange(1000), y])
    np.testing.assert_allclose(history.history["loss"][0], expected_loss, rtol=1e-5)
    np.testing.assert_allclose(history.history["accuracy"][0], np.mean(logits.argmax(-1) == y), atol=1e-6)
    np.testing.assert_allclose(trainer.evaluate(x, y, batch_size=77, verbose=0)[0], expected_loss, rtol=1e-5)


def test_validation_split_takes_the_last_fraction_before_shuffling(digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(mlp(8), optimizer="sgd", loss=dlkit.losses.SparseCategoricalCrossentropy(True))
    history = trainer.fit(x[:500], y[:500], epochs=1, validation_split=0.2, verbose=0)
    np.testing.assert_allclose(history.history["val_loss"][0], trainer.evaluate(x[400:500], y[400:500], verbose=0),
                               rtol=1e-5)


@pytest.mark.parametrize("normalize, programs", [(False, 4), (True, 5)])
def test_a_fixed_number_of_programs_however_many_epochs(digits8x8, normalize, programs):
    x, y = digits8x8[0][:700], digits8x8[1][:700]
    model = dlkit.Sequential([layers.Dense(8, "relu"), *([layers.BatchNormalization()] if normalize else []),
                              layers.Dense(10)])
    trainer = dlkit.Trainer(model, optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(True),
                            metrics=["accuracy"], steps_per_execution=4)
    trainer.fit(x, y, batch_size=64, epochs=1, validation_split=0.1, verbose=0)
    # 630 samples: 9 full batches (programs of 4 and of 1 steps) and a short batch of 54, which
    # reuses the 1-step program, masked, unless batch statistics would see its padding (then it
    # gets its own program); plus one evaluation program and one that reads the metrics' results
    # (training and validation logs have the same metric states, so they share it).
    assert trainer.traces == programs
    trainer.fit(x, y, batch_size=64, epochs=5, validation_split=0.1, verbose=0)
    assert trainer.traces == programs


def test_padded_short_batch_trains_exactly_like_a_short_one(digits8x8):
    x, y = digits8x8[0][:100], digits8x8[1][:100]

    def weights(pad):
        trainer = dlkit.Trainer(mlp(8), optimizer=dlkit.optimizers.SGD(0.5), seed=3,
                                loss=dlkit.losses.SparseCategoricalCrossentropy(True), pad_last_batch=pad)
        trainer.fit(x, y, batch_size=64, epochs=2, verbose=0)  # 64 + 36 per epoch
        return trainer.get_weights()

    chex.assert_trees_all_close(weights(True), weights(False), rtol=1e-5, atol=1e-6)


def test_same_seed_same_weights_and_fit_continues(digits8x8):
    x, y = digits8x8

    def run(seed, epochs):
        model = dlkit.Sequential([layers.Dense(16, "relu"), layers.Dropout(0.3), layers.Dense(10)])
        trainer = dlkit.Trainer(model, optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(True),
                                seed=seed)
        for _ in range(epochs):
            trainer.fit(x[:300], y[:300], batch_size=32, epochs=1, verbose=0)
        return trainer.get_weights()

    reference = run(0, 2)
    chex.assert_trees_all_equal(run(0, 2), reference)
    assert not np.allclose(reference[0], run(1, 2)[0])
    assert not np.allclose(reference[0], run(0, 1)[0])  # the second fit continued training


def test_forward_propagation_by_hand():
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((2,)), layers.Dense(2, "relu"), layers.Dense(1, "sigmoid")]),
                            loss="binary_crossentropy")
    w1, b1 = np.array([[1.0, -1.0], [2.0, 0.5]], np.float32), np.array([0.5, -0.5], np.float32)
    w2, b2 = np.array([[1.5], [-2.0]], np.float32), np.array([0.1], np.float32)
    trainer.set_weights([w1, b1, w2, b2])
    x = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
    # by hand: h = relu(x W1 + b1); y = sigmoid(h W2 + b2)
    h = np.maximum(x @ w1 + b1, 0)
    expected = 1 / (1 + np.exp(-(h @ w2 + b2)))
    np.testing.assert_allclose(trainer.predict(x), expected, rtol=1e-6)
    np.testing.assert_allclose(h[0], [5.5, 0.0])  # [1*1 + 2*2 + 0.5, relu(-1 + 1 - 0.5)]


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)).astype(np.float32), rng.normal(size=(16, 1)).astype(np.float32)
    model = dlkit.Sequential([dlkit.Input((3,)), layers.Dense(4, "tanh"), layers.Dense(1)])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.SGD(1.0), loss="mse")
    before = trainer.get_weights()
    trainer.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)  # one full-batch step: w -= grad
    grads = [b - a for a, b in zip(trainer.get_weights(), before)]

    def loss_at(weights):
        trainer.set_weights(weights)
        return trainer.evaluate(x, y, batch_size=16, verbose=0)

    eps = 1e-2
    for i, j in [(0, (0, 0)), (0, (2, 3)), (1, (1,)), (2, (3, 0)), (3, (0,))]:
        plus = [w.copy() for w in before]
        minus = [w.copy() for w in before]
        plus[i][j] += eps
        minus[i][j] -= eps
        numeric = (loss_at(plus) - loss_at(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[i][j], numeric, rtol=2e-2, atol=1e-4)


def test_weight_penalty_is_added_to_the_loss():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 5)).astype(np.float32), rng.normal(size=(32, 1)).astype(np.float32)
    plain = dlkit.Trainer(dlkit.Sequential([dlkit.Input((5,)), layers.Dense(1)]), loss="mse")
    penalised = dlkit.Trainer(
        dlkit.Sequential([dlkit.Input((5,)), layers.Dense(1, kernel_regularizer=dlkit.regularizers.l2(0.1))]),
        loss="mse")
    kernel = penalised.get_weights()[0]
    np.testing.assert_allclose(penalised.evaluate(x, y, verbose=0),
                               plain.evaluate(x, y, verbose=0) + 0.1 * np.sum(kernel ** 2), rtol=1e-5)


class UserBlock(nn.Module):
    """A plain Linen module following dlkit's conventions (training flag, dropout stream)."""

    @nn.compact
    def __call__(self, x, training: bool = False):
        x = nn.relu(nn.Dense(32)(x))
        x = nn.Dropout(0.2, deterministic=not training)(x)
        return nn.Dense(10)(x)


class NoFlag(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(x)


@pytest.mark.parametrize("module", [UserBlock(), NoFlag()])
def test_user_written_linen_modules_train_through_the_loop(module, digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(module, optimizer=dlkit.optimizers.Adam(0.005),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(True), metrics=["accuracy"])
    trainer.fit(x[:1200], y[:1200], batch_size=32, epochs=8, verbose=0)
    assert trainer.evaluate(x[1200:], y[1200:], verbose=0)[1] > 0.9
    np.testing.assert_array_equal(trainer.predict(x[:50]), trainer.predict(x[:50]))  # inference is deterministic


def test_pure_train_step_is_callable_by_researchers(digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((64,)), layers.Dense(10)]), optimizer="sgd",
                            loss=dlkit.losses.SparseCategoricalCrossentropy(True))
    step = trainer.train_step
    state = trainer.state
    losses = []
    for _ in range(30):
        state, logs = step(state, (x[:64], y[:64]))
        losses.append(float(logs["loss"]))
    assert int(state.step) == 30
    assert losses[-1] < losses[0]
    chex.assert_trees_all_equal_structs(state.params, trainer.state.params)


def test_evaluate_return_forms(digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(mlp(8), loss=dlkit.losses.SparseCategoricalCrossentropy(True), metrics=["accuracy"])
    as_list = trainer.evaluate(x, y, verbose=0)
    as_dict = trainer.evaluate(x, y, verbose=0, return_dict=True)
    assert list(as_dict) == ["loss", "accuracy"]
    assert as_list == list(as_dict.values())
    only_loss = dlkit.Trainer(mlp(8), loss=dlkit.losses.SparseCategoricalCrossentropy(True)).evaluate(x, y, verbose=0)
    assert isinstance(only_loss, float)


def test_summary_before_any_data(capsys):
    model = dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Conv2D(8, 3), layers.BatchNormalization(),
                              layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(10)])
    dlkit.Trainer(model, loss="mse").summary()
    text = capsys.readouterr().out
    assert "conv2d (Conv2D)" in text and "(None, 26, 26, 8)" in text and "(None, 1352)" in text
    # conv 3*3*8 + 8 = 80; BN gamma, beta (16) + moving mean, variance (16); dense 1352*10 + 10 = 13,530
    assert "Total params: 13,642" in text and "Trainable params: 13,626" in text
    assert "Non-trainable params: 16" in text


def test_batch_hooks_see_running_means_and_cost_nothing_unused(digits8x8):
    x, y = digits8x8[0][:640], digits8x8[1][:640]
    seen = []
    hooks = dlkit.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append((batch, dict(logs))))
    trainer = dlkit.Trainer(mlp(8), optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(True),
                            metrics=["accuracy"], steps_per_execution=2)
    history = trainer.fit(x, y, batch_size=100, epochs=1, callbacks=[hooks], verbose=0)
    assert [b for b, _ in seen] == [1, 3, 5, 6]  # chunks of 2 steps, then the short batch of 40
    assert seen[-1][1] == {"loss": history.history["loss"][0], "accuracy": history.history["accuracy"][0]}
    assert not dlkit.callbacks.CallbackList([dlkit.callbacks.History()], trainer, {}).wants_batches


def test_save_and_load_weights_round_trip(tmp_path, digits8x8):
    x, y = digits8x8
    trained = dlkit.Trainer(mlp(16), optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(True))
    trained.fit(x[:500], y[:500], epochs=2, verbose=0)
    trained.save_weights(str(tmp_path / "w.weights"))
    fresh = dlkit.Trainer(mlp(16), optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(True), seed=5)
    fresh.build(x[:1])
    assert not np.allclose(fresh.predict(x[:20]), trained.predict(x[:20]))
    fresh.load_weights(str(tmp_path / "w.weights"))
    np.testing.assert_array_equal(fresh.predict(x[:20]), trained.predict(x[:20]))


def test_dropout_is_on_in_fit_and_off_in_predict(digits8x8):
    x, y = digits8x8[0][:256], digits8x8[1][:256]
    model = dlkit.Sequential([dlkit.Input((64,)), layers.Dropout(0.5), layers.Dense(10)])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.SGD(0.0),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(True))
    kernel, bias = trainer.get_weights()
    logits = x @ kernel + bias  # the model with dropout off, by hand
    np.testing.assert_allclose(trainer.predict(x), logits, rtol=1e-5, atol=1e-5)
    no_dropout = np.mean(jax.nn.logsumexp(logits, -1) - logits[np.arange(256), y])
    np.testing.assert_allclose(trainer.evaluate(x, y, verbose=0), no_dropout, rtol=1e-5)
    train_losses = [trainer.fit(x, y, batch_size=256, epochs=1, verbose=0).history["loss"][0] for _ in range(3)]
    assert len(set(train_losses)) == 3 and all(abs(t - no_dropout) > 1e-4 for t in train_losses)


def test_changing_the_learning_rate_changes_the_update_without_recompiling(digits8x8):
    x, y = digits8x8[0][:128], digits8x8[1][:128]
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((64,)), layers.Dense(10)]),
                            optimizer=dlkit.optimizers.SGD(0.1), loss=dlkit.losses.SparseCategoricalCrossentropy(True))
    trainer.fit(x, y, batch_size=128, epochs=1, shuffle=False, verbose=0)
    traces = trainer.traces
    before = trainer.get_weights()[0]
    trainer.fit(x, y, batch_size=128, epochs=1, shuffle=False, verbose=0)
    step_at_01 = trainer.get_weights()[0] - before
    trainer.optimizer.learning_rate = 0.0
    assert trainer.learning_rate == 0.0
    frozen = trainer.get_weights()[0]
    trainer.fit(x, y, batch_size=128, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(trainer.get_weights()[0], frozen)
    assert np.abs(step_at_01).max() > 0 and trainer.traces == traces
