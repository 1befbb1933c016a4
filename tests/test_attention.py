"""Attention layers: MultiHeadAttention against per-head numpy and Keras 3, masks, dropout,
LayerNormalization, PositionalEmbedding, and Transformer blocks that train and stay causal."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported anywhere

import jax
import numpy as np
import pytest

import dlkit
from dlkit import layers

RNG = np.random.default_rng(0)


def _normal(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def _keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("these comparisons need Keras on its JAX backend")
    return keras


def _init_random(layer, *args, seed=0, **kwargs):
    """Init, then replace every param by a random normal (so zero biases do not hide mistakes)."""
    variables = layer.init(jax.random.key(seed), *args, **kwargs)
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return jax.tree.unflatten(tree, [0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _numpy_mha(p, query, value, key, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V per head, then the output projection summed over heads."""
    p = jax.tree.map(np.asarray, p)
    heads, key_dim = p["query"]["bias"].shape
    out = np.zeros((query.shape[0], query.shape[1], p["attention_output"]["bias"].shape[0]))
    scores = np.zeros((query.shape[0], heads, query.shape[1], value.shape[1]))
    for b in range(query.shape[0]):
        for h in range(heads):
            q = query[b] @ p["query"]["kernel"][:, h] + p["query"]["bias"][h]
            k = key[b] @ p["key"]["kernel"][:, h] + p["key"]["bias"][h]
            v = value[b] @ p["value"]["kernel"][:, h] + p["value"]["bias"][h]
            logits = q @ k.T / np.sqrt(key_dim)
            if mask is not None:
                logits = np.where(mask[b], logits, -1e9)
            a = _softmax(logits)
            scores[b, h] = a
            out[b] += (a @ v) @ p["attention_output"]["kernel"][h]
    return out + p["attention_output"]["bias"], scores


# ---------------------------------------------------------------- MultiHeadAttention
def test_mha_equals_per_head_numpy_attention_with_output_projection():
    query, value, key = _normal(2, 5, 8), _normal(2, 7, 6), _normal(2, 7, 3)
    mask = RNG.random((2, 5, 7)) < 0.7
    mask[..., 0] = True
    layer = layers.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5)
    variables = _init_random(layer, query, value, key=key)
    shapes = jax.tree.map(lambda a: a.shape, variables["params"])
    assert shapes == {"query": {"kernel": (8, 3, 4), "bias": (3, 4)}, "key": {"kernel": (3, 3, 4), "bias": (3, 4)},
                      "value": {"kernel": (6, 3, 5), "bias": (3, 5)},
                      "attention_output": {"kernel": (3, 5, 8), "bias": (8,)}}
    for m in (None, mask):
        out, scores = layer.apply(variables, query, value, key=key, attention_mask=m, return_attention_scores=True)
        expected_out, expected_scores = _numpy_mha(variables["params"], query, value, key, m)
        assert out.shape == (2, 5, 8) and scores.shape == (2, 3, 5, 7)
        np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-5)
    # Keras' keyword call, and key defaulting to value.
    variables = _init_random(layer, query, value)
    out = layer.apply(variables, query=query, value=value)
    np.testing.assert_allclose(out, _numpy_mha(variables["params"], query, value, value)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("use_bias,value_dim", [(True, 4), (False, None)])
def test_mha_equals_keras_after_copying_weights(use_bias, value_dim):
    keras = _keras()
    query, value, key = _normal(2, 5, 8), _normal(2, 6, 6), _normal(2, 6, 4)
    mask = RNG.random((2, 5, 6)) < 0.6
    mask[..., 0] = True
    ours = layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=value_dim, use_bias=use_bias, output_shape=7)
    variables = _init_random(ours, query, value, key=key)
    theirs = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=value_dim, use_bias=use_bias,
                                             output_shape=7)
    theirs(query, value, key=key, return_attention_scores=True)  # build (the scores path works for any value_dim)
    named = {w.path.split("/", 1)[1]: w for w in theirs.weights}
    p = variables["params"]
    assert set(named) == {f"{sub}/{w}" for sub in p for w in p[sub]}  # same names, same nesting
    for path, w in named.items():
        sub, name = path.split("/")
        assert tuple(w.shape) == p[sub][name].shape
        w.assign(np.asarray(p[sub][name]))
    for kwargs in ({}, {"attention_mask": mask}, {"use_causal_mask": True},
                   {"attention_mask": mask, "use_causal_mask": True}):
        out, scores = ours.apply(variables, query, value, key=key, return_attention_scores=True, **kwargs)
        k_out, k_scores = theirs(query, value, key=key, return_attention_scores=True, **kwargs)
        np.testing.assert_allclose(out, np.asarray(k_out), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scores, np.asarray(k_scores), rtol=1e-5, atol=1e-6)
        if value_dim is None:  # Keras' fused path (no scores asked) fails when value_dim != key_dim
            plain = ours.apply(variables, query, value, key=key, **kwargs)
            np.testing.assert_allclose(plain, np.asarray(theirs(query, value, key=key, **kwargs)),
                                       rtol=1e-4, atol=1e-4)


def test_padding_mask_gives_masked_keys_zero_attention():
    x = _normal(3, 6, 8)
    lengths = np.array([6, 4, 2])
    padding = np.arange(6)[None, :] < lengths[:, None]  # (B, S): True = real token
    layer = layers.MultiHeadAttention(num_heads=2, key_dim=4)
    variables = _init_random(layer, x, x)
    out, scores = layer.apply(variables, x, x, attention_mask=padding[:, None, :], return_attention_scores=True)
    scores = np.asarray(scores)
    for b, n in enumerate(lengths):
        assert np.all(scores[b, :, :, n:] == 0.0)
        assert np.all(scores[b, :, :, :n] > 0.0)
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)
    # What sits in the padded steps cannot change the output.
    noisy = x.copy()
    noisy[1, 4:] = _normal(2, 8) * 10
    np.testing.assert_allclose(layer.apply(variables, noisy, noisy, attention_mask=padding[:, None, :])[1, :4],
                               out[1, :4], rtol=1e-5, atol=1e-5)


def test_causal_mask_hides_the_future():
    x = _normal(2, 6, 8)
    layer = layers.MultiHeadAttention(num_heads=2, key_dim=4)
    variables = _init_random(layer, x, x)
    out, scores = layer.apply(variables, x, x, use_causal_mask=True, return_attention_scores=True)
    scores = np.asarray(scores)
    above = np.triu(np.ones((6, 6), bool), k=1)
    assert np.all(scores[..., above] == 0.0) and np.all(scores[..., ~above] > 0.0)
    changed = x.copy()
    changed[:, 4] += 5.0  # change token 4 only
    out2 = layer.apply(variables, changed, changed, use_causal_mask=True)
    np.testing.assert_allclose(out2[:, :4], out[:, :4], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out2[:, 4:], out[:, 4:])
    # Without the mask the earlier outputs do change: the test above can fail.
    assert not np.allclose(layer.apply(variables, changed, changed)[:, :4], layer.apply(variables, x, x)[:, :4])


def test_attention_dropout_acts_in_training_only():
    x = _normal(2, 5, 8)
    layer = layers.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5)
    variables = _init_random(layer, x, x)
    run = lambda seed, training: layer.apply(variables, x, x, training=training, return_attention_scores=True,
                                             rngs={"dropout": jax.random.key(seed)})
    (a, scores_a), (b, _) = run(1, True), run(2, True)
    assert not np.allclose(a, b)
    (c, scores_c), (d, _) = run(1, False), run(2, False)
    np.testing.assert_array_equal(c, d)
    np.testing.assert_allclose(c, layers.MultiHeadAttention(2, 4).apply(variables, x, x), rtol=1e-6)
    np.testing.assert_allclose(scores_a, scores_c, rtol=1e-6)  # returned scores are before dropout, as Keras


def test_mha_in_the_functional_api():
    tokens = dlkit.Input((5, 8))
    outputs = layers.MultiHeadAttention(num_heads=2, key_dim=4)(tokens, tokens, use_causal_mask=True)
    assert outputs.shape == (None, 5, 8)
    trainer = dlkit.Trainer(dlkit.Model(tokens, outputs), loss="mse")
    assert trainer.predict(_normal(3, 5, 8)).shape == (3, 5, 8)


# ---------------------------------------------------------------- LayerNormalization
def test_layer_normalization_equals_numpy_and_keras():
    x = _normal(4, 3, 6) * 3 + 1
    layer = layers.LayerNormalization()
    variables = _init_random(layer, x)
    gamma, beta = (np.asarray(variables["params"][k]) for k in ("gamma", "beta"))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
    plain = layers.LayerNormalization(center=False, scale=False, epsilon=1e-5)
    assert plain.init(jax.random.key(0), x) == {}
    np.testing.assert_allclose(plain.apply({}, x), (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)

    keras = _keras()
    for axis in (-1, (1, 2)):
        ours = layers.LayerNormalization(axis=axis)
        variables = _init_random(ours, x)
        theirs = keras.layers.LayerNormalization(axis=axis)
        theirs.build(x.shape)
        theirs.gamma.assign(np.asarray(variables["params"]["gamma"]))
        theirs.beta.assign(np.asarray(variables["params"]["beta"]))
        np.testing.assert_allclose(ours.apply(variables, x), np.asarray(theirs(x)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- PositionalEmbedding
def test_positional_embedding_sums_token_and_position_tables():
    tokens = RNG.integers(0, 8, size=(3, 6)).astype(np.int32)
    layer = layers.PositionalEmbedding(sequence_length=10, input_dim=8, output_dim=4)
    variables = layer.init(jax.random.key(0), tokens)
    p = jax.tree.map(np.asarray, variables["params"])
    assert p["token_embeddings"]["embeddings"].shape == (8, 4)
    assert p["position_embeddings"]["embeddings"].shape == (10, 4)
    expected = p["token_embeddings"]["embeddings"][tokens] + p["position_embeddings"]["embeddings"][:6]
    np.testing.assert_allclose(layer.apply(variables, tokens), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="sequence_length"):
        layer.apply(variables, np.zeros((1, 11), np.int32))


# ---------------------------------------------------------------- Transformer blocks
def _order_task(n, seed):
    """Length-10 sequences over 8 tokens holding one 3 and one 5; label: does the 3 come first?
    A bag of tokens cannot tell: only the relative order of the two tokens decides."""
    rng = np.random.default_rng(seed)
    x = np.array([0, 1, 2, 4, 6, 7])[rng.integers(0, 6, size=(n, 10))]
    for row in x:
        a, b = rng.choice(10, 2, replace=False)
        row[a], row[b] = 3, 5
    y = (np.argmax(x == 3, 1) < np.argmax(x == 5, 1)).astype(np.int32)
    return x.astype(np.int32), y


def _classifier(*middle):
    return dlkit.Sequential([layers.PositionalEmbedding(10, 8, 32), *middle, layers.GlobalAveragePooling1D(),
                             layers.Dense(2)])


def test_transformer_encoder_shape_and_names():
    x = _normal(2, 7, 16)
    layer = layers.TransformerEncoder(embed_dim=16, dense_dim=32, num_heads=2)
    variables = layer.init(jax.random.key(0), x)
    p = variables["params"]
    assert set(p) == {"attention", "dense_proj", "layernorm_1", "layernorm_2"}
    assert set(p["dense_proj"]) == {"dense", "dense_1"} and p["dense_proj"]["dense"]["kernel"].shape == (16, 32)
    assert p["attention"]["query"]["kernel"].shape == (16, 2, 16)  # key_dim=embed_dim, as the book
    out = layer.apply(variables, x)
    assert out.shape == (2, 7, 16)
    np.testing.assert_allclose(np.asarray(out).mean(-1), 0.0, atol=1e-5)  # ends in a LayerNormalization
    a, b = (layer.apply(variables, x, training=True, rngs={"dropout": jax.random.key(s)}) for s in (1, 2))
    assert not np.allclose(a, b)  # dropout=0.1 acts in training


def test_transformer_encoder_classifier_learns_token_order():
    x, y = _order_task(3000, 0)
    x_test, y_test = _order_task(1000, 1)
    assert 0.4 < y.mean() < 0.6
    loss = dlkit.losses.SparseCategoricalCrossentropy(from_logits=True)
    trainer = dlkit.Trainer(_classifier(layers.TransformerEncoder(32, 64, num_heads=2)),
                            optimizer=dlkit.optimizers.Adam(3e-3), loss=loss, metrics=["accuracy"])
    trainer.fit(x, y, batch_size=64, epochs=10, verbose=0)
    assert trainer.evaluate(x_test, y_test, verbose=0)[1] > 0.9
    # Without the encoder the pooled embeddings forget the order: the task needs attention.
    bag = dlkit.Trainer(_classifier(), optimizer=dlkit.optimizers.Adam(3e-3), loss=loss, metrics=["accuracy"])
    bag.fit(x, y, batch_size=64, epochs=5, verbose=0)
    assert bag.evaluate(x_test, y_test, verbose=0)[1] < 0.65


def test_transformer_decoder_is_causal_and_reads_the_encoder():
    targets, source = _normal(2, 6, 16), _normal(2, 4, 16)
    layer = layers.TransformerDecoder(embed_dim=16, dense_dim=32, num_heads=2)
    variables = layer.init(jax.random.key(0), targets, source)
    assert set(variables["params"]) == {"attention_1", "attention_2", "dense_proj", "layernorm_1", "layernorm_2",
                                        "layernorm_3"}
    out = layer.apply(variables, targets, source)
    assert out.shape == (2, 6, 16)
    for t in range(6):
        changed = targets.copy()
        changed[:, t + 1:] = _normal(2, 5 - t, 16)
        out2 = layer.apply(variables, changed, source)
        np.testing.assert_allclose(out2[:, :t + 1], out[:, :t + 1], rtol=1e-5, atol=1e-5)
        if t < 5:
            assert not np.allclose(out2[:, t + 1:], out[:, t + 1:])
    other_source = _normal(2, 4, 16)
    assert not np.allclose(layer.apply(variables, targets, other_source)[:, 0], out[:, 0])
    # encoder_mask hides padded source steps from the cross-attention.
    keep = np.array([[True, True, False, False]] * 2)
    noisy = source.copy()
    noisy[:, 2:] = _normal(2, 2, 16)
    np.testing.assert_allclose(layer.apply(variables, targets, noisy, encoder_mask=keep),
                               layer.apply(variables, targets, source, encoder_mask=keep), rtol=1e-5, atol=1e-5)
