"""Keras' implicit masks through ``Sequential`` and the functional ``Model`` (against Keras 3 on the same
weights), and ``Normalization.adapt`` updating the layer in place with non-trainable statistics."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before any Keras import; leaves a prior choice alone

import chex
import jax
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.training import weights

KEY = jax.random.key(0)
V, D, U, T = 12, 4, 3, 6
TOKENS = np.array([[3, 5, 2, 0, 0, 0], [4, 1, 7, 9, 0, 0], [8, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]], np.int32)


def _keras():
    return pytest.importorskip("keras")


def drawn(model, x, seed=0):
    """``model.init``'s variables with every weight redrawn N(0, 0.5) (so masks show), and that list in
    Keras' order (``get_weights``)."""
    variables = {k: v for k, v in model.init(KEY, x).items() if k not in ("losses", "diagnostics")}
    order = weights.keras_order(variables)
    rng = np.random.default_rng(seed)
    flat = [rng.normal(0.0, 0.5, np.shape(w)).astype(np.float32) for w in weights.flatten(variables, order)]
    return weights.unflatten(variables, order, flat), flat


def embedding_lstm(functional: bool, mask_zero: bool = True, length: int = T):
    """Embedding -> LSTM -> Dense, as a functional Model or a Sequential (the same layer names)."""
    stack = [layers.Embedding(V, D, mask_zero=mask_zero), layers.LSTM(U), layers.Dense(2)]
    if not functional:
        return dlkit.Sequential([dlkit.Input((length,), dtype="int32"), *stack])
    tokens = x = dlkit.Input((length,), dtype="int32")
    for layer in stack:
        x = layer(x)
    return dlkit.Model(tokens, x)


# ----------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------

def test_functional_masks_as_sequential_and_padding_has_no_effect():
    functional, sequential = embedding_lstm(True), embedding_lstm(False)
    variables, _ = drawn(functional, TOKENS)
    out = functional.apply(variables, TOKENS)
    chex.assert_trees_all_close(out, sequential.apply(variables, TOKENS), rtol=1e-6, atol=1e-6)
    unmasked = embedding_lstm(True, mask_zero=False).apply(variables, TOKENS)
    assert not np.allclose(unmasked[:3], out[:3], atol=1e-3)  # the mask matters where there is padding
    chex.assert_trees_all_close(unmasked[3], out[3], rtol=1e-6, atol=1e-6)  # and nowhere else
    # The padded positions' content (the padding row of the table) does not reach the output ...
    table = np.array(variables["params"]["embedding"]["embeddings"])
    table[0] = 100.0
    changed = {**variables, "params": {**variables["params"], "embedding": {"embeddings": table}}}
    chex.assert_trees_all_close(functional.apply(changed, TOKENS), out, rtol=1e-6, atol=1e-6)
    # ... and each sequence gives what its unpadded prefix gives.
    for row, length in ((0, 3), (1, 4)):
        short = embedding_lstm(True, length=length).apply(variables, TOKENS[row:row + 1, :length])
        chex.assert_trees_all_close(short[0], out[row], rtol=1e-5, atol=1e-6)


def test_symbolic_tensors_carry_masks_as_keras_propagates_them():
    tokens = dlkit.Input((T,), dtype="int32")
    x = layers.Embedding(V, D, mask_zero=True)(tokens)
    assert x.mask_shape == (None, T)
    assert layers.Dropout(0.1)(layers.Dense(5)(x)).mask_shape == (None, T)  # kept by position-wise layers
    assert layers.LSTM(U, return_sequences=True)(x).mask_shape == (None, T)
    assert layers.LSTM(U)(x).mask_shape is None and layers.GlobalAveragePooling1D()(x).mask_shape is None
    assert layers.TransformerEncoder(D, 8, 2)(x).mask_shape == (None, T)
    y = layers.Embedding(V, D, mask_zero=True)(tokens)
    assert layers.add([x, y]).mask_shape == (None, T)  # Keras: the OR of the masks
    assert layers.add([x, layers.Embedding(V, D)(tokens)]).mask_shape is None  # one unmasked input: none
    assert layers.Concatenate(axis=1)([x, y]).mask_shape == (None, 2 * T)
    with pytest.warns(UserWarning, match="does not support masking"):  # as Keras warns
        assert layers.Flatten()(x).mask_shape is None
    with pytest.raises(ValueError, match="Maximum of masked tensors is not supported"):
        layers.maximum([x, y])


def test_transformer_encoder_passes_the_mask_on_in_sequential_and_functional():
    """Keras' TransformerEncoder supports masking: the mask reaches GlobalAveragePooling1D (a masked mean)."""
    encoder, pool = layers.TransformerEncoder(D, 8, 2, dropout=0.0), layers.GlobalAveragePooling1D()
    emb = layers.Embedding(V, D, mask_zero=True)
    sequential = dlkit.Sequential([dlkit.Input((T,), dtype="int32"), emb, encoder, pool])
    tokens = dlkit.Input((T,), dtype="int32")
    functional = dlkit.Model(tokens, pool(encoder(emb(tokens))))
    variables, _ = drawn(sequential, TOKENS)
    out = sequential.apply(variables, TOKENS)
    chex.assert_trees_all_close(functional.apply(variables, TOKENS), out, rtol=1e-6, atol=1e-6)
    mask = TOKENS != 0
    x = emb.apply({"params": variables["params"]["embedding"]}, TOKENS)
    y = encoder.apply({"params": variables["params"]["transformer_encoder"]}, x, mask=mask)
    expected = (np.asarray(y) * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    chex.assert_trees_all_close(out, expected, rtol=1e-5, atol=1e-6)


def test_embedding_lstm_masks_match_keras_in_both_apis():
    keras = _keras()
    variables, flat = drawn(embedding_lstm(True), TOKENS)
    stack = [keras.layers.Embedding(V, D, mask_zero=True), keras.layers.LSTM(U), keras.layers.Dense(2)]
    kmodel = keras.Sequential([keras.Input((T,), dtype="int32"), *stack])
    kmodel.set_weights(flat)
    expected = np.asarray(kmodel(TOKENS))
    for functional in (True, False):
        got = embedding_lstm(functional).apply(variables, TOKENS)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_merged_masks_bidirectional_gru_and_masked_mean_match_keras():
    keras = _keras()
    other = np.where(TOKENS > 0, (TOKENS * 5) % (V - 1) + 1, 0)
    other[0, 3] = 4  # a step real in one input only: Add keeps it (Keras ORs the masks)

    def build(lib, Input, Model):  # noqa: N803 - the libraries' own class names
        a, b = Input((T,), dtype="int32"), Input((T,), dtype="int32")
        x = lib.add([lib.Embedding(V, D, mask_zero=True)(a), lib.Embedding(V, D, mask_zero=True)(b)])
        x = lib.Bidirectional(lib.GRU(U, return_sequences=True))(x)
        x = lib.Dense(5, activation="tanh")(x)
        return Model([a, b], lib.Dense(1)(lib.GlobalAveragePooling1D()(x)))

    model = build(layers, dlkit.Input, dlkit.Model)
    variables, flat = drawn(model, [TOKENS, other])
    kmodel = build(keras.layers, keras.Input, keras.Model)
    kmodel.set_weights(flat)
    np.testing.assert_allclose(model.apply(variables, [TOKENS, other]), np.asarray(kmodel([TOKENS, other])),
                               rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Normalization.adapt
# ----------------------------------------------------------------------------------------------

X = (np.random.default_rng(3).standard_normal((64, 3)) * [1.0, 3.0, 0.5] + [5.0, -2.0, 0.0]).astype(np.float32)


def test_adapt_updates_the_layer_in_place_and_the_model_standardises():
    norm = layers.Normalization()
    assert norm.adapt(X) is norm  # in place; returning it keeps `norm = norm.adapt(x)` working
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((3,)), norm]), loss="mse")
    expected = (X - X.astype(np.float64).mean(0)) / np.sqrt(X.astype(np.float64).var(0))
    np.testing.assert_allclose(trainer.predict(X, verbose=0), expected, rtol=1e-5, atol=1e-5)
    images = np.random.default_rng(4).standard_normal((8, 4, 4, 2)).astype(np.float32) * [1.0, 4.0]
    per_channel = layers.Normalization(axis=-1)
    per_channel.adapt([images[:5], images[5:]])  # an iterable of batches, as Keras takes
    variables = per_channel.init(KEY, images)
    assert variables["batch_stats"]["mean"].shape == (2,)
    np.testing.assert_allclose(per_channel.apply(variables, images),
                               (images - images.mean((0, 1, 2))) / images.std((0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm(X), expected, rtol=1e-5, atol=1e-5)  # called on arrays outside a model
    constant = layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0])
    assert constant.init(KEY, X) == {}  # given statistics are constants, as Keras' mean= and variance=
    with pytest.raises(ValueError, match="constants"):
        constant.adapt(X)


def test_adapted_statistics_are_non_trainable_and_training_leaves_them_bitwise():
    norm = layers.Normalization().adapt(X)
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((3,)), norm, layers.Dense(1)]), loss="mse",
                            optimizer="adam")
    lines = []
    trainer.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Non-trainable params: 7" in text and "Trainable params: 4" in text  # mean 3, variance 3, count 1
    before = jax.tree.map(np.array, trainer.state.model_state)
    trainer.fit(X, X[:, :1], batch_size=16, epochs=2, verbose=0)
    chex.assert_trees_all_equal(jax.tree.map(np.array, trainer.state.model_state), before)
    assert [w.shape for w in norm.get_weights()] == [(3,), (3,), ()]  # Keras' order: mean, variance, count


def test_adapt_after_a_trainer_is_built_reaches_it_and_later_trainers():
    norm = layers.Normalization().adapt(X)
    model = dlkit.Sequential([dlkit.Input((3,)), norm])
    first = dlkit.Trainer(model, loss="mse")
    first.build(X)
    shifted = X * 2.0 + 1.0
    norm.adapt(shifted)  # Keras assigns the layer's weights: the built trainer sees the new statistics
    expected = (X - shifted.mean(0)) / shifted.std(0)
    np.testing.assert_allclose(first.predict(X, verbose=0), expected, rtol=1e-4, atol=1e-4)
    later = dlkit.Trainer(dlkit.Sequential([dlkit.Input((3,)), norm]), loss="mse")
    np.testing.assert_allclose(later.predict(X, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_adapted_normalization_matches_keras():
    keras = _keras()
    knorm = keras.layers.Normalization()
    knorm.adapt(X)
    kmodel = keras.Sequential([keras.Input((3,)), knorm])
    norm = layers.Normalization().adapt(X)
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((3,)), norm]), loss="mse")
    trainer.build(X)
    assert sum(int(np.prod(w.shape)) for w in knorm.non_trainable_weights) == 7 == sum(
        int(np.prod(np.shape(w))) for w in norm.get_weights())
    np.testing.assert_allclose(trainer.predict(X, verbose=0), np.asarray(kmodel(X)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.get_weights()[0], knorm.get_weights()[0], rtol=1e-6)
