"""An LSTM encoder-decoder (Keras' classic seq2seq) learns to reverse digit sequences; decoded greedily.

    python examples/seq2seq_lstm.py

The encoder LSTM reads the source digits and hands its final states ``[h, c]``
(``return_state=True``) to the decoder LSTM as ``initial_state``; the decoder
reads the target shifted right behind a start token (teacher forcing) and a
Dense softmax predicts each target digit. At inference
``dlkit.models.seq2seq.greedy_decoder`` feeds the decoder its own argmax
predictions; a forward LSTM is causal, so re-running it on the fixed-size
buffer of decoded tokens reads no future position. Data and task as in
``seq2seq_transformer.py``.
"""
import os
import sys

import dlkit
from dlkit import layers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seq2seq_transformer as shared  # noqa: E402 - the data, training and decoding are the same

DIGITS, START = shared.DIGITS, shared.START


def build_model(length: int = 8, embed_dim: int = 16, units: int = 128) -> dlkit.Model:
    """Embedding + LSTM encoder whose final ``[h, c]`` start the decoder's Embedding + LSTM; Dense softmax on top."""
    source = dlkit.Input((length,), dtype="int32", name="source")
    x = layers.Embedding(DIGITS, embed_dim)(source)
    _, h, c = layers.LSTM(units, return_state=True)(x)
    decoder_inputs = dlkit.Input((length,), dtype="int32", name="decoder_inputs")
    y = layers.Embedding(DIGITS + 1, embed_dim)(decoder_inputs)
    y = layers.LSTM(units, return_sequences=True)(y, initial_state=[h, c])
    return dlkit.Model([source, decoder_inputs], layers.Dense(DIGITS, activation="softmax")(y))


def main(epochs: int = 10, n_train: int = 8000, length: int = 8, task: str = "reverse", verbose="auto") -> tuple:
    """As ``seq2seq_transformer.main``, with the LSTM encoder-decoder."""
    return shared.main(epochs, n_train, length, task, verbose, build=build_model)


if __name__ == "__main__":
    main()
