"""A Transformer encoder-decoder learns to reverse digit sequences; decoded greedily, token by token.

    python examples/seq2seq_transformer.py

The source is ``length`` random digits (0-9), the target the same digits
reversed (or sorted: ``main(task="sort")``). Training uses teacher forcing
(Chollet, ch. 11): the decoder reads the target shifted right behind a start
token (10) and predicts the target. Inference has no target:
``dlkit.models.seq2seq.greedy_decoder`` feeds the decoder its own argmax
predictions, one position at a time. Both accuracies are per token on
held-out sequences; the greedy one is what a user of the model would get.
"""
import numpy as np

import dlkit
from dlkit import layers
from dlkit.models.seq2seq import greedy_decoder, shift_right

DIGITS = 10
START = DIGITS  # the decoder's extra token


def make_data(n: int, length: int = 8, seed: int = 0, task: str = "reverse"):
    """``(source, target)`` int32 arrays ``(n, length)``: random digits and, per ``task``, the same digits
    reversed (``'reverse'``) or sorted (``'sort'``)."""
    source = np.random.default_rng(seed).integers(0, DIGITS, size=(n, length), dtype=np.int32)
    if task == "reverse":
        return source, source[:, ::-1].copy()
    if task == "sort":
        return source, np.sort(source, axis=1)
    raise ValueError(f"task must be 'reverse' or 'sort', got {task!r}.")


def build_model(length: int = 8, embed_dim: int = 32, dense_dim: int = 64, num_heads: int = 2) -> dlkit.Model:
    """Chollet's Transformer: PositionalEmbedding + TransformerEncoder on the source, PositionalEmbedding +
    TransformerDecoder (causal self-attention, cross-attention to the encoder) on the shifted target,
    then a per-position softmax over the digits."""
    source = dlkit.Input((length,), dtype="int32", name="source")
    x = layers.PositionalEmbedding(length, DIGITS, embed_dim)(source)
    encoded = layers.TransformerEncoder(embed_dim, dense_dim, num_heads, dropout=0.0)(x)
    decoder_inputs = dlkit.Input((length,), dtype="int32", name="decoder_inputs")
    y = layers.PositionalEmbedding(length, DIGITS + 1, embed_dim)(decoder_inputs)
    y = layers.TransformerDecoder(embed_dim, dense_dim, num_heads, dropout=0.0)(y, encoded)
    return dlkit.Model([source, decoder_inputs], layers.Dense(DIGITS, activation="softmax")(y))


def train(model: dlkit.Model, source, target, epochs: int = 8, batch_size: int = 64, verbose=0,
          learning_rate: float = 3e-3) -> dlkit.Trainer:
    """Teacher forcing: ``fit([source, shift_right(target)], target)``."""
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(learning_rate),
                            loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer.fit([source, shift_right(target, START)], target, batch_size=batch_size, epochs=epochs,
                verbose=verbose)
    return trainer


def decode(trainer: dlkit.Trainer, source) -> np.ndarray:
    """Greedy autoregressive decoding: no target is read."""
    return np.asarray(greedy_decoder(trainer.model, START, source.shape[1])(trainer.state.variables, source))


def main(epochs: int = 8, n_train: int = 8000, length: int = 8, task: str = "reverse", verbose="auto",
         build=build_model) -> tuple:
    """Train ``build(length)``, then print the teacher-forced and the greedy token accuracy on held-out
    sequences and a few decoded examples; returns ``(teacher_forced_accuracy, greedy_accuracy)``."""
    source, target = make_data(n_train, length, seed=0, task=task)
    test_source, test_target = make_data(1000, length, seed=1, task=task)
    trainer = train(build(length), source, target, epochs=epochs, verbose=verbose)
    _, forced = trainer.evaluate([test_source, shift_right(test_target, START)], test_target, verbose=0)
    decoded = decode(trainer, test_source)
    greedy = float(np.mean(decoded == test_target))
    print(f"teacher-forced token accuracy: {forced:.4f} - greedy token accuracy: {greedy:.4f} "
          f"- greedy sequence accuracy: {np.mean(np.all(decoded == test_target, axis=1)):.4f}")
    for s, d in zip(test_source[:3], decoded[:3]):
        print(f"{''.join(map(str, s))} -> {''.join(map(str, d))}")
    return forced, greedy


if __name__ == "__main__":
    main()
