"""Bad input gets an error that names the problem and the fix, before any XLA trace."""
import numpy as np
import pytest

import dlkit
from dlkit import layers

X = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
Y = np.arange(40) % 3


def classifier(units=3, **kw):
    return dlkit.Trainer(dlkit.Sequential([layers.Dense(8, "relu"), layers.Dense(units)]),
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), **kw)


def test_one_hot_labels_given_to_a_sparse_loss():
    with pytest.raises(ValueError, match="one-hot.*categorical_crossentropy"):
        classifier().fit(X, dlkit.utils.to_categorical(Y, 3), verbose=0)


def test_integer_labels_given_to_a_categorical_loss():
    trainer = dlkit.Trainer(dlkit.Sequential([layers.Dense(3, "softmax")]), loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy.*to_categorical"):
        trainer.fit(X, Y, verbose=0)


def test_x_and_y_of_different_lengths():
    with pytest.raises(ValueError, match="same number of samples.*x: 40.*y: 39"):
        classifier().fit(X, Y[:39], verbose=0)


def test_too_few_output_units_for_the_labels():
    with pytest.raises(ValueError, match=r"outputs 2 class scores.*Dense\(3\)"):
        classifier(units=2).fit(X, Y, verbose=0)


def test_output_shape_incompatible_with_the_loss():
    trainer = dlkit.Trainer(dlkit.Sequential([layers.Dense(1)]), loss="mse")
    with pytest.raises(ValueError, match=r"do not match model outputs.*Dense\(3\)"):
        trainer.fit(X, np.zeros((40, 3), np.float32), verbose=0)


@pytest.mark.parametrize("kind, build, valid", [
    ("activation", lambda: dlkit.Trainer(dlkit.Sequential([dlkit.Input((6,)), layers.Dense(2, "rleu")]), loss="mse"),
     "relu"),
    ("initializer", lambda: dlkit.Trainer(
        dlkit.Sequential([dlkit.Input((6,)), layers.Dense(2, kernel_initializer="he_norm")]), loss="mse"), "he_normal"),
    ("loss", lambda: dlkit.Trainer(dlkit.Sequential([layers.Dense(2)]), loss="cross_entropy"),
     "sparse_categorical_crossentropy"),
    ("optimizer", lambda: dlkit.Trainer(dlkit.Sequential([layers.Dense(2)]), optimizer="adamm", loss="mse"), "adam"),
    ("metric", lambda: classifier(metrics=["acuracy"]).fit(X, Y, verbose=0), "accuracy"),
])
def test_unknown_names_list_the_valid_ones(kind, build, valid):
    with pytest.raises(ValueError, match=f"Unknown {kind}.*Valid names:.*{valid}"):
        build()


def test_empty_data():
    with pytest.raises(ValueError, match="empty"):
        classifier().fit(X[:0], Y[:0], verbose=0)


@pytest.mark.parametrize("batch_size", [0, -4])
def test_batch_size_must_be_positive(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        classifier().fit(X, Y, batch_size=batch_size, verbose=0)


def test_nan_or_inf_in_the_inputs():
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf.*sample 7"):
        classifier().fit(bad, Y, verbose=0)
    bad[7, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        classifier().predict(bad)


def test_summary_of_an_unbuilt_model_says_how_to_build_it():
    with pytest.raises(ValueError, match="input_shape=.*Input"):
        classifier().summary()
