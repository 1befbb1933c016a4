"""``TextVectorization``: Keras' text layer, strings to token ids (or bag-of-words vectors) on the host.

Strings cannot enter a jitted JAX function, so this layer runs in numpy, before the model:
``vectorizer.adapt(texts)`` learns the vocabulary in place and ``vectorizer(texts)`` returns a
numpy ``int32`` (``output_mode="int"``) or ``float32`` array that feeds ``Trainer.fit`` and an
``Embedding`` (or a ``Dense``). That is also how Keras recommends it on its JAX backend
("outside the model itself"). Inside a model (the first layer of a ``Sequential``, or called on
a ``dlkit.Input``) it raises a ``TypeError`` that says so, at the first call, instead of a trace
from deep inside JAX.

The steps are Keras': standardize (ASCII lower-casing, as ``tf.strings.lower``, and stripping
``string.punctuation``, Keras' regex class), split (on ASCII whitespace, as ``tf.strings.split``,
or per character), n-grams (widths in the order given, tokens joined by a space, as
``tf.strings.ngrams``), then the lookup. ``adapt`` orders the vocabulary by count, ties broken by
the tokens in descending order (Keras' ``np.lexsort((tokens, counts))[::-1]``); ``tf_idf``
weights are ``log(1 + documents / (1 + documents containing the token))``, the OOV slot taking
their mean, as Keras.
"""
from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import numpy as np

from dlkit import symbolic
from dlkit.layers.base import Layer

MASK_TOKEN, OOV_TOKEN = "", "[UNK]"
OUTPUT_MODES = ("int", "multi_hot", "count", "tf_idf")
STANDARDIZERS = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
SPLITS = ("whitespace", "character")
_MODE_ALIASES = {"binary": "multi_hot", "tf-idf": "tf_idf"}
_LOWER = {ord(c): ord(c.lower()) for c in string.ascii_uppercase}  # tf.strings.lower: ASCII only
_STRIP = dict.fromkeys(map(ord, string.punctuation), None)  # Keras' regex class is string.punctuation
_WHITESPACE = re.compile(r"[ \t\n\v\f\r]+")  # tf.strings.split: C isspace

_NOT_IN_A_MODEL = (
    "TextVectorization maps strings to integers on the host (numpy), and a dlkit model is compiled by "
    "JAX, which takes numbers only, so it cannot be a layer of the model (Keras' JAX backend has the same "
    "rule). Vectorize the texts before training and start the model at the layer after it:\n"
    "    vectorizer.adapt(train_texts)\n"
    "    x_train = vectorizer(train_texts)   # int32 (batch, tokens)\n"
    "    model = dlkit.Sequential([layers.Embedding(vectorizer.vocabulary_size(), 16), ...])\n"
    "    trainer.fit(x_train, y_train); trainer.predict(vectorizer(new_texts))")


class TextVectorization(Layer):
    """Keras' ``TextVectorization``: texts to token ids (``"int"``) or to ``multi_hot`` / ``count`` /
    ``tf_idf`` vectors, run on the host (see the module docstring for where it sits).

    With ``output_mode="int"`` index 0 is padding (``""``) and 1 out-of-vocabulary (``"[UNK]"``);
    the other modes have only the OOV slot, index 0. ``max_tokens`` counts those slots, so
    ``adapt`` keeps ``max_tokens - 2`` (int) or ``max_tokens - 1`` learned tokens.

    Differences from Keras: outputs are numpy ``int32`` / ``float32`` (Keras: int64 / float32);
    calling the layer before it has a vocabulary raises (Keras' int mode maps everything to
    ``[UNK]``); a batch of shape ``(n,)`` or ``(n, 1)`` always gives ``(n, ...)`` rows (also with
    ``split=None``); a ``split`` callable takes the 1-D numpy array of standardized texts and
    returns one token list per text (Keras hands it a ``tf.Tensor``).

    Args:
        max_tokens: The vocabulary's largest size, padding and OOV slots included; ``None``: no limit.
        standardize: ``"lower_and_strip_punctuation"``, ``"lower"``, ``"strip_punctuation"``, ``None``,
            or a callable taking a numpy array of strings and returning one of the same shape.
        split: ``"whitespace"``, ``"character"``, ``None`` (each string is one token), or a callable
            (see above).
        ngrams: ``None``, an int ``n`` (n-grams of widths 1 to n) or a tuple of widths.
        output_mode: ``"int"``, ``"multi_hot"`` (alias ``"binary"``), ``"count"`` or ``"tf_idf"``.
        output_sequence_length: ``"int"`` mode only: pad (after) or cut every row to this length;
            ``None``: the longest row of the batch.
        pad_to_max_tokens: non-int modes: make the vectors ``max_tokens`` wide whatever the vocabulary's size.
        vocabulary: A list of tokens (or the path of a file with one per line) instead of ``adapt``;
            the special tokens may lead it.
        idf_weights: ``"tf_idf"`` with ``vocabulary``: the inverse document frequency of each token.
        sparse: Keras' sparse outputs need TensorFlow; ``True`` raises, as Keras on JAX.
        ragged: Keras' ragged outputs need TensorFlow; ``True`` raises, as Keras on JAX.
        encoding: The encoding of ``bytes`` inputs.
        input_shape: Unused (a ``Layer`` argument); this layer never runs inside a model.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: A string, or a list / numpy array of strings of shape ``(batch,)`` or ``(batch, 1)``
            (``(batch, k)`` strings with ``split=None``).
        training: Unused; Keras' flag.

    Returns:
        ``int32`` ids ``(batch, length)`` in ``"int"`` mode, else ``float32`` ``(batch, depth)`` with
        ``depth = vocabulary_size()`` (or ``max_tokens`` with ``pad_to_max_tokens``); a single string
        gives one row without the batch axis.

    Raises:
        ValueError: An unknown mode/standardize/split, ``max_tokens <= 1``, ``output_sequence_length``
            outside int mode, ``pad_to_max_tokens`` without ``max_tokens``, a bad vocabulary, or
            ``sparse``/``ragged``.
        TypeError: Called inside a model (a traced or symbolic input) or on something that is not text.
    """

    max_tokens: Optional[int] = None
    standardize: Any = "lower_and_strip_punctuation"
    split: Any = "whitespace"
    ngrams: Any = None
    output_mode: str = "int"
    output_sequence_length: Optional[int] = None
    pad_to_max_tokens: bool = False
    vocabulary: Any = None
    idf_weights: Any = None
    sparse: bool = False
    ragged: bool = False
    encoding: str = "utf-8"
    keras_name: ClassVar[str] = "text_vectorization"

    def __post_init__(self):
        mode = _MODE_ALIASES.get(self.output_mode, self.output_mode)
        _check(mode in OUTPUT_MODES, f"output_mode must be one of {OUTPUT_MODES}, got {self.output_mode!r}.")
        _check(self.standardize is None or callable(self.standardize) or self.standardize in STANDARDIZERS,
               f"standardize must be None, a callable or one of {STANDARDIZERS}, got {self.standardize!r}.")
        _check(self.split is None or callable(self.split) or self.split in SPLITS,
               f"split must be None, a callable or one of {SPLITS}, got {self.split!r}.")
        _check(not (self.sparse or self.ragged), "sparse=True and ragged=True need TensorFlow (as in Keras on "
                                                 "its JAX backend); dlkit returns dense numpy arrays.")
        _check(self.max_tokens is None or (_is_int(self.max_tokens) and self.max_tokens > 1),
               f"If set, max_tokens must be an int greater than 1, got {self.max_tokens!r}.")
        _check(not (self.pad_to_max_tokens and self.max_tokens is None), "pad_to_max_tokens=True needs max_tokens.")
        _check(mode == "int" or self.output_sequence_length is None,
               f"output_sequence_length is for output_mode='int' only, got output_mode={mode!r}.")
        _check(self.output_sequence_length is None or (_is_int(self.output_sequence_length)
                                                       and self.output_sequence_length >= 0),
               f"output_sequence_length must be None or an int >= 0, got {self.output_sequence_length!r}.")
        _check(self.idf_weights is None or mode == "tf_idf", "idf_weights is for output_mode='tf_idf' only.")
        object.__setattr__(self, "output_mode", mode)
        object.__setattr__(self, "_widths", _ngram_widths(self.ngrams))
        # The vocabulary lives on the layer object (Keras' layer state); adapt replaces it in place.
        object.__setattr__(self, "_table", {"tokens": [], "index": {}, "idf": None})
        if self.vocabulary is not None:
            for field in ("vocabulary", "idf_weights"):  # hashable fields, as Linen modules' should be
                value = getattr(self, field)
                if value is not None and not isinstance(value, str):
                    object.__setattr__(self, field, tuple(np.asarray(value).tolist()))
            self.set_vocabulary(self.vocabulary, self.idf_weights)
        super().__post_init__()

    # ------------------------------------------------------------------ the vocabulary
    @nn.nowrap
    def adapt(self, data, batch_size=None, steps=None) -> None:
        """Learn the vocabulary (and the idf weights) from ``data``, in place, as Keras' ``adapt``.

        Tokens are counted after standardize, split and n-grams; the most frequent are kept
        (ties: the tokens in descending order), ``max_tokens`` minus the special slots of them.

        Args:
            data: Texts: a list or numpy array of strings (one batch), or an iterable of such batches.
            batch_size: Unused (Keras' argument; the data are read in one pass).
            steps: With an iterable of batches, read at most this many.

        Raises:
            ValueError: The layer was given a ``vocabulary`` when made.
        """
        _check(self.vocabulary is None, "Cannot adapt a TextVectorization made with vocabulary=...; make one "
                                        "without it to learn the vocabulary from data.")
        one_batch = isinstance(data, (str, bytes, list, tuple, np.ndarray)) or not isinstance(data, Iterable)
        batches = [data] if one_batch else data
        counts, documents, num_documents = collections.Counter(), collections.Counter(), 0
        for i, batch in enumerate(batches):
            if steps is not None and i >= steps:
                break
            rows, _ = self._tokens(batch)
            for row in rows:
                counts.update(row)
                documents.update(set(row))
            num_documents += len(rows)
        for special in (MASK_TOKEN, OOV_TOKEN):
            counts.pop(special, None)
        if not counts:
            return  # as Keras: no tokens seen, the vocabulary stays as it was
        ranked = sorted(counts.items(), key=lambda item: (item[1], item[0]), reverse=True)
        tokens = [token for token, _ in ranked]
        if self.max_tokens:
            tokens = tokens[:self.max_tokens - self._start()]
        idf = None
        if self.output_mode == "tf_idf":
            frequency = np.asarray([documents[t] for t in tokens], np.float64)
            weights = np.log(1.0 + num_documents / (1.0 + frequency)).astype(np.float32)
            idf = self._pad_idf(weights, np.mean(weights), self._start())
        self._store(tokens, idf)

    @nn.nowrap
    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Set the vocabulary (and idf weights) directly, as Keras' ``set_vocabulary``.

        Args:
            vocabulary: A list or 1-D array of tokens, or the path of a text file with one per line.
                It may start with the special tokens (``["", "[UNK]"]`` in int mode, ``["[UNK]"]``
                otherwise), which are then not repeated.
            idf_weights: With ``output_mode="tf_idf"`` (required there): one weight per entry of
                ``vocabulary``; without leading special tokens the OOV slot gets their mean.

        Raises:
            ValueError: An empty vocabulary, repeated tokens, the padding token ``""`` among the
                tokens, more than ``max_tokens`` entries, or idf weights missing, unexpected or of
                another length.
        """
        if isinstance(vocabulary, str):
            with open(vocabulary, encoding=self.encoding) as file:
                vocabulary = file.read().splitlines()
        vocabulary = [_decode(v, self.encoding) for v in np.asarray(vocabulary, dtype=object).ravel()]
        _check(len(vocabulary) > 0, "Cannot set an empty vocabulary.")
        _check((idf_weights is not None) == (self.output_mode == "tf_idf"),
               "idf_weights are needed with output_mode='tf_idf', and only there.")
        specials = self._specials()
        found = vocabulary[:len(specials)] == specials
        tokens = vocabulary[len(specials):] if found else vocabulary
        repeated = sorted(t for t, n in collections.Counter(tokens).items() if n > 1)
        _check(not repeated, f"The vocabulary repeats {repeated}; give each token once.")
        _check(MASK_TOKEN not in tokens, f"The padding token '' may only lead the vocabulary, as in {specials}.")
        size = self._start() + len(tokens)
        _check(self.max_tokens is None or size <= self.max_tokens,
               f"The vocabulary has {size} entries with its special tokens, more than max_tokens={self.max_tokens}.")
        idf = None
        if idf_weights is not None:
            weights = np.asarray(idf_weights, np.float32).ravel()
            _check(len(weights) == len(vocabulary), f"idf_weights has {len(weights)} weights for "
                                                    f"{len(vocabulary)} vocabulary entries.")
            idf = self._pad_idf(weights, 0.0 if found else np.mean(weights), 0 if found else self._start())
        self._store(tokens, idf)

    @nn.nowrap
    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        """The vocabulary, a token's place in it being its index (Keras' ``get_vocabulary``).

        Args:
            include_special_tokens: Include ``""`` (int mode) and ``"[UNK]"`` first.

        Returns:
            A list of strings.
        """
        tokens = list(self._table["tokens"])
        return self._specials() + tokens if include_special_tokens else tokens

    @nn.nowrap
    def vocabulary_size(self) -> int:
        """The vocabulary's size, special tokens included: an ``Embedding``'s ``input_dim``.

        Returns:
            An int.
        """
        return self._start() + len(self._table["tokens"])

    # ------------------------------------------------------------------ calling
    @nn.nowrap
    def __call__(self, inputs, training: bool = False):
        if isinstance(inputs, jax.core.Tracer) or symbolic.is_symbolic(inputs):
            raise TypeError(_NOT_IN_A_MODEL)
        rows, single = self._tokens(inputs)
        if not self._table["tokens"]:
            raise ValueError("This TextVectorization has no vocabulary yet: call vectorizer.adapt(train_texts) "
                             "first (it learns the vocabulary in place), or pass vocabulary=[...].")
        out = self._ids(rows) if self.output_mode == "int" else self._vectors(rows)
        return out[0] if single else out

    def _ids(self, rows: list) -> np.ndarray:
        index = self._table["index"]
        ids = [[0 if t == MASK_TOKEN else index.get(t, 1) for t in row] for row in rows]
        length = self.output_sequence_length
        if length is None:
            length = max((len(row) for row in ids), default=0)
        out = np.zeros((len(ids), length), np.int32)
        for r, row in enumerate(ids):
            row = row[:length]
            out[r, :len(row)] = row
        return out

    def _vectors(self, rows: list) -> np.ndarray:
        index = self._table["index"]
        depth = self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()
        where = [(r, index.get(t, 0)) for r, row in enumerate(rows) for t in row if t != MASK_TOKEN]
        out = np.zeros((len(rows), depth), np.float32)
        if where:
            r, c = np.asarray(where).T
            np.add.at(out, (r, c), 1.0)
        if self.output_mode == "multi_hot":
            return np.minimum(out, 1.0)
        if self.output_mode == "tf_idf":
            return out * self._table["idf"]
        return out

    def _tokens(self, inputs) -> tuple:
        """Each text's tokens after standardize, split and n-grams, and whether ``inputs`` was one string."""
        texts = np.asarray(inputs, dtype=object)
        single = texts.ndim == 0
        texts = texts.reshape(1, 1) if single else texts.reshape(len(texts), 1) if texts.ndim == 1 else texts
        if texts.size and not all(isinstance(t, (str, bytes, np.str_, np.bytes_)) for t in texts.flat):
            example = next(t for t in texts.flat if not isinstance(t, (str, bytes, np.str_, np.bytes_)))
            raise TypeError(f"TextVectorization takes strings, got {type(example).__name__} {example!r:.60}. "
                            + ("" if not isinstance(inputs, jax.Array) else _NOT_IN_A_MODEL))
        if texts.ndim != 2 or (self.split is not None and texts.shape[1] != 1):
            raise ValueError(f"TextVectorization takes a batch of texts of shape (batch,) or (batch, 1) (or "
                             f"(batch, k) with split=None), got shape {texts.shape}.")
        texts = np.vectorize(lambda t: _decode(t, self.encoding), otypes=[object])(texts) if texts.size else texts
        texts = self._standardized(texts)
        if self.split is None:
            rows = [list(row) for row in texts]
        elif callable(self.split):
            rows = [list(map(str, row)) for row in self.split(texts[:, 0].astype(str))]
            _check(len(rows) == len(texts), f"split returned {len(rows)} token lists for {len(texts)} texts.")
        elif self.split == "whitespace":
            rows = [[t for t in _WHITESPACE.split(text) if t] for text in texts[:, 0]]
        else:
            rows = [list(text) for text in texts[:, 0]]
        if self._widths:
            rows = [[" ".join(row[i:i + w]) for w in self._widths for i in range(len(row) - w + 1)] for row in rows]
        return rows, single

    def _standardized(self, texts: np.ndarray) -> np.ndarray:
        if self.standardize is None:
            return texts
        if callable(self.standardize):
            out = np.asarray(self.standardize(texts.astype(str)), dtype=object)
            _check(out.shape == texts.shape, f"standardize returned shape {out.shape} for texts of shape "
                                             f"{texts.shape}; return one string per text.")
            return out
        table = {**(_LOWER if "lower" in self.standardize else {}),
                 **(_STRIP if "strip" in self.standardize else {})}
        return np.vectorize(lambda t: t.translate(table), otypes=[object])(texts) if texts.size else texts

    def _specials(self) -> list:
        return [MASK_TOKEN, OOV_TOKEN] if self.output_mode == "int" else [OOV_TOKEN]

    def _start(self) -> int:
        """The index of the first learned token: after padding and OOV (int mode) or OOV alone."""
        return len(self._specials())

    def _pad_idf(self, weights: np.ndarray, front_value, front: int) -> np.ndarray:
        """Keras' padding of the idf weights: ``front`` OOV slots of ``front_value``, zeros up to
        ``max_tokens`` with ``pad_to_max_tokens``."""
        back = self.max_tokens - front - len(weights) if self.pad_to_max_tokens else 0
        return np.concatenate([np.full(front, front_value, np.float32), weights,
                               np.zeros(max(back, 0), np.float32)]).astype(np.float32)

    def _store(self, tokens: list, idf) -> None:
        start = self._start()
        self._table.update(tokens=list(tokens), index={t: start + i for i, t in enumerate(tokens)}, idf=idf)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _decode(text, encoding: str) -> str:
    return text.decode(encoding) if isinstance(text, (bytes, np.bytes_)) else str(text)


def _ngram_widths(ngrams) -> tuple:
    """Keras' ``ngrams``: ``None``, ``n`` (widths 1..n) or a tuple of widths."""
    if ngrams is None:
        return ()
    if _is_int(ngrams):
        return tuple(range(1, int(ngrams) + 1))
    _check(isinstance(ngrams, tuple) and all(_is_int(n) and n > 0 for n in ngrams),
           f"ngrams must be None, an int or a tuple of positive ints, got {ngrams!r}.")
    return tuple(int(n) for n in ngrams)
