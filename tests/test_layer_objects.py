"""Keras semantics of layer objects: trained weights travel with the object into a new model and
Trainer; ``layer.trainable = False``; ``get_layer``/``get_weights``/``set_weights``; a loss given to
a model's own step is used or refused; list outputs take their layers' names."""
import os

import chex
import numpy as np
import pytest
from sklearn.datasets import load_digits

import dlkit
from dlkit import layers
from dlkit.models.autoencoder import Autoencoder
from dlkit.models.vae import VAE

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported anywhere


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)  # real 8x8 digits, offline
    return (x / 16.0).astype(np.float32), y.astype(np.int32)


def _base():
    return dlkit.Sequential([layers.Dense(32, activation="relu", input_shape=(64,)),
                             layers.BatchNormalization(momentum=0.9), layers.Dense(16, activation="relu")],
                            name="base")


def _trained_base(digits, epochs=2):
    x, y = digits
    base = _base()
    trainer = dlkit.Trainer(dlkit.Sequential([base, layers.Dense(10, activation="softmax")]),
                            dlkit.optimizers.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    trainer.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return base, trainer


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def test_a_trained_base_reused_frozen_under_a_new_head_keeps_its_weights_bitwise(digits):
    x, y = digits
    base, first = _trained_base(digits, epochs=3)
    trained = base.get_weights()
    assert _same(trained, first.get_weights()[:len(trained)])  # Keras order: the base's weights come first
    assert not _same(trained, _base_weights_fresh())  # training moved them
    base.trainable = False
    head = layers.Dense(10, activation="softmax", name="head")
    second = dlkit.Trainer(dlkit.Sequential([base, head]), dlkit.optimizers.Adam(0.01),
                           "sparse_categorical_crossentropy", ["accuracy"])
    assert _same(second.get_weights()[:len(trained)], trained)  # started from the trained base
    history = second.fit(x, y, epochs=3, batch_size=64, verbose=0).history
    assert _same(base.get_weights(), trained)  # frozen: bitwise unchanged, moving statistics included
    assert history["loss"][-1] < history["loss"][0]  # the head learned on the base's features
    assert history["accuracy"][-1] > 0.85
    lines = []
    second.summary(print_fn=lines.append)
    n_base = sum(w.size for w in trained)
    assert f"Trainable params: {10 * 16 + 10:,}" in lines[0]
    assert f"Non-trainable params: {n_base:,}" in lines[0]


def _base_weights_fresh():
    return dlkit.Trainer(_base(), loss="mse").get_weights()


def test_an_autoencoders_encoder_predicts_with_the_trained_weights(digits):
    x, _ = digits
    encoder = dlkit.Sequential([dlkit.Input((64,)), layers.Dense(8, activation="relu")])
    decoder = dlkit.Sequential([layers.Dense(64, activation="sigmoid")])
    trainer = dlkit.Trainer(Autoencoder(encoder, decoder), "adam", input_shape=(64,))
    trainer.fit(x, x, epochs=2, batch_size=64, verbose=0)
    params = trainer.state.params["encoder"]
    expected = encoder.apply({"params": params}, x)
    codes = dlkit.Trainer(encoder).predict(x)  # a sub-model never compiled: no loss needed
    chex.assert_trees_all_equal(codes, np.asarray(expected))
    kernel = np.asarray(params["dense"]["kernel"])
    assert _same(encoder.get_weights(), [kernel, np.asarray(params["dense"]["bias"])])


def test_the_latest_trainer_to_update_a_layer_wins(digits):
    x, y = digits
    base, first = _trained_base(digits, epochs=1)
    second = dlkit.Trainer(dlkit.Sequential([base, layers.Dense(10, activation="softmax")]), "adam",
                           "sparse_categorical_crossentropy")
    second.fit(x, y, epochs=1, batch_size=64, verbose=0)  # fine-tunes the base (not frozen)
    tuned = base.get_weights()
    assert not _same(tuned, first.get_weights()[:len(tuned)])
    third = dlkit.Trainer(dlkit.Sequential([base, layers.Dense(3)]), loss="mse")
    assert _same(third.get_weights()[:len(tuned)], tuned)
    first.fit(x, y, epochs=1, batch_size=64, verbose=0)  # now the first trainer updated it last
    fourth = dlkit.Trainer(dlkit.Sequential([base, layers.Dense(3)]), loss="mse")
    assert _same(fourth.get_weights()[:len(tuned)], first.get_weights()[:len(tuned)])


def test_trainable_flags_take_effect_at_compile_and_freeze_batch_norm_in_inference_mode(digits):
    x, y = digits
    model = dlkit.Sequential([layers.Dense(16, input_shape=(64,)), layers.BatchNormalization(),
                              layers.Dense(10, activation="softmax")])
    trainer = dlkit.Trainer(model, "adam", "sparse_categorical_crossentropy")
    model.layers[1].trainable = False  # takes effect at compile, as in Keras
    model.layers[0].trainable = False
    trainer.compile()
    before = trainer.get_weights()
    trainer.fit(x, y, epochs=1, batch_size=64, verbose=0)
    after = trainer.get_weights()
    assert _same(after[:2], before[:2]) and _same(after[4:6], before[4:6])  # dense kernel/bias, BN moving stats
    assert not _same(after[6:], before[6:])  # the last Dense trains
    model.trainable = True  # sets every layer's flag, as Keras propagates it
    assert model.layers[1].trainable
    trainer.compile()
    trainer.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert not _same(trainer.get_weights()[:2], before[:2])


def test_get_layer_reads_and_sets_one_layers_weights_in_keras_order(digits):
    x, _ = digits
    model = dlkit.Sequential([layers.Dense(5, input_shape=(64,), name="hidden"), layers.Dense(2, name="out")])
    trainer = dlkit.Trainer(model, loss="mse")
    layer = trainer.get_layer("out")
    assert layer is model.get_layer("out") is model.layers[1]
    kernel, bias = layer.get_weights()
    chex.assert_shape([kernel, bias], [(5, 2), (2,)])
    layer.set_weights([np.zeros((5, 2)), np.full((2,), 3.0)])
    chex.assert_trees_all_close(trainer.predict(x[:4]), np.full((4, 2), 3.0, np.float32))
    with pytest.raises(ValueError, match="No layer named 'dense'.*hidden"):
        trainer.get_layer("dense")
    assert layers.Dense(3).get_weights() == []  # unbuilt, as in Keras


def test_a_layer_reused_on_inputs_of_another_shape_is_named(digits):
    base, _ = _trained_base(digits, epochs=1)
    with pytest.raises(ValueError, match=r"Sequential 'base' carries trained weights.*same shape"):
        dlkit.Trainer(dlkit.Sequential([base]), loss="mse", input_shape=(32,))


def test_the_loss_given_is_the_autoencoders_loss_and_what_a_step_cannot_use_is_refused(digits):
    x, _ = digits
    encoder = dlkit.Sequential([dlkit.Input((64,)), layers.Dense(8, activation="relu")])
    decoder = dlkit.Sequential([layers.Dense(64, activation="sigmoid")])
    trainer = dlkit.Trainer(Autoencoder(encoder, decoder), "adam", loss="binary_crossentropy", input_shape=(64,))
    trainer.fit(x, x, epochs=1, batch_size=64, verbose=0)
    p = np.clip(trainer.predict(x), 1e-7, 1 - 1e-7)
    bce = np.mean(-(x * np.log(p) + (1 - x) * np.log(1 - p)))
    np.testing.assert_allclose(trainer.evaluate(x, x, verbose=0), bce, rtol=1e-4)
    with pytest.raises(ValueError, match="metrics would be ignored"):
        dlkit.Trainer(Autoencoder(encoder, decoder), metrics=["mae"])
    vae = VAE(dlkit.Sequential([layers.Dense(4)]), dlkit.Sequential([layers.Dense(64)]), latent_dim=2)
    with pytest.raises(ValueError, match="VAE.train_step computes its own loss.*loss would be ignored"):
        dlkit.Trainer(vae, loss="mse")


def test_list_outputs_take_their_layers_names_as_in_keras(digits):
    x, y = digits
    inputs = dlkit.Input((64,))
    hidden = layers.Dense(16, activation="relu")(inputs)
    digit = layers.Dense(10, activation="softmax", name="digit")(hidden)
    odd = layers.Dense(1, activation="sigmoid", name="odd")(hidden)
    model = dlkit.Model(inputs, [digit, odd])
    assert model.output_names == ["digit", "odd"]
    targets = {"digit": y, "odd": (y % 2).astype(np.float32)}
    trainer = dlkit.Trainer(model, dlkit.optimizers.Adam(0.01), loss={"digit": "sparse_categorical_crossentropy",
                                                 "odd": "binary_crossentropy"},
                            metrics={"digit": ["accuracy"], "odd": ["accuracy"]}, loss_weights={"digit": 1.0,
                                                                                               "odd": 0.5})
    history = trainer.fit(x, targets, epochs=3, batch_size=64, verbose=0).history
    expected = {"loss", "digit_loss", "odd_loss", "digit_accuracy", "odd_accuracy"}
    assert set(history) == expected
    assert history["digit_accuracy"][-1] > 0.8
    keras = pytest.importorskip("keras")  # the same program in Keras logs the same names
    k_in = keras.Input((64,))
    k_hidden = keras.layers.Dense(16, activation="relu")(k_in)
    k_model = keras.Model(k_in, [keras.layers.Dense(10, activation="softmax", name="digit")(k_hidden),
                                 keras.layers.Dense(1, activation="sigmoid", name="odd")(k_hidden)])
    k_model.compile("adam", loss={"digit": "sparse_categorical_crossentropy", "odd": "binary_crossentropy"},
                    metrics={"digit": ["accuracy"], "odd": ["accuracy"]}, loss_weights={"digit": 1.0,
                                                                                       "odd": 0.5})
    k_history = k_model.fit(x, targets, epochs=1, batch_size=64, verbose=0).history
    assert set(k_history) == expected
