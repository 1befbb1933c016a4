"""No silent wrong result: each bad input, argument or configuration gets a short error that names the
argument, what was received and what is expected; inputs a careful library accepts are computed correctly."""
import warnings

import chex
import numpy as np
import pandas as pd
import pytest

import dlkit
from dlkit import layers

X = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
Y = np.arange(40) % 3
LOGITS = dlkit.losses.SparseCategoricalCrossentropy(from_logits=True)


def classifier(**kwargs):
    return dlkit.Trainer(dlkit.Sequential([layers.Dense(8, "relu"), layers.Dense(3)]), loss=LOGITS, **kwargs)


def fitted():
    trainer = classifier()
    trainer.fit(X, Y, verbose=0)
    return trainer


def conv(layer):
    return dlkit.Trainer(dlkit.Sequential([layer, layers.Flatten(), layers.Dense(1)]), loss="mse")


IMAGES = np.zeros((2, 8, 8, 1), np.float32)

ERRORS = [
    ("sample_weight shorter than the data", lambda: classifier().fit(X, Y, sample_weight=np.ones(39), verbose=0),
     ValueError, "sample_weight has 39 weights for 40 samples"),
    ("sample_weight longer than the data", lambda: classifier().fit(X, Y, sample_weight=np.ones(41), verbose=0),
     ValueError, "sample_weight has 41 weights for 40 samples"),
    ("sample_weight of another shape", lambda: classifier().fit(X, Y, sample_weight=np.ones((40, 2)), verbose=0),
     ValueError, r"one weight per sample, shape \(40,\); got shape \(40, 2\)"),
    ("evaluate's sample_weight", lambda: fitted().evaluate(X, Y, sample_weight=np.ones(3)),
     ValueError, "evaluate sample_weight has 3 weights for 40 samples"),
    ("fit without y", lambda: classifier().fit(X, verbose=0), ValueError, "fit: the loss compares.*no y was given"),
    ("evaluate without y", lambda: classifier().evaluate(X), ValueError, "evaluate: .*no y was given"),
    ("validation_data without y", lambda: classifier().fit(X, Y, validation_data=(X,), verbose=0),
     ValueError, "validation_data: .*no y was given"),
    ("float labels to a sparse loss", lambda: classifier().fit(X, Y + 0.5, verbose=0),
     ValueError, "integer class ids .*got .*0.5"),
    ("binary targets 0..9", lambda: dlkit.Trainer(dlkit.Sequential([layers.Dense(1, "sigmoid")]),
                                                   loss="binary_crossentropy").fit(X, np.arange(40) % 10, verbose=0),
     ValueError, r"binary_crossentropy must lie in \[0, 1\].*from 0 to 9"),
    ("string labels", lambda: classifier().fit(X, np.array(["cat", "dog"] * 20), verbose=0),
     TypeError, "y holds strings .*'cat'.*np.unique"),
    ("Embedding ids beyond input_dim in fit", lambda: dlkit.Trainer(
        dlkit.Sequential([layers.Embedding(5, 4), layers.Flatten(), layers.Dense(3)]), loss=LOGITS).fit(
        np.arange(40).reshape(20, 2) % 9, Y[:20], verbose=0),
     ValueError, r"layer embedding: got ids outside \[0, 5\) \(input_dim=5\).*\(16 times\)"),
    ("Embedding ids beyond input_dim in predict", lambda: dlkit.Trainer(
        dlkit.Sequential([layers.Embedding(5, 4), layers.Flatten(), layers.Dense(3)]), loss=LOGITS).predict(
        np.full((3, 2), 7)),
     ValueError, r"predict: layer embedding: got ids outside \[0, 5\)"),
    ("Dense(0)", lambda: layers.Dense(0), ValueError, r"Dense\(units=...\) must be positive, got 0"),
    ("Conv2D(0)", lambda: layers.Conv2D(0, 3), ValueError, r"Conv2D\(filters=...\) must be positive, got 0"),
    ("a negative kernel size", lambda: layers.Conv2D(4, -3), ValueError, r"kernel_size=...\) must be positive"),
    ("a pool size of 0", lambda: layers.MaxPooling2D(0), ValueError, r"pool_size=...\) must be positive"),
    ("LSTM(0)", lambda: layers.LSTM(0), ValueError, r"LSTM\(units=...\) must be positive"),
    ("Embedding(0, 4)", lambda: layers.Embedding(0, 4), ValueError, r"input_dim=...\) must be positive"),
    ("Dropout(1.5)", lambda: layers.Dropout(1.5), ValueError, r"Dropout\(rate=...\) must be a number in \[0, 1\)"),
    ("a kernel larger than its input", lambda: conv(layers.Conv2D(2, 9)).predict(IMAGES),
     ValueError, "Conv2D: its window 9x9 is larger than its input 8x8"),
    ("a pool larger than its input", lambda: conv(layers.MaxPooling2D(9)).predict(IMAGES),
     ValueError, "MaxPooling2D: its window 9x9 is larger than its input 8x8"),
    ("predict with another feature width", lambda: fitted().predict(np.zeros((3, 7), np.float32)),
     ValueError, r"predict x: samples of shape \(7,\) .*built on samples of shape \(6,\)"),
    ("validation data with another feature width", lambda: classifier().fit(
        X, Y, validation_data=(np.zeros((3, 7), np.float32), Y[:3]), verbose=0),
     ValueError, r"validation_data: samples of shape \(7,\) .*\(6,\)"),
    ("predict((x, y))", lambda: fitted().predict((X, Y)), ValueError, "takes one array, but got tuple of 2"),
    ("a string in a Sequential", lambda: dlkit.Sequential([layers.Dense(3), "relu"]),
     TypeError, r"entry 1 is str 'relu', not a layer.*Activation\('relu'\)"),
    ("a layer class in a Sequential", lambda: dlkit.Sequential([layers.Dense]),
     TypeError, r"Write Dense\(...\)"),
    ("a callback class", lambda: classifier().fit(X, Y, callbacks=[dlkit.callbacks.EarlyStopping], verbose=0),
     TypeError, r"got the class EarlyStopping; write EarlyStopping\(\)"),
    ("something that is no callback", lambda: classifier().fit(X, Y, callbacks=[print], verbose=0),
     TypeError, "must be dlkit.callbacks.Callback instances"),
    ("seed -1", lambda: classifier(seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*32\), got -1"),
    ("seed 2**40", lambda: classifier(seed=2**40), ValueError, "got 1099511627776"),
    ("seed 1.5", lambda: classifier(seed=1.5), TypeError, "seed must be an int"),
    ("epochs=2.5", lambda: classifier().fit(X, Y, epochs=2.5, verbose=0), TypeError, "epochs must be an integer"),
    ("epochs=-1", lambda: classifier().fit(X, Y, epochs=-1, verbose=0), ValueError, "epochs must be an integer >= 0"),
    ("steps_per_execution=0", lambda: classifier(steps_per_execution=0), ValueError,
     "steps_per_execution must be an integer >= 1, got 0"),
    ("ragged rows", lambda: classifier().fit([[1.0, 2.0], [3.0]], [0, 1], verbose=0),
     ValueError, "x could not be turned into an array: its samples have different shapes"),
]


@pytest.mark.parametrize("case, run, kind, message", ERRORS, ids=[case[0] for case in ERRORS])
def test_bad_input_gets_a_short_error_naming_it(case, run, kind, message):
    with pytest.raises(kind, match=message) as raised:
        run()
    text = str(raised.value)
    assert len(text) < 2000 and "flax.readthedocs" not in text and "strict=False" not in text


def test_a_sample_weight_column_is_one_weight_per_sample():
    column = classifier(seed=1).fit(X, Y, sample_weight=np.ones((40, 1)), shuffle=False, verbose=0).history
    flat = classifier(seed=1).fit(X, Y, sample_weight=np.ones(40), shuffle=False, verbose=0).history
    assert column == flat  # was: the loss times the batch size


def test_uint8_images_are_cast_as_keras_casts_them():
    images = np.random.default_rng(0).integers(0, 255, size=(16, 8, 8, 1)).astype(np.uint8)
    model = dlkit.Sequential([layers.Conv2D(2, 3), layers.AveragePooling2D(2), layers.Flatten(), layers.Dense(3)])
    trainer = dlkit.Trainer(model, loss=LOGITS)
    trainer.build(images)
    chex.assert_trees_all_close(trainer.predict(images), trainer.predict(images.astype(np.float32)), rtol=1e-6)
    assert np.isfinite(trainer.fit(images, Y[:16], verbose=0).history["loss"][0])


def test_a_single_callback_a_metric_string_and_a_random_seed_are_accepted():
    seen = []
    callback = dlkit.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    trainer = classifier(metrics="accuracy", seed=None)
    history = trainer.fit(X, Y, epochs=2, callbacks=callback, verbose=0).history
    assert seen == [0, 1] and set(history) == {"loss", "accuracy"}
    assert 0 <= trainer.seed < 2**32


def test_a_list_of_batches_pandas_and_lists_of_rows_train_as_the_arrays_do():
    def weights(*data, **kwargs):
        trainer = classifier(seed=2)
        trainer.fit(*data, shuffle=False, verbose=0, **kwargs)
        return trainer.get_weights()

    reference = weights(X, Y, batch_size=20)
    chex.assert_trees_all_close(weights([(X[:20], Y[:20]), (X[20:], Y[20:])]), reference, rtol=1e-6)
    chex.assert_trees_all_close(weights(pd.DataFrame(X), pd.Series(Y), batch_size=20), reference, rtol=1e-6)
    chex.assert_trees_all_close(weights(X.tolist(), Y.tolist(), batch_size=20), reference, rtol=1e-6)


def test_a_loss_that_does_not_fit_the_outputs_is_named_once_the_epoch_ends():
    softmax = dlkit.Trainer(dlkit.Sequential([layers.Dense(3, "softmax")]), loss=LOGITS)
    with pytest.warns(UserWarning, match="from_logits=True, but every output row was a probability vector"):
        softmax.fit(X, Y, verbose=0)
    logits = dlkit.Trainer(dlkit.Sequential([layers.Dense(3)]), loss="sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match=r"expects probabilities \(from_logits=False\).*outside \[0, 1\]"):
        logits.fit(X, Y, verbose=0)
    right = dlkit.Trainer(dlkit.Sequential([layers.Dense(3, "softmax")]), loss="sparse_categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model and loss that fit give no word
        right.fit(X, Y, verbose=0)
        classifier().fit(X, Y, verbose=0)
