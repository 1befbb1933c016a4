"""Text input in Keras' words: pad_sequences, TextVectorization (vocabulary, every output mode, in front of
an Embedding that learns), set_random_seed and Lambda.

Keras' ``pad_sequences`` is numpy and is compared directly. Keras' ``TextVectorization`` needs TensorFlow;
where it is installed the layers are compared on the same texts, and everywhere a reference written from
Keras' source (its punctuation regex verbatim, ASCII lower-casing and whitespace splitting as TensorFlow's
ops do them, ``np.lexsort((tokens, counts))[::-1]`` for the order, its idf formula) gives the expected
vocabulary and outputs, with the results Keras' own docstring prints.
"""
import collections
import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")  # before any Keras import; leaves a prior choice alone

import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.training import validation
from dlkit.utils import pad_sequences, set_random_seed

WORDS = ["Good", "good", "bad", "the", "movie!", "plot,", "ÄPfel", "café", "it's", "well-made", "[UNK]", "x", "(a)"]
SEPARATORS = [" ", "  ", "\t", " \n "]


def texts(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = rng.choice(WORDS, size=rng.integers(0, 9))
        out.append("".join(f"{w}{rng.choice(SEPARATORS)}" for w in words).strip(" ") if len(words) else "")
    return out


# ---------------------------------------------------------------- pad_sequences
RAGGED = [[1, 2, 3], [], [4], [5, 6, 7, 8, 9], [10, 11]]


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen", [None, 2, 4, 7])
def test_pad_sequences_equals_keras(padding, truncating, maxlen):
    keras = pytest.importorskip("keras")
    for kwargs in ({}, {"dtype": "float32", "value": -1.5}, {"dtype": "int64", "value": 7}):
        ours = pad_sequences(RAGGED, maxlen=maxlen, padding=padding, truncating=truncating, **kwargs)
        theirs = keras.utils.pad_sequences(RAGGED, maxlen=maxlen, padding=padding, truncating=truncating, **kwargs)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)
    vectors = [np.arange(6.0).reshape(3, 2), np.ones((1, 2))]  # entries that are vectors
    np.testing.assert_array_equal(pad_sequences(vectors, maxlen, "float32", padding, truncating),
                                  keras.utils.pad_sequences(vectors, maxlen, "float32", padding, truncating))
    words = [["a", "b"], ["c"]]
    np.testing.assert_array_equal(pad_sequences(words, maxlen, object, padding, truncating, "<pad>"),
                                  keras.utils.pad_sequences(words, maxlen, object, padding, truncating, "<pad>"))


def test_pad_sequences_as_keras_documents_it():
    sequence = [[1], [2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(pad_sequences(sequence), [[0, 0, 1], [0, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(pad_sequences(sequence, value=-1), [[-1, -1, 1], [-1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(pad_sequences(sequence, padding="post"), [[1, 0, 0], [2, 3, 0], [4, 5, 6]])
    np.testing.assert_array_equal(pad_sequences(sequence, maxlen=2), [[0, 1], [2, 3], [5, 6]])
    np.testing.assert_array_equal(pad_sequences(sequence, maxlen=2, truncating="post"), [[0, 1], [2, 3], [4, 5]])
    assert pad_sequences(sequence).dtype == np.int32
    assert pad_sequences([], maxlen=3).shape == (0, 3)


def test_pad_sequences_refuses_what_keras_refuses():
    with pytest.raises(ValueError, match="padding"):
        pad_sequences([[1]], padding="middle")
    with pytest.raises(ValueError, match="truncating"):
        pad_sequences([[1]], truncating="both")
    with pytest.raises(ValueError, match="dtype=object"):
        pad_sequences([["a"]], value="x")
    with pytest.raises(ValueError, match="list of sequences"):
        pad_sequences([1, 2])
    with pytest.raises(ValueError, match="one shape"):
        pad_sequences([np.ones((2, 3)), np.ones((2, 4))])


# ---------------------------------------------------------------- TextVectorization: Keras' reference
KERAS_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')  # Keras' regex, verbatim


def reference_tokens(batch, standardize="lower_and_strip_punctuation", split="whitespace", ngrams=None):
    rows = []
    for text in batch:
        if standardize in ("lower", "lower_and_strip_punctuation"):
            text = text.encode().lower().decode()  # ASCII only, as tf.strings.lower
        if standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = KERAS_PUNCTUATION.sub("", text)
        tokens = [t.decode() for t in text.encode().split()] if split == "whitespace" else list(text)
        if ngrams:
            widths = range(1, ngrams + 1) if isinstance(ngrams, int) else ngrams
            tokens = [" ".join(tokens[i:i + w]) for w in widths for i in range(len(tokens) - w + 1)]
        rows.append(tokens)
    return rows


def reference_layer(train, mode, max_tokens=None, pad_to_max_tokens=False, **steps):
    """Keras' vocabulary (and idf weights) for ``train``: IndexLookup.finalize_state, step by step."""
    rows = reference_tokens(train, **steps)
    counts = collections.Counter(t for row in rows for t in row)
    for special in ("", "[UNK]"):
        counts.pop(special, None)
    tokens = np.array([t.encode() for t in counts])
    order = np.lexsort((tokens, np.array(list(counts.values()))))[::-1]
    start = 2 if mode == "int" else 1
    if max_tokens:
        order = order[:max_tokens - start]
    learned = [t.decode() for t in tokens[order]]
    vocabulary = (["", "[UNK]"] if mode == "int" else ["[UNK]"]) + learned
    idf = None
    if mode == "tf_idf":
        documents = collections.Counter(t for row in rows for t in set(row))
        weights = np.log(1 + len(rows) / (1 + np.array([documents[t] for t in learned]))).astype(np.float32)
        idf = np.concatenate([[weights.mean()], weights])
        if pad_to_max_tokens:
            idf = np.pad(idf, (0, max_tokens - len(idf)))
    return vocabulary, idf


def reference_outputs(batch, vocabulary, idf, mode, output_sequence_length=None, depth=None, **steps):
    index = {t: i for i, t in enumerate(vocabulary)}
    rows = reference_tokens(batch, **steps)
    if mode == "int":
        ids = [[0 if t == "" else index.get(t, 1) for t in row] for row in rows]
        length = output_sequence_length if output_sequence_length is not None else max(map(len, ids), default=0)
        return np.array([(row + [0] * length)[:length] for row in ids], np.int32).reshape(len(ids), length)
    out = np.zeros((len(rows), depth or len(vocabulary)), np.float32)
    for r, row in enumerate(rows):
        for t in row:
            out[r, index.get(t, 0)] += 1
    return np.minimum(out, 1) if mode == "multi_hot" else out if mode == "count" else out * idf


CASES = [
    dict(output_mode="int"),
    dict(output_mode="int", max_tokens=9, output_sequence_length=6),
    dict(output_mode="int", standardize="lower", ngrams=2, output_sequence_length=3),
    dict(output_mode="int", standardize="strip_punctuation", split="character", max_tokens=20),
    dict(output_mode="multi_hot", max_tokens=8),
    dict(output_mode="count", ngrams=(1, 3)),
    dict(output_mode="tf_idf"),
    dict(output_mode="tf_idf", max_tokens=12, pad_to_max_tokens=True, ngrams=2),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_text_vectorization_follows_keras_reference(case):
    train, held_out = texts(200, seed=1), texts(40, seed=2)
    vectorizer = layers.TextVectorization(**case)
    assert vectorizer.adapt(train) is None  # in place, as Keras
    mode = case["output_mode"]
    steps = {k: case[k] for k in ("standardize", "split", "ngrams") if k in case}
    vocabulary, idf = reference_layer(train, mode, case.get("max_tokens"), case.get("pad_to_max_tokens", False),
                                      **steps)
    assert vectorizer.get_vocabulary() == vocabulary
    assert vectorizer.get_vocabulary(include_special_tokens=False) == vocabulary[2 if mode == "int" else 1:]
    assert vectorizer.vocabulary_size() == len(vocabulary)
    depth = case.get("max_tokens") if case.get("pad_to_max_tokens") else None
    for batch in (train, held_out):
        expected = reference_outputs(batch, vocabulary, idf, mode, case.get("output_sequence_length"), depth,
                                     **steps)
        got = vectorizer(batch)
        assert got.dtype == (np.int32 if mode == "int" else np.float32) and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        np.testing.assert_allclose(vectorizer(np.asarray(batch)[:, None]), expected, rtol=1e-6)  # (batch, 1)


@pytest.mark.parametrize("mode", ["int", "multi_hot", "count", "tf_idf"])
def test_text_vectorization_equals_keras(mode):
    pytest.importorskip("tensorflow")  # Keras' TextVectorization runs on TensorFlow
    keras = pytest.importorskip("keras")
    train, held_out = texts(200, seed=3), texts(40, seed=4)
    kwargs = dict(max_tokens=10, output_mode=mode, ngrams=2)
    ours, theirs = layers.TextVectorization(**kwargs), keras.layers.TextVectorization(**kwargs)
    ours.adapt(train)
    theirs.adapt(train)
    assert ours.get_vocabulary() == theirs.get_vocabulary()
    np.testing.assert_allclose(ours(held_out), keras.ops.convert_to_numpy(theirs(held_out)), rtol=1e-6)


def test_text_vectorization_as_keras_documents_it():
    vectorizer = layers.TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=4)
    vectorizer.adapt(["foo bar", "bar baz", "baz bada boom"])
    np.testing.assert_array_equal(vectorizer([["foo qux bar"], ["qux baz"]]), [[4, 1, 3, 0], [1, 2, 0, 0]])
    given = layers.TextVectorization(output_sequence_length=4, vocabulary=["earth", "wind", "and", "fire"])
    assert given.get_vocabulary() == ["", "[UNK]", "earth", "wind", "and", "fire"]
    np.testing.assert_array_equal(given("Earth, wind & FIRE!"), [2, 3, 5, 0])  # one string: one row
    leading = layers.TextVectorization(vocabulary=["", "[UNK]", "earth", "wind"])
    assert leading.get_vocabulary() == ["", "[UNK]", "earth", "wind"]
    with pytest.raises(ValueError, match="Cannot adapt"):
        given.adapt(["earth"])


def test_tf_idf_weights_given_and_learned():
    layer = layers.TextVectorization(output_mode="tf_idf", vocabulary=["a", "b"], idf_weights=[1.0, 3.0])
    np.testing.assert_allclose(layer(["a b b z"]), [[2.0, 1.0, 6.0]])  # OOV weighs the mean
    with pytest.raises(ValueError, match="idf_weights"):
        layers.TextVectorization(output_mode="tf_idf", vocabulary=["a"])
    learned = layers.TextVectorization(output_mode="tf_idf")
    learned.adapt(["a a b", "b c", "c d. D"])  # 3 documents; a and d in 1, b and c in 2
    assert learned.get_vocabulary() == ["[UNK]", "d", "c", "b", "a"]  # equal counts: tokens descending
    one, two = np.log(1 + 3 / 2), np.log(1 + 3 / 3)
    np.testing.assert_allclose(learned(["a b z", "d"]), [[(one + two) / 2, 0, 0, two, one], [0, one, 0, 0, 0]],
                               rtol=1e-6)


def test_adapt_replaces_the_vocabulary_in_place_and_callables_customise():
    vectorizer = layers.TextVectorization()
    vectorizer.adapt(["one two two"])
    assert vectorizer.get_vocabulary() == ["", "[UNK]", "two", "one"]
    vectorizer.adapt(iter([["three"], ["four four"]]))  # an iterable of batches
    assert vectorizer.get_vocabulary() == ["", "[UNK]", "four", "three"]
    custom = layers.TextVectorization(standardize=lambda a: np.char.upper(a),
                                      split=lambda a: [t.split("-") for t in a])
    custom.adapt(["x-y-y", "z"])
    assert custom.get_vocabulary() == ["", "[UNK]", "Y", "Z", "X"]
    np.testing.assert_array_equal(custom(["z-x-w", "y"]), [[3, 4, 1], [2, 0, 0]])
    whole = layers.TextVectorization(split=None, standardize=None, output_mode="count")
    whole.adapt(["red wine", "red wine", "beer"])
    np.testing.assert_array_equal(whole(["red wine", "Beer"]), [[0, 1, 0], [1, 0, 0]])


def test_text_vectorization_cannot_run_inside_a_model():
    vectorizer = layers.TextVectorization(output_sequence_length=4, input_shape=(1,))
    vectorizer.adapt(["a b", "c"])
    with pytest.raises(TypeError, match="on the host"):
        dlkit.Trainer(dlkit.Sequential([vectorizer, layers.Embedding(4, 2)]), loss="mse")
    with pytest.raises(TypeError, match="on the host"):
        vectorizer(dlkit.Input((1,)))
    with pytest.raises(TypeError, match="takes strings"):
        vectorizer(np.arange(3))
    with pytest.raises(ValueError, match="no vocabulary yet"):
        layers.TextVectorization()(["a"])
    for bad in (dict(output_mode="one_hot"), dict(max_tokens=1), dict(output_mode="count", output_sequence_length=3),
                dict(pad_to_max_tokens=True), dict(split="comma"), dict(ragged=True)):
        with pytest.raises(ValueError):
            layers.TextVectorization(**bad)


# ---------------------------------------------------------------- text in front of a model that learns
GOOD = ["good", "great", "excellent", "wonderful", "fun", "superb", "lovely", "brilliant"]
BAD = ["bad", "awful", "boring", "terrible", "dull", "poor", "horrible", "weak"]
FILLER = ["the", "movie", "film", "plot", "was", "and", "a", "really", "quite", "acting", "story", "it", "very"]


def reviews(n: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    out = []
    for label in labels:
        words = list(rng.choice(FILLER, rng.integers(3, 9)))
        for _ in range(rng.integers(1, 3)):
            words.insert(rng.integers(0, len(words) + 1), rng.choice(GOOD if label else BAD).upper()
                         if rng.random() < 0.2 else rng.choice(GOOD if label else BAD))
        out.append(" ".join(words).capitalize() + rng.choice([".", "!", "?!"]))
    return out, labels.astype(np.float32)


def test_vectorized_reviews_train_an_embedding_classifier():
    (train, y_train), (test, y_test) = reviews(1000, seed=0), reviews(300, seed=1)
    vectorizer = layers.TextVectorization(max_tokens=100, output_sequence_length=12)
    vectorizer.adapt(train)
    x_train, x_test = vectorizer(train), vectorizer(test)
    assert x_train.shape == (1000, 12) and x_train.dtype == np.int32
    model = dlkit.Sequential([layers.Embedding(vectorizer.vocabulary_size(), 8), layers.GlobalAveragePooling1D(),
                              layers.Dense(1, activation="sigmoid")])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(0.02), loss="binary_crossentropy",
                            metrics=["accuracy"])
    trainer.fit(x_train, y_train, batch_size=50, epochs=8, verbose=0)
    accuracy = trainer.evaluate(x_test, y_test, verbose=0)[1]
    assert accuracy > 0.9, accuracy
    bag = layers.TextVectorization(max_tokens=100, output_mode="multi_hot")  # a bag of words into a Dense
    bag.adapt(train)
    dense = dlkit.Trainer(dlkit.Sequential([layers.Dense(1, activation="sigmoid")]),
                          optimizer=dlkit.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    dense.fit(bag(train), y_train, batch_size=50, epochs=5, verbose=0)
    assert dense.evaluate(bag(test), y_test, verbose=0)[1] > 0.9


# ---------------------------------------------------------------- set_random_seed
@pytest.fixture
def global_seed():
    yield
    validation.set_default_seed(None)  # back to dlkit's default (0) for the tests after this one


def small_trainer(**kwargs):
    return dlkit.Trainer(dlkit.Sequential([dlkit.Input((5,)), layers.Dense(4), layers.Dense(2)]), loss="mse",
                         **kwargs)


def test_set_random_seed_makes_default_trainers_repeat(global_seed):
    set_random_seed(7)
    first, python_draw, numpy_draw = small_trainer(), __import__("random").random(), np.random.rand()
    set_random_seed(7)
    second = small_trainer()
    assert (__import__("random").random(), np.random.rand()) == (python_draw, numpy_draw)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert first.seed == second.seed == 7
    set_random_seed(8)
    other = small_trainer()
    assert not np.array_equal(other.get_weights()[0], first.get_weights()[0])
    set_random_seed(8)
    drawn = [small_trainer(seed=None).seed for _ in range(2)]
    set_random_seed(8)
    assert [small_trainer(seed=None).seed for _ in range(2)] == drawn  # a rerun draws the same seeds
    assert small_trainer(seed=3).seed == 3  # an explicit seed is kept
    assert small_trainer(seed=0).seed == 0  # 0 included: only the default follows set_random_seed
    with pytest.raises(TypeError):
        set_random_seed(1.5)
    validation.set_default_seed(None)
    assert small_trainer().seed == 0


# ---------------------------------------------------------------- Lambda
def test_lambda_in_sequential_and_functional_models():
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    model = dlkit.Sequential([dlkit.Input((5,)), layers.Dense(3), layers.Lambda(lambda h: jnp.tanh(h) * 2.0)])
    trainer = dlkit.Trainer(model, loss="mse")
    kernel, bias = trainer.get_weights()
    np.testing.assert_allclose(trainer.predict(x), np.tanh(x @ kernel + bias) * 2.0, rtol=1e-5, atol=1e-6)
    table = []
    trainer.summary(print_fn=table.append)
    assert "lambda (Lambda)" in table[0]
    a, b = dlkit.Input((5,)), dlkit.Input((5,))
    product = layers.Lambda(lambda xs, scale: xs[0] * xs[1] * scale, output_shape=(5,), arguments={"scale": 3.0})
    functional = dlkit.Trainer(dlkit.Model([a, b], product([a, b])), loss="mse")
    np.testing.assert_allclose(functional.predict([x, x + 1]), x * (x + 1) * 3.0, rtol=1e-6)
    noisy = layers.Lambda(lambda h, training: h + 1.0 if training else h)
    np.testing.assert_array_equal(noisy.apply({}, x, training=True), x + 1.0)
    np.testing.assert_array_equal(noisy.apply({}, x), x)
    with pytest.raises(ValueError, match="output_shape"):
        layers.Lambda(lambda h: h, output_shape=(4,))(a)
    with pytest.raises(TypeError, match="takes a function"):
        layers.Lambda(3)
