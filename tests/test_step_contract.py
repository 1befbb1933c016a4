"""The custom pure step contract: ``(state, batch) -> (state, logs)`` run by the same Trainer loop."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dlkit
from dlkit import layers
from dlkit.training import Batch, apply, masked_mean, step_rng


def softmax_step(state, batch):
    """A hand-written classifier step: cross-entropy on integer labels, with accuracy."""
    def loss_fn(params):
        out = apply(state, batch.x, params)
        per_row = optax.softmax_cross_entropy_with_integer_labels(out.outputs, batch.y)
        return masked_mean(per_row, batch.mask) + out.added_loss, out

    (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = masked_mean(jnp.argmax(out.outputs, -1) == batch.y, batch.mask)
    return state.apply_gradients(grads), {"loss": loss, "accuracy": accuracy}


def softmax_test_step(state, batch):
    out = apply(state, batch.x, training=False)
    return {"loss": masked_mean(optax.softmax_cross_entropy_with_integer_labels(out.outputs, batch.y), batch.mask),
            "accuracy": masked_mean(jnp.argmax(out.outputs, -1) == batch.y, batch.mask)}


def mlp():
    return dlkit.Sequential([layers.Dense(32, activation="relu"), layers.Dropout(0.1), layers.Dense(10)])


def test_a_custom_step_learns_through_fit_with_validation(digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(mlp(), optimizer="adam", train_step=softmax_step, test_step=softmax_test_step)
    history = trainer.fit(x[:1400], y[:1400], epochs=15, batch_size=64, verbose=0,
                          validation_data=(x[1400:], y[1400:]))
    logs = history.history
    assert list(logs) == ["loss", "accuracy", "val_loss", "val_accuracy"]  # the step's order, then val_
    assert logs["loss"][-1] < 0.5 * logs["loss"][0]
    assert logs["val_accuracy"][-1] > 0.9
    chex.assert_trees_all_close(trainer.evaluate(x[1400:], y[1400:], return_dict=True)["accuracy"],
                                logs["val_accuracy"][-1], rtol=1e-6)
    assert int(trainer.state.step) == 15 * -(-1400 // 64)  # the loop counts one step per batch


def test_epoch_logs_are_exact_means_over_rows_with_an_uneven_last_batch():
    x = np.random.default_rng(0).normal(size=(103, 3)).astype(np.float32)

    def step(state, batch):
        return state, {"first_feature": masked_mean(batch.x[:, 0], batch.mask), "rows": jnp.sum(batch.mask)}

    trainer = dlkit.Trainer(dlkit.Sequential([layers.Dense(1)]), train_step=step)
    logs = trainer.fit(x, epochs=1, batch_size=10, verbose=0).history
    np.testing.assert_allclose(logs["first_feature"][0], x[:, 0].mean(), rtol=1e-5)
    # "rows" is each batch's size, weighted by that size: (10 batches of 10 * 10 + 3 * 3) / 103
    np.testing.assert_allclose(logs["rows"][0], (10 * 100 + 9) / 103, rtol=1e-6)


def test_hand_written_mse_step_equals_the_built_in_supervised_step():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 2))).astype(np.float32)

    def mse_step(state, batch):
        def loss_fn(params):
            out = apply(state, batch.x, params)
            return masked_mean(jnp.mean((batch.y - out.outputs) ** 2, -1), batch.mask)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads), {"loss": loss}

    def model():  # a new model object each: a trained layer object would carry its weights into the next
        return dlkit.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2)])

    built_in = dlkit.Trainer(model(), optimizer="sgd", loss="mse", seed=3)
    custom = dlkit.Trainer(model(), optimizer="sgd", train_step=mse_step, seed=3)
    a = built_in.fit(x, y, epochs=3, batch_size=32, verbose=0, shuffle=False).history["loss"]
    b = custom.fit(x, y, epochs=3, batch_size=32, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-5)
    chex.assert_trees_all_close(built_in.state.params, custom.state.params, rtol=1e-5, atol=1e-6)


def test_step_rng_differs_per_step_and_is_a_function_of_the_state():
    state = dlkit.TrainState.create({"params": {}}, optax.sgd(0.1), jax.random.key(0))
    first, again = step_rng(state), step_rng(state)
    later = step_rng(state.replace(step=state.step + 1))
    named = step_rng(state, "noise")
    key_bytes = [tuple(np.asarray(jax.random.key_data(k)).ravel()) for k in (first, again, later, named)]
    assert key_bytes[0] == key_bytes[1]
    assert len({key_bytes[0], key_bytes[2], key_bytes[3]}) == 3


class TwoTowers(dlkit.layers.Layer):
    def setup(self):
        self.left = layers.Dense(3)
        self.right = layers.Dense(3)

    def call(self, x, training=False):
        return self.left(x) + self.right(x)


def two_group_state():
    model = TwoTowers()
    variables = model.init(jax.random.key(0), jnp.ones((2, 4)))
    tx = dlkit.optimizers.get({"left": "adam", "right": dlkit.optimizers.SGD(0.5, momentum=0.9)})
    return dlkit.TrainState.create(variables, tx, jax.random.key(1), apply_fn=model.apply)


def test_apply_gradients_for_one_group_leaves_the_other_bitwise_unchanged():
    state = two_group_state()
    grads = jax.tree.map(jnp.ones_like, state.params["left"])
    new = state.apply_gradients(grads, part="left")
    chex.assert_trees_all_equal(new.params["right"], state.params["right"])
    chex.assert_trees_all_equal(new.opt_state["right"], state.opt_state["right"])
    assert not np.allclose(new.params["left"]["kernel"], state.params["left"]["kernel"])
    with pytest.raises(ValueError, match="part= one of the optimizer's parameter groups"):
        state.apply_gradients(grads, part="middle")


def test_an_optimizer_dict_must_name_every_parameter_group():
    model = TwoTowers()
    variables = model.init(jax.random.key(0), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="top-level parameter groups are \\['left', 'right'\\]"):
        dlkit.TrainState.create(variables, dlkit.optimizers.get({"left": "adam"}), jax.random.key(1))


def test_a_step_defined_on_the_model_class_is_used_as_keras_train_step(digits8x8):
    class Linear(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(10)(x)

        def train_step(self, state, batch):
            state, logs = softmax_step(state, batch)
            return state, {**logs, "from_the_model": jnp.ones(())}

    x, y = digits8x8
    history = dlkit.Trainer(Linear(), optimizer="adam").fit(x, y, epochs=2, batch_size=128, verbose=0).history
    assert history["from_the_model"] == [1.0, 1.0]
    assert history["loss"][1] < history["loss"][0]


def test_contract_violations_get_errors_that_name_the_fix(digits8x8):
    x, y = digits8x8
    with pytest.raises(TypeError, match="train_step must return \\(state, logs\\) with logs a dict of scalars"):
        dlkit.Trainer(mlp(), train_step=lambda state, batch: (state, batch.x)).fit(x, y, verbose=0)
    trainer = dlkit.Trainer(mlp(), optimizer="adam", train_step=softmax_step)
    with pytest.raises(ValueError, match="has no test_step"):
        trainer.fit(x, y, epochs=1, verbose=0, validation_split=0.2)
    with pytest.raises(ValueError, match="has no test_step"):
        trainer.evaluate(x, y)
    with pytest.raises(ValueError, match="A test_step needs its train_step"):
        dlkit.Trainer(mlp(), test_step=softmax_test_step)
    with pytest.raises(ValueError, match="needs one optimizer per parameter group"):
        two_group_state().replace(tx=optax.sgd(0.1)).apply_gradients({}, part="left")


def test_the_jitted_pure_steps_follow_the_contract(digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(mlp(), optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer.build(x)
    batch = Batch(x[:32], y[:32], np.ones(32, np.float32), np.ones(32, np.float32))
    state, logs = trainer.train_step(trainer.state, batch)
    assert int(state.step) == 1 and set(logs) == {"loss", "accuracy"}
    chex.assert_shape(list(logs.values()), ())
    assert set(trainer.test_step(state, batch)) == {"loss", "accuracy"}


def test_a_train_step_that_returns_only_the_state_is_told_the_contract(digits8x8):
    x, y = digits8x8
    with pytest.raises(TypeError, match="must return \\(state, logs\\)"):
        dlkit.Trainer(mlp(), train_step=lambda state, batch: state).fit(x, y, verbose=0)


def test_freezing_applies_inside_each_optimizer_group(digits8x8):
    x, y = digits8x8

    def both_groups(state, batch):
        def loss_fn(params):
            out = apply(state, batch.x, params)
            return masked_mean(optax.softmax_cross_entropy_with_integer_labels(out.outputs, batch.y), batch.mask)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        for part in ("left", "right"):
            state = state.apply_gradients(grads[part], part=part)
        return state, {"loss": loss}

    class Towers(dlkit.layers.Layer):
        def setup(self):
            self.left = dlkit.Sequential([layers.Dense(8, activation="relu"), layers.Dense(10)])
            self.right = layers.Dense(10)

        def call(self, x, training=False):
            return self.left(x) + self.right(x)

    trainer = dlkit.Trainer(Towers(), optimizer={"left": "adam", "right": "adam"}, train_step=both_groups)
    trainer.build(x)
    trainer.freeze("left/dense")
    before = jax.tree.map(np.asarray, trainer.state.params)  # fit donates the state
    trainer.fit(x, y, epochs=1, batch_size=256, verbose=0)
    after = trainer.state.params
    chex.assert_trees_all_equal(after["left"]["dense"], before["left"]["dense"])
    assert not np.array_equal(after["left"]["dense_1"]["kernel"], before["left"]["dense_1"]["kernel"])
    assert not np.array_equal(after["right"]["kernel"], before["right"]["kernel"])
