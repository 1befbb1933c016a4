"""The cuDNN LSTM path on CPU: when it is chosen, the weights' repacking, and every output and gradient of
the glue around the kernel, with ``jax.experimental.rnn.lstm_ref`` (cuDNN's equations in plain JAX) in the
kernel's place. Only the kernel call itself needs a GPU (``scripts/gpu_check.py``)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn

import dlkit
from dlkit import layers
from dlkit.layers import cudnn

B, T, D, U = 3, 6, 4, 5
RNG = np.random.default_rng(3)
X = RNG.standard_normal((B, T, D)).astype(np.float32)


# ---------------------------------------------------------------------------------------- selection
def test_default_lstm_takes_cudnn_on_gpu_only():
    lstm = layers.LSTM(U)
    assert cudnn.use_cudnn(lstm, "gpu") is True
    assert cudnn.unmet(lstm, "gpu") == []
    assert cudnn.use_cudnn(lstm, "cpu") is False
    assert cudnn.use_cudnn(lstm, "tpu") is False


@pytest.mark.parametrize("overrides", [
    dict(activation="relu"), dict(activation=jax.nn.relu), dict(recurrent_activation="tanh"),
    dict(recurrent_activation=jax.nn.hard_sigmoid), dict(use_bias=False), dict(unroll=True),
    dict(recurrent_dropout=0.25), dict(use_cudnn=False)])
def test_each_layer_condition_turns_cudnn_off(overrides):
    assert cudnn.use_cudnn(layers.LSTM(U), "gpu") is True
    assert cudnn.use_cudnn(layers.LSTM(U, **overrides), "gpu") is False


@pytest.mark.parametrize("call", [dict(mask=np.ones((B, T), bool)), dict(dtype=jnp.bfloat16),
                                  dict(dtype=jnp.float16), dict(precision="bfloat16"), dict(precision="fastest")])
def test_each_call_condition_turns_cudnn_off(call):
    assert cudnn.use_cudnn(layers.LSTM(U), "gpu", **{"mask": None, "dtype": jnp.float32, "precision": None}) is True
    assert cudnn.use_cudnn(layers.LSTM(U), "gpu", **{"mask": None, "dtype": jnp.float32, "precision": None,
                                                      **call}) is False


@pytest.mark.parametrize("overrides", [
    dict(activation=jnp.tanh), dict(activation=dlkit.activations.tanh), dict(recurrent_activation=jax.nn.sigmoid),
    dict(dropout=0.5), dict(go_backwards=True), dict(return_sequences=True), dict(return_state=True),
    dict(unit_forget_bias=False), dict(zero_output_for_mask=True), dict(use_cudnn=True)])
def test_what_keras_keeps_on_cudnn(overrides):
    assert cudnn.use_cudnn(layers.LSTM(U, **overrides), "gpu", precision="float32") is True


def test_gru_and_simple_rnn_have_no_cudnn_kernel():
    for layer in (layers.GRU(U), layers.SimpleRNN(U)):
        assert cudnn.use_cudnn(layer, "gpu") is False
        assert "LSTM only" in cudnn.unmet(layer, "gpu")[0]


def test_use_cudnn_true_raises_naming_the_unmet_conditions():
    with pytest.raises(ValueError, match=r"a GPU backend \(this is 'cpu'\).*use_cudnn='auto'"):
        cudnn.use_cudnn(layers.LSTM(U, use_cudnn=True), "cpu")
    with pytest.raises(ValueError, match="unroll=False; no mask"):
        cudnn.use_cudnn(layers.LSTM(U, use_cudnn=True, unroll=True), "gpu", mask=np.ones((B, T), bool))
    with pytest.raises(ValueError, match="use_cudnn must be 'auto', True or False"):
        layers.LSTM(U, use_cudnn="yes")


def test_the_layer_asks_on_this_machine():
    lstm = layers.LSTM(U, use_cudnn=True)
    with pytest.raises(ValueError, match="use_cudnn=True"):
        lstm.init(jax.random.key(0), X)
    assert layers.LSTM(U).init(jax.random.key(0), X)["params"]["kernel"].shape == (D, 4 * U)


# ---------------------------------------------------------------------------------------- repacking
def keras_weights(seed=0):
    r = np.random.default_rng(seed)
    return (r.standard_normal((D, 4 * U)).astype(np.float32), r.standard_normal((U, 4 * U)).astype(np.float32),
            r.standard_normal(4 * U).astype(np.float32))


def test_repacked_weights_unpack_to_dlkit_kernels_exactly():
    kernel, recurrent, bias = keras_weights()
    flat = cudnn.cudnn_weights(jnp.asarray(kernel), jnp.asarray(recurrent), jnp.asarray(bias))
    assert flat.shape == (rnn.get_num_params_in_lstm(D, U, 1, False),)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, D, U, 1, False)
    np.testing.assert_array_equal(w_ih[0], kernel.T)  # (4 units, features), gates i, f, g(=c), o
    np.testing.assert_array_equal(w_hh[0], recurrent.T)
    np.testing.assert_array_equal(b_ih[0], bias)
    np.testing.assert_array_equal(b_hh[0], np.zeros(4 * U))
    for gate in range(4):  # gate g's rows are Keras' g-th column block
        np.testing.assert_array_equal(w_ih[0][gate * U:(gate + 1) * U], kernel[:, gate * U:(gate + 1) * U].T)


def lstm_params(layer, seed=1):
    params = layer.init(jax.random.key(seed), X)["params"]
    bias = np.random.default_rng(seed).standard_normal(4 * U).astype(np.float32)  # not the zeros/ones init
    return {**params, "bias": jnp.asarray(bias)}


def test_lstm_ref_on_repacked_weights_equals_dlkit():
    layer = layers.LSTM(U, return_sequences=True, return_state=True, use_cudnn=False)
    params = lstm_params(layer)
    ours, h, c = layer.apply({"params": params}, X)
    flat = cudnn.cudnn_weights(params["kernel"], params["recurrent_kernel"], params["bias"])
    zeros = jnp.zeros((1, B, U))
    y, h_n, c_n = rnn.lstm_ref(jnp.asarray(X), zeros, zeros, *rnn.unpack_lstm_weights(flat, D, U, 1, False),
                               jnp.full((B,), T, jnp.int32), D, U, 1, 0.0, False)
    np.testing.assert_allclose(ours, y, atol=1e-5)
    np.testing.assert_allclose(h, h_n[0], atol=1e-5)
    np.testing.assert_allclose(c, c_n[0], atol=1e-5)


# ---------------------------------------------------------------------------------------- the glue
@pytest.fixture
def fake_gpu(monkeypatch):
    """The layers believe they run on a GPU, with ``lstm_ref`` for the kernel; records each kernel call."""
    calls, (ref_fwd, ref_bwd) = [], cudnn.reference_kernels()

    def fwd(*args):
        calls.append("fwd")
        return ref_fwd(*args)

    def bwd(*args):
        calls.append("bwd")
        return ref_bwd(*args)

    monkeypatch.setattr(cudnn, "backend", lambda: "gpu")
    monkeypatch.setattr(cudnn, "kernels", lambda: (fwd, bwd))
    return calls


def both_paths(fn, **config):
    """``fn(layer)`` for the LSTM ``config`` with ``use_cudnn=False`` and ``'auto'`` (on the fake GPU: cuDNN
    where Keras' conditions hold)."""
    return fn(layers.LSTM(U, use_cudnn=False, **config)), fn(layers.LSTM(U, **config))


@pytest.mark.parametrize("config", [dict(), dict(return_sequences=True), dict(go_backwards=True),
                                    dict(go_backwards=True, return_sequences=True, return_state=True),
                                    dict(return_state=True)])
def test_cudnn_glue_gives_dlkit_outputs_and_gradients(fake_gpu, config):
    params = lstm_params(layers.LSTM(U))
    h0, c0 = RNG.standard_normal((2, B, U)).astype(np.float32)

    def run(layer):
        def loss(params, x, h0, c0):
            out = layer.apply({"params": params}, x, initial_state=[h0, c0])
            return sum(jnp.sum(jnp.sin(o)) for o in (out if isinstance(out, list) else [out])), out
        (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(params, X, h0, c0)
        return out, grads

    ours, theirs = both_paths(run, **config)
    assert fake_gpu.count("fwd") >= 1 and fake_gpu.count("bwd") >= 1  # the cuDNN path ran, backward included
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), ours, theirs)


def test_cudnn_glue_applies_keras_input_dropout(fake_gpu):
    params = lstm_params(layers.LSTM(U))
    rngs = {"dropout": jax.random.key(5)}
    ours, theirs = both_paths(lambda layer: layer.apply({"params": params}, X, training=True, rngs=rngs),
                              dropout=0.5, return_sequences=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    quiet = layers.LSTM(U, return_sequences=True).apply({"params": params}, X)
    assert np.abs(np.asarray(theirs) - np.asarray(quiet)).max() > 1e-2  # the dropout did act


def test_cudnn_glue_under_vmap_of_grad_runs_member_by_member(fake_gpu):
    members = jax.tree.map(lambda *p: jnp.stack(p), *(lstm_params(layers.LSTM(U), seed) for seed in (1, 2)))
    xs = jnp.stack([X, X[::-1]])

    def run(layer):
        grad = jax.grad(lambda p, x: jnp.sum(layer.apply({"params": p}, x) ** 2))
        return jax.jit(jax.vmap(grad))(members, xs)

    ours, theirs = both_paths(run, return_sequences=True)
    assert "bwd" in fake_gpu
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), ours, theirs)


def test_masked_and_bidirectional_calls_on_a_gpu(fake_gpu):
    mask = np.ones((B, T), bool)
    mask[0, 4:] = False
    params = lstm_params(layers.LSTM(U))
    fake_gpu.clear()  # init ran the kernel
    ours, theirs = both_paths(lambda layer: layer.apply({"params": params}, X, mask=mask))
    assert fake_gpu == []  # a mask keeps dlkit's recurrence, as Keras' JAX backend does
    np.testing.assert_allclose(ours, theirs, atol=0)

    def bidirectional(layer):
        model = layers.Bidirectional(layer)
        variables = model.init(jax.random.key(0), X)
        fake_gpu.clear()
        return model.apply(variables, X)
    ours, theirs = both_paths(bidirectional, return_sequences=True)
    assert fake_gpu == ["fwd", "fwd"]  # both directions, each a cuDNN call
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_fit_on_the_cudnn_path_learns_as_dlkit_does(fake_gpu):
    x = RNG.standard_normal((64, T, D)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int32)

    def fit(layer):
        trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((T, D)), layer, layers.Dense(2)]), optimizer="adam",
                                loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), seed=0)
        return trainer.fit(x, y, batch_size=16, epochs=2, verbose=0).history["loss"]

    ours, theirs = both_paths(fit)
    assert "bwd" in fake_gpu
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
