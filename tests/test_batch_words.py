"""Keras' batch-level words: ``train_on_batch``/``test_on_batch``/``predict_on_batch``, and
``steps_per_epoch``/``validation_steps`` over streams of batches."""
import chex
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

import dlkit
from dlkit import layers
from dlkit.training.step import masked_mean


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    return x, y.astype(np.float32)[:, None]


def _trainer(seed=0):
    model = dlkit.Sequential([layers.Dense(8, activation="relu", input_shape=(30,)),
                              layers.Dense(1, activation="sigmoid")])
    return dlkit.Trainer(model, "adam", "binary_crossentropy", ["accuracy"], seed=seed)


def test_train_on_batch_is_one_fit_step_and_the_others_match_evaluate_and_predict(cancer):
    x, y = cancer
    xb, yb = x[:64], y[:64]
    stepped, fitted = _trainer(), _trainer()
    loss, accuracy = stepped.train_on_batch(xb, yb)
    history = fitted.fit(xb, yb, batch_size=64, epochs=1, shuffle=False, verbose=0).history
    chex.assert_trees_all_equal(stepped.state.params, fitted.state.params)  # the same step, bitwise
    np.testing.assert_allclose([loss, accuracy], [history["loss"][0], history["accuracy"][0]], rtol=1e-6)
    assert stepped.epoch == 0  # a step, not an epoch
    logs = stepped.test_on_batch(x[64:128], y[64:128], return_dict=True)
    chex.assert_trees_all_close(logs, stepped.evaluate(x[64:128], y[64:128], return_dict=True, verbose=0))
    chex.assert_trees_all_close(stepped.predict_on_batch(x[:5]), stepped.predict(x[:5]))
    losses = [stepped.train_on_batch(xb, yb)[0] for _ in range(20)]
    assert losses[-1] < losses[0]  # repeated steps learn


def _marked_batches(n_batches=5, rows=4):
    """Batches whose inputs hold their own index, so a step can log which batch it saw."""
    return [(np.full((rows, 1), i, np.float32), np.zeros((rows, 1), np.float32)) for i in range(n_batches)]


def _index_step(state, batch):
    return state.replace(step=state.step + 1), {"index": masked_mean(batch.x[:, 0], batch.mask)}


def test_steps_per_epoch_takes_the_next_batches_and_validation_steps_the_first(cancer):
    trainer = dlkit.Trainer(dlkit.Sequential([layers.Dense(1)]), train_step=_index_step,
                            test_step=lambda state, batch: {"index": masked_mean(batch.x[:, 0], batch.mask)})
    history = trainer.fit(_marked_batches(), epochs=3, steps_per_epoch=3, verbose=0,
                          validation_data=_marked_batches(), validation_steps=2).history
    # epoch 1: batches 0, 1, 2; epoch 2: 3, 4, then a new pass: 0; epoch 3: 1, 2, 3
    np.testing.assert_allclose(history["index"], [1.0, 7 / 3, 2.0], rtol=1e-6)
    np.testing.assert_allclose(history["val_index"], [0.5, 0.5, 0.5], rtol=1e-6)  # batches 0, 1 each time

    one_shot = (batch for batch in _marked_batches())
    fresh = dlkit.Trainer(dlkit.Sequential([layers.Dense(1)]), train_step=_index_step)
    with pytest.warns(UserWarning, match="steps_per_epoch=4, but the input ran out of data after 1 batches"):
        fresh.fit(one_shot, epochs=2, steps_per_epoch=4, verbose=0)
    x, y = cancer
    with pytest.raises(ValueError, match="steps_per_epoch=3 counts batches of a stream"):
        _trainer().fit(x, y, steps_per_epoch=3, verbose=0)
    with pytest.raises(ValueError, match="validation_steps=2 counts batches"):
        _trainer().fit(x, y, validation_data=(x, y), validation_steps=2, verbose=0)
