"""Sequence to sequence: teacher-forcing inputs, greedy decoding (one compiled loop, equal to a step-by-step
loop), causal decoders, and a Transformer and an LSTM encoder-decoder that reverse digit sequences with
>= 0.95 greedy token accuracy on held-out data."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit.models.seq2seq import greedy_decode, greedy_decoder, shift_right

LENGTH, START = 6, 10


@pytest.fixture(scope="module")
def transformer(load_example):
    return load_example("seq2seq_transformer")


@pytest.fixture(scope="module")
def lstm(load_example):
    return load_example("seq2seq_lstm")


@pytest.fixture(scope="module")
def untrained(transformer, lstm):
    """``untrained(which) -> (trainer, apply)``: a small untrained model of the example (built once per module;
    building compiles for seconds) and its jitted ``apply(variables, source, decoder_inputs)``."""
    built = {}

    def get(which):
        if which not in built:
            model = (transformer.build_model(LENGTH, embed_dim=8, dense_dim=16) if which == "transformer"
                     else lstm.build_model(LENGTH, embed_dim=4, units=8))
            trainer = dlkit.Trainer(model, seed=3, loss="mse")
            built[which] = trainer, jax.jit(lambda v, s, d: trainer.model.apply(v, (s, d), training=False))
        return built[which]

    return get


def test_shift_right_puts_the_start_token_first():
    targets = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
    np.testing.assert_array_equal(shift_right(targets, 9), [[9, 1, 2], [9, 4, 5]])
    assert isinstance(shift_right(targets, 9), np.ndarray)
    np.testing.assert_array_equal(shift_right(jnp.asarray(targets), 9), [[9, 1, 2], [9, 4, 5]])


def test_greedy_decode_feeds_back_its_own_predictions():
    """A hand-made causal 'model' whose step t outputs (source_t + 3 * decoder_input_t) % 10: every token
    depends on the one decoded before it. A plain Python loop on the growing prefix gives the same tokens."""
    def predict_fn(source, decoder_inputs):
        steps = decoder_inputs.shape[1]
        return jax.nn.one_hot((source[:, :steps] + 3 * decoder_inputs) % 10, 10)

    source = np.random.default_rng(0).integers(0, 10, size=(5, LENGTH)).astype(np.int32)
    expected = np.zeros((5, 0), np.int32)
    for _ in range(LENGTH):
        prefix = np.concatenate([np.full((5, 1), START, np.int32), expected], axis=1)
        next_token = np.argmax(np.asarray(predict_fn(source, prefix))[:, -1], axis=-1)
        expected = np.concatenate([expected, next_token[:, None].astype(np.int32)], axis=1)
    decoded = jax.jit(lambda s: greedy_decode(predict_fn, s, START, LENGTH))(source)
    assert decoded.dtype == jnp.int32 and decoded.shape == (5, LENGTH)
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize("which", ["transformer", "lstm"])
def test_greedy_decoder_equals_a_step_by_step_argmax_loop(which, untrained):
    trainer, apply = untrained(which)
    variables = trainer.state.variables
    source = np.random.default_rng(1).integers(0, 10, size=(16, LENGTH)).astype(np.int32)
    buffer = np.full((16, LENGTH), START, np.int32)
    expected = np.zeros((16, LENGTH), np.int32)
    for t in range(LENGTH):  # one model call per step, Python in control
        expected[:, t] = np.argmax(np.asarray(apply(variables, source, buffer))[:, t], axis=-1)
        if t + 1 < LENGTH:
            buffer[:, t + 1] = expected[:, t]
    decoded = greedy_decoder(trainer.model, START, LENGTH)(variables, source)
    np.testing.assert_array_equal(decoded, expected)
    assert len(np.unique(expected)) > 1  # the untrained model's choices vary, so the comparison means something


def test_greedy_decode_traces_the_model_once_whatever_the_length():
    """One loop body, traced (and so compiled) once: not one program per decoded position."""
    traces = []

    def predict_fn(source, decoder_inputs):
        traces.append(decoder_inputs.shape)
        return jax.nn.one_hot(source, 10)

    source = jnp.zeros((2, 12), jnp.int32)
    for length in (3, 12):
        traces.clear()
        jax.make_jaxpr(functools.partial(greedy_decode, predict_fn, start_token=START, length=length))(
            source[:, :length])
        assert traces == [(2, length)]


@pytest.mark.parametrize("which", ["transformer", "lstm"])
def test_decoder_output_at_t_ignores_decoder_inputs_after_t(which, untrained):
    """Causality, on which decoding from a fixed-size buffer relies; the later outputs do change."""
    trainer, apply = untrained(which)
    rng = np.random.default_rng(2)
    source = rng.integers(0, 10, size=(8, LENGTH)).astype(np.int32)
    decoder_inputs = rng.integers(0, 11, size=(8, LENGTH)).astype(np.int32)
    outputs = np.asarray(apply(trainer.state.variables, source, decoder_inputs))
    for t in range(LENGTH - 1):
        changed = decoder_inputs.copy()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1 + rng.integers(0, 10, size=changed[:, t + 1:].shape)) % 11
        changed_outputs = np.asarray(apply(trainer.state.variables, source, changed))
        np.testing.assert_allclose(changed_outputs[:, :t + 1], outputs[:, :t + 1], rtol=1e-5, atol=1e-6)
        assert not np.allclose(changed_outputs[:, t + 1:], outputs[:, t + 1:], atol=1e-4)


def _check_learned(capsys, forced, greedy):
    out = capsys.readouterr().out
    assert "greedy token accuracy" in out and " -> " in out
    assert forced >= 0.95 and greedy >= 0.95, (forced, greedy)


# Greedy token accuracy over seeds 0-2 (the Trainer's seed and the data draws): the Transformer 1.0000 each
# time with 2 epochs on 3000 sequences; the LSTM 0.9938-0.9943 with 8 epochs on 4000 (0.9932-0.9972 with
# the 10 on 6000 this test ran before).
def test_transformer_learns_to_reverse_decoded_greedily(capsys, transformer):
    _check_learned(capsys, *transformer.main(epochs=2, n_train=3000, length=LENGTH))


def test_lstm_encoder_decoder_learns_to_reverse_decoded_greedily(capsys, lstm):
    _check_learned(capsys, *lstm.main(epochs=8, n_train=4000, length=LENGTH))


@pytest.mark.slow
@pytest.mark.parametrize("which,epochs", [("transformer", 8), ("lstm", 10)])
def test_examples_learn_to_sort_eight_digits(capsys, request, which, epochs):
    _check_learned(capsys, *request.getfixturevalue(which).main(epochs=epochs, task="sort"))
