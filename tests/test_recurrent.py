"""Embedding, SimpleRNN, LSTM, GRU and Bidirectional against step-by-step numpy references and Keras 3."""
import os

# Keras 3 must pick its backend before its first import; setdefault leaves another choice alone.
os.environ.setdefault("KERAS_BACKEND", "jax")

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.testing import assert_gradients_match_finite_differences

RNG = np.random.default_rng(7)
B, T, D, U = 3, 5, 4, 6


def randn(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------------------------
# numpy references (Keras' cell equations, one step at a time, float64)
# ----------------------------------------------------------------------------------------------

def np_step(kind, x, states, kernel, rec, bias):
    """One step of ``kind``; returns (output, new_states)."""
    h = states[0]
    if kind == "simple_rnn":
        h = np.tanh(x @ kernel + bias + h @ rec)
        return h, [h]
    if kind == "lstm":
        z = x @ kernel + h @ rec + bias
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sigmoid(f) * states[1] + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        return h, [h, c]
    u = rec.shape[0]
    wz, wr, wh = np.split(kernel, 3, axis=-1)
    uz, ur, uh = np.split(rec, 3, axis=-1)
    if kind == "gru_after":
        bx, bh = bias
        z = sigmoid(x @ wz + bx[:u] + h @ uz + bh[:u])
        r = sigmoid(x @ wr + bx[u:2 * u] + h @ ur + bh[u:2 * u])
        n = np.tanh(x @ wh + bx[2 * u:] + r * (h @ uh + bh[2 * u:]))
    else:  # gru_before
        z = sigmoid(x @ wz + bias[:u] + h @ uz)
        r = sigmoid(x @ wr + bias[u:2 * u] + h @ ur)
        n = np.tanh(x @ wh + bias[2 * u:] + (r * h) @ uh)
    h = z * h + (1 - z) * n
    return h, [h]


def np_rnn(kind, x, weights, mask=None, go_backwards=False, zero_output_for_mask=False, initial=None):
    """Keras' loop: returns (outputs in processing order (batch, time, units), final states)."""
    x = np.asarray(x, np.float64)
    kernel, rec, bias = (np.asarray(w, np.float64) for w in weights)
    batch, steps, _ = x.shape
    units = rec.shape[0]
    n_states = 2 if kind == "lstm" else 1
    states = [np.zeros((batch, units))] * n_states if initial is None else [np.asarray(s, np.float64)
                                                                             for s in initial]
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    outputs = []
    for t in order:
        out, new = np_step(kind, x[:, t], states, kernel, rec, bias)
        if mask is not None:
            m = mask[:, t][:, None]
            new = [np.where(m, n, s) for n, s in zip(new, states)]
            out = np.where(m, out, 0.0 if zero_output_for_mask else states[0])
        states = new
        outputs.append(out)
    return np.stack(outputs, axis=1), states


GATES = {"simple_rnn": 1, "lstm": 4, "gru_after": 3, "gru_before": 3}


def make_layer(kind, units=U, **kwargs):
    if kind == "simple_rnn":
        return layers.SimpleRNN(units, **kwargs)
    if kind == "lstm":
        return layers.LSTM(units, **kwargs)
    return layers.GRU(units, reset_after=kind == "gru_after", **kwargs)


def random_weights(kind, features=D, units=U):
    k = GATES[kind] * units
    bias = randn(2, k, scale=0.5) if kind == "gru_after" else randn(k, scale=0.5)
    return [randn(features, k, scale=0.5), randn(units, k, scale=0.5), bias]


def params_of(weights):
    return {"kernel": jnp.asarray(weights[0]), "recurrent_kernel": jnp.asarray(weights[1]),
            "bias": jnp.asarray(weights[2])}


def run(layer, x, weights, **kwargs):
    return layer.apply({"params": params_of(weights)}, x, **kwargs)


KINDS = ["simple_rnn", "lstm", "gru_after", "gru_before"]


# ----------------------------------------------------------------------------------------------
# gradients (the layers' backward pass is hand-written)
# ----------------------------------------------------------------------------------------------

GRAD_CASES = {  # layer arguments, call arguments
    "sequences": ({"return_sequences": True}, {}),
    "backwards_states": ({"go_backwards": True, "return_state": True}, {}),
    "mask": ({"return_sequences": True, "zero_output_for_mask": True},
             {"mask": np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 1, 1, 1, 1]], bool)}),
    "dropout": ({"return_sequences": True, "dropout": 0.3, "recurrent_dropout": 0.3},
                {"training": True, "rngs": {"dropout": jax.random.key(2)}}),
    "no_bias": ({"use_bias": False}, {}),
}


@pytest.mark.parametrize("case", list(GRAD_CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(kind, case):
    """The loop's hand-written backward pass, for weights, inputs and initial states (float64)."""
    layer_kwargs, call_kwargs = GRAD_CASES[case]
    layer = make_layer(kind, **layer_kwargs)
    with jax.enable_x64(True):
        params = {k: v.astype(jnp.float64) for k, v in params_of(random_weights(kind)).items()
                  if k != "bias" or layer.use_bias}
        x = jnp.asarray(randn(B, T, D), jnp.float64)
        initial = [jnp.asarray(randn(B, U, scale=0.5), jnp.float64) for _ in range(2 if kind == "lstm" else 1)]

        def f(params, x, initial):  # jitted by the check: one program per case
            return layer.apply({"params": params}, x, initial_state=initial, **call_kwargs)

        assert_gradients_match_finite_differences(f, params, x, initial, atol=1e-7, rtol=1e-7, eps=1e-6)


def jnp_step(kind, x, states, kernel, rec, bias):
    """``np_step`` in jax.numpy (LSTM and GRU(reset_after=True)), for ``jax.grad`` through a plain scan."""
    h = states[0]
    if kind == "lstm":
        i, f, g, o = jnp.split(x @ kernel + h @ rec + bias, 4, axis=-1)
        c = jax.nn.sigmoid(f) * states[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return h, (h, c)
    xz, xr, xh = jnp.split(x @ kernel + bias[0], 3, axis=-1)
    hz, hr, hh = jnp.split(h @ rec + bias[1], 3, axis=-1)
    z, r = jax.nn.sigmoid(xz + hz), jax.nn.sigmoid(xr + hr)
    h = z * h + (1 - z) * jnp.tanh(xh + r * hh)
    return h, (h,)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru_after"])
def test_gradients_match_autodiff_of_a_plain_scan(kind, go_backwards, masked):
    """Every gradient of the hand-written backward pass (dz_t written over the forward's z_t buffer) against
    ``jax.grad`` of a ``lax.scan`` of ``jnp_step``, float64, outputs and final states both in the loss."""
    mask = jnp.asarray(np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 1, 1, 1, 1]], bool)) if masked else None
    layer = make_layer(kind, return_sequences=True, return_state=True, go_backwards=go_backwards)
    with jax.enable_x64(True):
        params = {k: v.astype(jnp.float64) for k, v in params_of(random_weights(kind)).items()}
        x = jnp.asarray(randn(B, T, D), jnp.float64)
        initial = [jnp.asarray(randn(B, U, scale=0.5), jnp.float64) for _ in range(2 if kind == "lstm" else 1)]
        w_out, w_states = jnp.asarray(randn(B, T, U), jnp.float64), jnp.asarray(randn(B, U), jnp.float64)

        def reference(params, x, initial):
            def body(states, inputs):
                x_t, m_t = inputs
                out, new = jnp_step(kind, x_t, states, params["kernel"], params["recurrent_kernel"], params["bias"])
                if m_t is not None:
                    new = tuple(jnp.where(m_t[:, None], n, s) for n, s in zip(new, states))
                    out = jnp.where(m_t[:, None], out, states[0])
                return new, out
            steps = (jnp.swapaxes(x, 0, 1), None if mask is None else mask.T)
            final, outs = jax.lax.scan(body, tuple(initial), steps, reverse=go_backwards)
            return jnp.swapaxes(outs[::-1] if go_backwards else outs, 0, 1), final

        def loss(fn):
            def value(params, x, initial):
                outs, *final = fn(params, x, initial)
                return jnp.sum(outs * w_out) + sum(jnp.sum(s * w_states * (k + 1)) for k, s in enumerate(final))
            return jax.jit(jax.grad(value, argnums=(0, 1, 2)))

        got = loss(lambda p, x, s: layer.apply({"params": p}, x, mask=mask, initial_state=s))(params, x, initial)
        want = loss(lambda p, x, s: [reference(p, x, s)[0], *reference(p, x, s)[1]])(params, x, initial)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# shapes and names
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_weights_have_keras_names_and_shapes(kind):
    x = jnp.zeros((2, T, D))
    params = make_layer(kind).init(jax.random.key(0), x)["params"]
    k = GATES[kind] * U
    bias_shape = (2, k) if kind == "gru_after" else (k,)
    assert list(params) == ["kernel", "recurrent_kernel", "bias"]
    assert {n: p.shape for n, p in params.items()} == {"kernel": (D, k), "recurrent_kernel": (U, k),
                                                        "bias": bias_shape}

@pytest.mark.parametrize("kind", KINDS)
def test_initializers_draw_each_gate_block_on_its_own(kind):
    # recurrent_initializer='orthogonal': each (units, units) gate block B has B^T B = I (Keras' one
    # whole-matrix draw would give 0 to 0.86 singular values per block); kernel_initializer=
    # 'glorot_uniform' with the block's fans, bound sqrt(6 / (features + units)), different draws per gate.
    units, features, gates = 32, 24, GATES[kind]
    params = make_layer(kind, units=units).init(jax.random.key(0), jnp.zeros((2, T, features)))["params"]
    rec, kernel = np.asarray(params["recurrent_kernel"]), np.asarray(params["kernel"])
    bound = np.sqrt(6.0 / (features + units))
    for g in range(gates):
        block = rec[:, g * units:(g + 1) * units]
        np.testing.assert_allclose(block.T @ block, np.eye(units), atol=1e-5)
        w = kernel[:, g * units:(g + 1) * units]
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
        assert abs(w.std() - bound / np.sqrt(3.0)) < 0.1 * bound / np.sqrt(3.0)
    if gates > 1:
        assert not np.allclose(rec[:, :units], rec[:, units:2 * units])


def test_lstm_unit_forget_bias_and_use_bias_false():
    x = jnp.zeros((1, T, D))
    bias = np.asarray(layers.LSTM(U).init(jax.random.key(0), x)["params"]["bias"])
    np.testing.assert_array_equal(bias, np.r_[np.zeros(U), np.ones(U), np.zeros(2 * U)])
    bias = np.asarray(layers.LSTM(U, unit_forget_bias=False).init(jax.random.key(0), x)["params"]["bias"])
    np.testing.assert_array_equal(bias, np.zeros(4 * U))
    assert "bias" not in layers.GRU(U, use_bias=False).init(jax.random.key(0), x)["params"]


# ----------------------------------------------------------------------------------------------
# numpy references
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_numpy_reference(kind, return_sequences):
    x, w = randn(B, T, D), random_weights(kind)
    out = run(make_layer(kind, return_sequences=return_sequences), x, w)
    ref, _ = np_rnn(kind, x, w)
    expected = ref if return_sequences else ref[:, -1]
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_return_state_and_initial_state(kind):
    x, w = randn(B, T, D), random_weights(kind)
    n_states = 2 if kind == "lstm" else 1
    initial = [randn(B, U) for _ in range(n_states)]
    result = run(make_layer(kind, return_sequences=True, return_state=True), x, w, initial_state=initial)
    assert isinstance(result, list) and len(result) == 1 + n_states
    ref, states = np_rnn(kind, x, w, initial=initial)
    np.testing.assert_allclose(result[0], ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(result[1:], states):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result[1], ref[:, -1], rtol=1e-6, atol=1e-6)  # h is the last output


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("kind", ["lstm", "gru_after"])
def test_go_backwards_reads_the_reversed_sequence(kind, return_sequences):
    x, w = randn(B, T, D), random_weights(kind)
    out = run(make_layer(kind, go_backwards=True, return_sequences=return_sequences), x, w)
    ref, _ = np_rnn(kind, x[:, ::-1], w)  # a forward pass over the flipped inputs
    np.testing.assert_allclose(out, ref if return_sequences else ref[:, -1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_mask_carries_states_over_masked_steps(kind, go_backwards):
    x, w = randn(B, T, D), random_weights(kind)
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 1, 1, 1, 1]], bool)
    for zero in (False, True):
        out = run(make_layer(kind, return_sequences=True, go_backwards=go_backwards, zero_output_for_mask=zero),
                  x, w, mask=mask)
        ref, _ = np_rnn(kind, x, w, mask=mask, go_backwards=go_backwards, zero_output_for_mask=zero)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_matches_reversed_references(merge_mode, return_sequences):
    x = randn(B, T, D)
    wf, wb = random_weights("lstm"), random_weights("lstm")
    layer = layers.Bidirectional(layers.LSTM(U, return_sequences=return_sequences), merge_mode=merge_mode)
    variables = layer.init(jax.random.key(0), x)
    assert set(variables["params"]) == {"forward_lstm", "backward_lstm"}
    out = layer.apply({"params": {"forward_lstm": params_of(wf), "backward_lstm": params_of(wb)}}, x)
    yf, _ = np_rnn("lstm", x, wf)
    yb, _ = np_rnn("lstm", x[:, ::-1], wb)  # processing order; flipped back to input order below
    if return_sequences:
        yb = yb[:, ::-1]
    else:
        yf, yb = yf[:, -1], yb[:, -1]
    expected = {"concat": lambda: np.concatenate([yf, yb], -1), "sum": lambda: yf + yb,
                "ave": lambda: (yf + yb) / 2, "mul": lambda: yf * yb, None: lambda: [yf, yb]}[merge_mode]()
    if merge_mode is None:
        assert isinstance(out, list) and len(out) == 2
        for got, want in zip(out, expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_bidirectional_return_state_and_names_in_sequential():
    x = randn(B, T, D)
    layer = layers.Bidirectional(layers.GRU(U, return_state=True, name="enc"), merge_mode="sum")
    variables = layer.init(jax.random.key(0), x)
    assert set(variables["params"]) == {"forward_enc", "backward_enc"}
    out, h_f, h_b = layer.apply(variables, x)
    p = variables["params"]
    wf = [p["forward_enc"][n] for n in ("kernel", "recurrent_kernel", "bias")]
    wb = [p["backward_enc"][n] for n in ("kernel", "recurrent_kernel", "bias")]
    np.testing.assert_allclose(h_f, np_rnn("gru_after", x, wf)[1][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_b, np_rnn("gru_after", x[:, ::-1], wb)[1][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, h_f + h_b, rtol=1e-5, atol=1e-5)

    model = dlkit.Sequential([layers.Bidirectional(layers.LSTM(4, return_sequences=True)),
                              layers.Bidirectional(layers.LSTM(4))])
    names = jax.tree.map(jnp.shape, model.init(jax.random.key(0), x)["params"])
    assert set(names) == {"bidirectional", "bidirectional_1"}
    assert set(names["bidirectional"]) == {"forward_lstm", "backward_lstm"}
    assert names["bidirectional_1"]["forward_lstm"]["kernel"] == (8, 16)


def test_trainer_summary_and_weight_order_follow_keras():
    model = dlkit.Sequential([dlkit.Input((7,), dtype="int32"), layers.Embedding(50, 8),
                              layers.Bidirectional(layers.LSTM(4, return_sequences=True)), layers.GRU(3)])
    trainer = dlkit.Trainer(model, loss="mse")
    lines = []
    trainer.summary(print_fn=lines.append)
    text = "\n".join(lines)
    # Keras' counts: 50*8; 2 * (8*16 + 4*16 + 16); 8*9 + 3*9 + 2*9
    for row in ("(None, 7, 8)           400", "(None, 7, 8)           416", "(None, 3)              117"):
        assert row in text, text
    assert [w.shape for w in trainer.get_weights()] == [
        (50, 8), (8, 16), (4, 16), (16,), (8, 16), (4, 16), (16,), (8, 9), (3, 9), (2, 9)]


# ----------------------------------------------------------------------------------------------
# Keras 3 itself
# ----------------------------------------------------------------------------------------------

def _keras():
    return pytest.importorskip("keras")


def _keras_layer(keras, kind, **kwargs):
    if kind == "simple_rnn":
        return keras.layers.SimpleRNN(U, **kwargs)
    if kind == "lstm":
        return keras.layers.LSTM(U, **kwargs)
    return keras.layers.GRU(U, reset_after=kind == "gru_after", **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_matches_keras(kind):
    keras = _keras()
    x, w = randn(B, T, D), random_weights(kind)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    for kwargs, call_kwargs in [({"return_sequences": True}, {}),
                                ({"return_state": True, "go_backwards": True}, {}),
                                ({"return_sequences": True}, {"mask": mask})]:
        klayer = _keras_layer(keras, kind, **kwargs)
        klayer.build((B, T, D))
        klayer.set_weights(w)  # Keras' order: kernel, recurrent_kernel, bias
        expected = klayer(x, **call_kwargs)
        got = run(make_layer(kind, **kwargs), x, w, **call_kwargs)
        expected, got = (expected, got) if isinstance(got, list) else ([expected], [got])
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, np.asarray(e), rtol=1e-5, atol=1e-5)


def test_bidirectional_and_embedding_match_keras():
    keras = _keras()
    tokens = np.array([[3, 1, 4, 0, 0], [5, 9, 2, 6, 5], [8, 0, 0, 0, 0]], np.int32)
    emb_w = randn(10, D)
    wf, wb = random_weights("lstm"), random_weights("lstm")
    kemb = keras.layers.Embedding(10, D, mask_zero=True)
    kemb.build((B, T))
    kemb.set_weights([emb_w])
    kbi = keras.layers.Bidirectional(keras.layers.LSTM(U, return_sequences=True))
    kbi.build((B, T, D))
    kbi.set_weights(wf + wb)  # forward weights, then backward ones
    kmask = kemb.compute_mask(tokens)
    expected = np.asarray(kbi(kemb(tokens), mask=kmask))

    emb = layers.Embedding(10, D, mask_zero=True)
    x = emb.apply({"params": {"embeddings": emb_w}}, tokens)
    np.testing.assert_allclose(x, np.asarray(kemb(tokens)), rtol=1e-6)
    mask = emb.compute_mask(tokens)
    np.testing.assert_array_equal(mask, np.asarray(kmask))
    bi = layers.Bidirectional(layers.LSTM(U, return_sequences=True))
    got = bi.apply({"params": {"forward_lstm": params_of(wf), "backward_lstm": params_of(wb)}}, x, mask=mask)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Embedding and masks
# ----------------------------------------------------------------------------------------------

def test_embedding_lookup_casts_floats_and_masks():
    emb = layers.Embedding(7, 3)
    tokens = np.array([[1, 0, 6], [2, 2, 5]])
    variables = emb.init(jax.random.key(0), tokens)
    table = np.asarray(variables["params"]["embeddings"])
    assert table.shape == (7, 3) and np.abs(table).max() <= 0.05  # 'uniform': U(-0.05, 0.05)
    np.testing.assert_array_equal(emb.apply(variables, tokens), table[tokens])
    np.testing.assert_array_equal(emb.apply(variables, tokens.astype(np.float32)), table[tokens])
    assert emb.compute_mask(tokens) is None
    np.testing.assert_array_equal(layers.Embedding(7, 3, mask_zero=True).compute_mask(tokens), tokens != 0)


def test_trailing_padding_leaves_the_lstm_output_unchanged():
    emb = layers.Embedding(20, D, mask_zero=True)
    lstm = layers.LSTM(U, return_sequences=True)
    unpadded = np.array([[4, 7, 1, 9]], np.int32)
    padded = np.array([[4, 7, 1, 9, 0, 0, 0]], np.int32)
    ev = emb.init(jax.random.key(1), padded)
    lv = lstm.init(jax.random.key(2), emb.apply(ev, padded))

    def final(tokens, use_mask=True):
        x = emb.apply(ev, tokens)
        return np.asarray(lstm.apply(lv, x, mask=emb.compute_mask(tokens) if use_mask else None))

    short, long = final(unpadded), final(padded)
    np.testing.assert_allclose(long[:, :4], short, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(long[:, 4:], np.repeat(short[:, -1:], 3, axis=1), rtol=1e-6, atol=1e-6)
    assert not np.allclose(final(padded, use_mask=False)[:, -1], short[:, -1], atol=1e-4)  # the mask matters


def test_mask_in_a_functional_model():
    tokens = dlkit.Input((T,), dtype="int32")
    emb = layers.Embedding(12, D, mask_zero=True)
    x = emb(tokens)
    out = layers.GRU(U)(x, mask=emb.compute_mask(tokens))
    model = dlkit.Model(tokens, out)
    data = np.array([[3, 5, 0, 0, 0], [3, 5, 7, 0, 0]], np.int32)
    variables = model.init(jax.random.key(0), data)
    params = variables["params"]
    assert set(params) == {"embedding", "gru"}  # the mask node holds no weights
    y = np.asarray(model.apply(variables, data))
    x_short = layers.Embedding(12, D).apply({"params": params["embedding"]}, data[:, :2])
    y_short = np.asarray(layers.GRU(U).apply({"params": params["gru"]}, x_short))  # no padding at all
    np.testing.assert_allclose(y[0], y_short[0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(y[1], y_short[1], atol=1e-4)


# ----------------------------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------------------------

def _identity_rnn(**kwargs):
    """Linear SimpleRNN, no bias: h_t = (x_t * m_in) @ W + (h_{t-1} * m_rec) @ U."""
    return layers.SimpleRNN(32, activation="linear", use_bias=False, return_sequences=True, **kwargs)


def test_recurrent_dropout_mask_is_the_same_at_every_step():
    # W = 0, U = I, h_0 = 1: h_t = h_{t-1} * m, so h_t = m**t if the mask m is constant over time. A fresh
    # mask per step would leave different (and, over time, more) units at zero.
    layer = _identity_rnn(recurrent_dropout=0.5)
    params = {"kernel": jnp.zeros((1, 32)), "recurrent_kernel": jnp.eye(32)}
    x, h0 = jnp.zeros((8, 6, 1)), jnp.ones((8, 32))
    out = np.asarray(layer.apply({"params": params}, x, training=True, initial_state=h0,
                                 rngs={"dropout": jax.random.key(3)}))
    kept = out[:, 0] != 0
    assert 0.3 < kept.mean() < 0.7
    for t in range(6):
        np.testing.assert_array_equal(out[:, t] != 0, kept)
        np.testing.assert_allclose(out[:, t][kept], 2.0 ** (t + 1), rtol=1e-6)
    # the inference path ignores the rate: h_t = h_0
    np.testing.assert_array_equal(layer.apply({"params": params}, x, initial_state=h0), np.ones((8, 6, 32)))


def test_input_dropout_mask_is_the_same_at_every_step():
    # W = I, U = 0, x_t = 1: h_t = m, the same at every step.
    layer = _identity_rnn(dropout=0.5)
    params = {"kernel": jnp.eye(32), "recurrent_kernel": jnp.zeros((32, 32))}
    out = np.asarray(layer.apply({"params": params}, jnp.ones((8, 6, 32)), training=True,
                                 rngs={"dropout": jax.random.key(4)}))
    assert 0.3 < (out[:, 0] != 0).mean() < 0.7
    assert set(np.unique(out)) <= {0.0, 2.0}
    np.testing.assert_array_equal(out, np.repeat(out[:, :1], 6, axis=1))
    assert not np.array_equal(out[0, 0], out[1, 0])  # but a different mask per sequence


# Gate probes: linear activations, zero weights but an identity block for one gate in
# `recurrent_kernel` (or `kernel`), and biases that make h_t = m * h_{t-1} (or m * x_t) for that
# gate's dropout mask m: the mask shows in the output. LSTM's forget gate and GRU's update gate
# multiply by the previous state once more (c_t = f_t * c_{t-1}, h_t = z_t * h_{t-1}): h_t = m^(2^t - 1).
# (kind, gate, bias per gate block, exponent of m in h_t)
GATE_PROBES = [("lstm", 0, [0, 0, 1, 1], lambda t: t), ("lstm", 1, [0, 0, 0, 1], lambda t: 2 ** t - 1),
               ("lstm", 2, [1, 0, 0, 1], lambda t: t), ("lstm", 3, [1, 0, 1, 0], lambda t: t),
               ("gru_after", 0, [[0, 0, 0], [0, 0, 0]], lambda t: 2 ** t - 1),
               ("gru_after", 1, [[0, 0, 0], [0, 0, 1]], lambda t: t),
               ("gru_after", 2, [[0, 1, 0], [0, 0, 0]], lambda t: t)]
PROBE_UNITS, PROBE_STEPS = 32, 4


def _probe(kind, gate, bias, through="recurrent_kernel", key=5, training=True, **kwargs):
    """Outputs (batch, time, units) of ``kind`` whose only nonzero weight is an identity block for
    ``gate`` in ``through``; inputs and initial states are ones."""
    u, gates = PROBE_UNITS, GATES[kind]
    layer = make_layer(kind, activation="linear", recurrent_activation="linear", return_sequences=True,
                       **kwargs).clone(units=u)
    params = {"kernel": np.zeros((u, gates * u), np.float32), "recurrent_kernel": np.zeros((u, gates * u), np.float32),
              "bias": np.repeat(np.asarray(bias, np.float32), u, axis=-1)}
    params[through][:, gate * u:(gate + 1) * u] = np.eye(u)
    ones = jnp.ones((16, u))
    return np.asarray(layer.apply({"params": params}, jnp.ones((16, PROBE_STEPS, u)), training=training,
                                  initial_state=[ones] * (2 if kind == "lstm" else 1),
                                  rngs={"dropout": jax.random.key(key)}))


@pytest.mark.parametrize("kind", ["lstm", "gru_after"])
def test_recurrent_dropout_draws_one_mask_per_gate_constant_over_time(kind):
    kept = {}
    for _, gate, bias, exponent in (p for p in GATE_PROBES if p[0] == kind):
        out = _probe(kind, gate, bias, recurrent_dropout=0.5)
        kept[gate] = out[:, 0] != 0
        assert 0.3 < kept[gate].mean() < 0.7
        for t in range(PROBE_STEPS):  # inverted dropout: kept units scaled by 1 / (1 - 0.5), at every step
            np.testing.assert_array_equal(out[:, t], np.where(kept[gate], 2.0 ** exponent(t + 1), 0.0))
        # inference: no mask at all, h_t = 1
        np.testing.assert_array_equal(_probe(kind, gate, bias, training=False, recurrent_dropout=0.5), 1.0)
    masks = list(kept.values())
    assert len(masks) == GATES[kind]
    for a in range(len(masks)):
        for b in range(a):
            assert not np.array_equal(masks[a], masks[b]), (a, b)


def test_input_dropout_masks_are_per_gate_only_with_recurrent_dropout():
    # Keras: one input mask for every gate, unless recurrent_dropout > 0 (then one per gate).
    probes = [p for p in GATE_PROBES if p[0] == "lstm" and p[1] != 1]  # h_t = m * x_t for i, c, o
    for recurrent_dropout, shared in ((0.0, True), (0.5, False)):
        kept = []
        for kind, gate, bias, _ in probes:
            out = _probe(kind, gate, bias, through="kernel", dropout=0.5, recurrent_dropout=recurrent_dropout)
            np.testing.assert_array_equal(out, np.repeat(out[:, :1], PROBE_STEPS, axis=1))  # constant in time
            assert 0.3 < (out != 0).mean() < 0.7 and set(np.unique(out)) <= {0.0, 2.0}
            kept.append(out[:, 0] != 0)
        assert all(np.array_equal(k, kept[0]) for k in kept) == shared, recurrent_dropout


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_only_in_training(kind):
    x, w = randn(B, T, D), random_weights(kind)
    layer = make_layer(kind, dropout=0.5, recurrent_dropout=0.5, return_sequences=True)
    ref, _ = np_rnn(kind, x, w)
    for key in (0, 1):  # inference: deterministic, whatever the key, and equal to no dropout at all
        out = run(layer, x, w, training=False, rngs={"dropout": jax.random.key(key)})
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out, run(make_layer(kind, return_sequences=True), x, w))
    a = run(layer, x, w, training=True, rngs={"dropout": jax.random.key(0)})
    b = run(layer, x, w, training=True, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(a, ref, atol=1e-3) and not np.allclose(a, b, atol=1e-3)
    np.testing.assert_array_equal(a, run(layer, x, w, training=True, rngs={"dropout": jax.random.key(0)}))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="merge_mode"):
        layers.Bidirectional(layers.LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match="go_backwards"):
        layers.Bidirectional(layers.LSTM(3, go_backwards=True))
    with pytest.raises(ValueError, match="batch, time, features"):
        layers.LSTM(3).init(jax.random.key(0), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="dropout"):
        layers.GRU(3, dropout=1.0).init(jax.random.key(0), jnp.zeros((2, 4, 1)))
    with pytest.raises(ValueError, match="mask"):
        layers.GRU(3).init(jax.random.key(0), jnp.zeros((2, 4, 1)), mask=jnp.ones((2, 3), bool))


# ----------------------------------------------------------------------------------------------
# learning
# ----------------------------------------------------------------------------------------------

def test_lstm_learns_digits_as_sequences(digits8x8):
    x, y = digits8x8
    x = x.reshape(-1, 8, 8)  # 8 rows (time steps) of 8 pixels (features)
    split = 1400
    model = dlkit.Sequential([dlkit.Input((8, 8)), layers.LSTM(32), layers.Dense(10)])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(0.01),
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True),
                            metrics=["accuracy"])
    start = time.perf_counter()
    trainer.fit(x[:split], y[:split], batch_size=64, epochs=12, verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = trainer.evaluate(x[split:], y[split:], verbose=0)
    assert accuracy > 0.9, accuracy
    assert seconds < 30, seconds


def test_sequential_passes_the_embedding_mask_to_the_next_recurrent_layer():
    import dlkit
    from dlkit import layers as L  # noqa: N812 - Keras code's spelling

    tokens = np.array([[3, 5, 2, 0, 0, 0], [4, 1, 0, 0, 0, 0]], np.int32)
    model = dlkit.Sequential([L.Embedding(10, 4, mask_zero=True),
                              L.Bidirectional(L.LSTM(3, return_sequences=True)), L.LSTM(2)])
    trainer = dlkit.Trainer(model, loss="mse")
    padded = trainer.predict(tokens)
    np.testing.assert_allclose(padded[0], trainer.predict(tokens[:1, :3])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(padded[1], trainer.predict(tokens[1:, :2])[0], rtol=1e-5, atol=1e-6)
    unmasked = dlkit.Trainer(dlkit.Sequential([L.Embedding(10, 4), L.Bidirectional(L.LSTM(3, return_sequences=True)),
                                               L.LSTM(2)]), loss="mse")
    unmasked.build(tokens)
    unmasked.set_weights(trainer.get_weights())
    assert not np.allclose(unmasked.predict(tokens)[0], padded[0], atol=1e-4)
