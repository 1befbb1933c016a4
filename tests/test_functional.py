"""Keras' functional API: Input, layers called on symbolic tensors, Model(inputs, outputs), merge layers."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.symbolic import SymbolicTensor

LOGITS = dlkit.losses.SparseCategoricalCrossentropy(from_logits=True)


def _variables(trainer):
    return trainer.state.variables


# ---------------------------------------------------------------- Input and symbolic tensors
def test_input_is_a_symbolic_tensor_with_keras_shapes():
    inputs = dlkit.Input((28, 28, 1), name="image")
    assert isinstance(inputs, SymbolicTensor)
    assert inputs.shape == (None, 28, 28, 1)
    assert inputs.sample_shape == (28, 28, 1)
    assert dlkit.Input(5).shape == (None, 5)
    x = layers.Conv2D(8, 3)(inputs)
    assert isinstance(x, SymbolicTensor) and x.shape == (None, 26, 26, 8)
    assert layers.Flatten()(x).shape == (None, 26 * 26 * 8)
    from dlkit.models.sequential import Input
    assert Input is dlkit.Input is dlkit.layers.Input is dlkit.models.Input


def test_input_still_starts_a_sequential():
    model = dlkit.Sequential([dlkit.Input((6,)), layers.Dense(3)])
    assert model.input_shape == (6,)
    trainer = dlkit.Trainer(model, loss="mse")
    assert trainer.state.params["dense"]["kernel"].shape == (6, 3)


# ---------------------------------------------------------------- Model equals Sequential
def test_functional_mlp_equals_sequential_with_the_same_weights(digits8x8):
    x, _ = digits8x8
    sequential = dlkit.Sequential([dlkit.Input((64,)), layers.Dense(32, "relu"), layers.Dropout(0.2),
                                   layers.Dense(10)])
    inputs = dlkit.Input((64,))
    h = layers.Dense(32, "relu")(inputs)
    h = layers.Dropout(0.2)(h)
    functional = dlkit.Model(inputs, layers.Dense(10)(h))
    assert functional.layer_names == sequential.layer_names == ("dense", "dropout", "dense_1")
    seq_trainer = dlkit.Trainer(sequential, loss=LOGITS, seed=1)
    fun_trainer = dlkit.Trainer(functional, loss=LOGITS, seed=2)
    chex.assert_trees_all_equal_shapes(seq_trainer.state.params, fun_trainer.state.params)
    assert not np.allclose(seq_trainer.predict(x[:5]), fun_trainer.predict(x[:5]))
    fun_trainer.set_weights(seq_trainer.get_weights())
    chex.assert_trees_all_close(fun_trainer.predict(x[:50]), seq_trainer.predict(x[:50]), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- merge layers
def test_residual_connection_computes_x_plus_f_x():
    inputs = dlkit.Input((4,))
    block = layers.Dense(4, "tanh", name="block")
    outputs = layers.add([inputs, block(inputs)])
    model = dlkit.Model(inputs, outputs)
    trainer = dlkit.Trainer(model, loss="mse")
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(4, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    trainer.set_weights([kernel, bias])
    x = rng.normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(trainer.predict(x), x + np.tanh(x @ kernel + bias), rtol=1e-5, atol=1e-5)


def test_merge_layers_on_arrays():
    rng = np.random.default_rng(1)
    a, b, c = (rng.normal(size=(3, 5)).astype(np.float32) for _ in range(3))
    np.testing.assert_allclose(layers.add([a, b, c]), a + b + c, rtol=1e-6)
    np.testing.assert_allclose(layers.Add()([a, b]), a + b, rtol=1e-6)
    np.testing.assert_allclose(layers.subtract([a, b]), a - b, rtol=1e-6)
    np.testing.assert_allclose(layers.multiply([a, b, c]), a * b * c, rtol=1e-6)
    np.testing.assert_allclose(layers.average([a, b, c]), (a + b + c) / 3, rtol=1e-6)
    np.testing.assert_allclose(layers.maximum([a, b, c]), np.maximum(np.maximum(a, b), c))
    np.testing.assert_allclose(layers.minimum([a, b]), np.minimum(a, b))
    np.testing.assert_allclose(layers.concatenate([a, b[:, :2]]), np.concatenate([a, b[:, :2]], -1))
    np.testing.assert_allclose(layers.Concatenate(axis=1)([a, c]), np.concatenate([a, c], 1))
    with pytest.raises(ValueError, match="exactly 2"):
        layers.subtract([a, b, c])
    with pytest.raises(ValueError, match="list of tensors"):
        layers.Add()(a)


def test_merge_layers_symbolically():
    a, b = dlkit.Input((3,)), dlkit.Input((3,))
    assert layers.concatenate([a, b]).shape == (None, 6)
    assert layers.Concatenate(axis=1)([dlkit.Input((2, 4)), dlkit.Input((5, 4))]).shape == (None, 7, 4)
    for merge in (layers.add, layers.subtract, layers.multiply, layers.average, layers.maximum, layers.minimum):
        assert merge([a, b]).shape == (None, 3)
    model = dlkit.Model([a, b], [layers.subtract([a, b]), layers.maximum([a, b])])
    x1, x2 = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 3), np.float32)
    diff, top = model.apply({}, (x1, x2))
    np.testing.assert_allclose(diff, x1 - x2)
    np.testing.assert_allclose(top, np.maximum(x1, x2))


# ---------------------------------------------------------------- several inputs
def test_two_named_inputs_and_concatenate_train_on_digits(digits8x8):
    x, y = digits8x8
    left, right = dlkit.Input((32,), name="top"), dlkit.Input((32,), name="bottom")
    merged = layers.concatenate([layers.Dense(32, "relu")(left), layers.Dense(32, "relu")(right)])
    outputs = layers.Dense(10)(merged)
    model = dlkit.Model({"top": left, "bottom": right}, outputs)
    assert model.input_shape == {"top": (32,), "bottom": (32,)}
    trainer = dlkit.Trainer(model, optimizer="adam", loss=LOGITS, metrics=["accuracy"])
    assert trainer.state is not None  # built from model.input_shape, before any data
    data = {"top": x[:, :32], "bottom": x[:, 32:]}
    train = {k: v[:1400] for k, v in data.items()}
    test = {k: v[1400:] for k, v in data.items()}
    trainer.fit(train, y[:1400], epochs=15, batch_size=32, verbose=0)
    assert trainer.evaluate(test, y[1400:], verbose=0)[1] > 0.9
    assert trainer.predict({k: v[:3] for k, v in test.items()}).shape == (3, 10)


def test_a_list_of_inputs_takes_a_tuple_or_a_dict_keyed_by_input_names():
    a, b = dlkit.Input((2,), name="a"), dlkit.Input((3,))
    model = dlkit.Model([a, b], layers.concatenate([a, b]))
    assert model.input_shape == ((2,), (3,))
    assert model.input_names == ["a", "input_layer"]
    x1, x2 = np.ones((4, 2), np.float32), np.zeros((4, 3), np.float32)
    expected = np.concatenate([x1, x2], -1)
    np.testing.assert_array_equal(model.apply({}, (x1, x2)), expected)
    np.testing.assert_array_equal(model.apply({}, [x1, x2]), expected)
    np.testing.assert_array_equal(model.apply({}, {"a": x1, "input_layer": x2}), expected)
    trainer = dlkit.Trainer(model, loss="mse")
    np.testing.assert_array_equal(trainer.predict([x1, x2]), expected)
    with pytest.raises(ValueError, match="2 inputs"):
        model.apply({}, x1)
    with pytest.raises(ValueError, match=r"Input 'a' expects samples of shape \(2,\)"):
        model.apply({}, (x2, x2))


# ---------------------------------------------------------------- shared layers, training flag, nesting
def test_a_layer_called_twice_shares_one_set_of_weights():
    a, b = dlkit.Input((5,)), dlkit.Input((5,))
    shared = layers.Dense(3)
    model = dlkit.Model([a, b], layers.add([shared(a), shared(b)]))
    trainer = dlkit.Trainer(model, loss="mse")
    params = trainer.state.params
    assert list(params) == ["dense"]
    assert len(trainer.get_weights()) == 2
    kernel, bias = (np.asarray(params["dense"][k]) for k in ("kernel", "bias"))
    rng = np.random.default_rng(2)
    x1, x2 = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(trainer.predict((x1, x2)), (x1 + x2) @ kernel + 2 * bias, rtol=1e-5, atol=1e-5)


def test_names_follow_call_order_and_user_names():
    inputs = dlkit.Input((4,))
    late = layers.Dense(2)  # created first, called last
    h = layers.Dense(8, name="hidden")(inputs)
    h = layers.Dense(8)(h)
    model = dlkit.Model(inputs, late(h))
    assert model.layer_names == ("hidden", "dense", "dense_1")
    with pytest.raises(ValueError, match="unique"):
        dlkit.Model(inputs, layers.Dense(2, name="x")(layers.Dense(2, name="x")(inputs)))


def test_training_flag_reaches_layers():
    inputs = dlkit.Input((1000,))
    model = dlkit.Model(inputs, layers.Dropout(0.5)(inputs))
    x = jnp.ones((2, 1000))
    np.testing.assert_array_equal(model.apply({}, x, training=False), x)
    dropped = model.apply({}, x, training=True, rngs={"dropout": jax.random.key(0)})
    assert 0.3 < float(jnp.mean(dropped == 0)) < 0.7


def test_models_and_sequentials_are_layers_of_a_graph():
    inner_in = dlkit.Input((4,))
    inner = dlkit.Model(inner_in, layers.Dense(3, name="inner_dense")(inner_in), name="encoder")
    stack = dlkit.Sequential([layers.Dense(2)])
    inputs = dlkit.Input((4,))
    code = inner(inputs)
    assert code.shape == (None, 3)
    model = dlkit.Model(inputs, stack(code))
    assert model.layer_names == ("encoder", "sequential")
    trainer = dlkit.Trainer(model, loss="mse")
    assert set(trainer.state.params) == {"encoder", "sequential"}
    assert trainer.predict(np.ones((5, 4), np.float32)).shape == (5, 2)


# ---------------------------------------------------------------- errors at graph-building time
def test_shape_errors_surface_when_the_graph_is_built():
    with pytest.raises(ValueError, match=r"Add.*same shape.*\(None, 3\), \(None, 4\)"):
        layers.add([dlkit.Input((3,)), dlkit.Input((4,))])
    with pytest.raises(ValueError, match=r"Concatenate.*match except"):
        layers.concatenate([dlkit.Input((3, 2)), dlkit.Input((4, 5))])
    with pytest.raises(ValueError, match="Conv2D"):
        layers.Conv2D(4, 3)(dlkit.Input((5,)))
    shared = layers.Dense(3)
    shared(dlkit.Input((4,)))
    with pytest.raises(ValueError, match="called again"):
        shared(dlkit.Input((6,)))


def test_graph_errors():
    a, b = dlkit.Input((3,)), dlkit.Input((3,))
    with pytest.raises(ValueError, match="Graph disconnected"):
        dlkit.Model(a, layers.add([a, b]))
    with pytest.raises(ValueError, match="mix of symbolic tensors and arrays"):
        layers.add([a, np.ones((2, 3), np.float32)])
    with pytest.raises(ValueError, match="symbolic tensors"):
        dlkit.Model(a, np.ones(3))
    with pytest.raises(TypeError, match="no value"):
        np.asarray(a)


# ---------------------------------------------------------------- summary, outputs
def test_summary_before_data_shows_keras_shapes_and_names():
    inputs = dlkit.Input((28, 28, 1))
    x = layers.Conv2D(8, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, name="logits")(x)
    trainer = dlkit.Trainer(dlkit.Model(inputs, outputs, name="cnn"), loss=LOGITS)
    lines = []
    trainer.summary(print_fn=lines.append)
    text = lines[0]
    assert 'Model: "cnn"' in text
    rows = [line.split() for line in text.splitlines()]
    names = [r[0] for r in rows if len(r) > 2 and r[1].startswith("(") and r[2].startswith("(None")]
    assert names == ["input_layer", "conv2d", "max_pooling2d", "flatten", "logits"]
    assert "(None, 28, 28, 1)" in text and "(None, 26, 26, 8)" in text and "(None, 13, 13, 8)" in text
    assert "(None, 1352)" in text and "(None, 10)" in text
    assert "Total params: 13,610" in text  # 80 + 1352 * 10 + 10


def test_multi_input_summary_before_data():
    a, b = dlkit.Input((3,), name="a"), dlkit.Input((5,), name="b")
    model = dlkit.Model([a, b], layers.Dense(2)(layers.concatenate([a, b])))
    lines = []
    dlkit.Trainer(model, loss="mse").summary(print_fn=lines.append)
    assert "a (InputLayer)" in lines[0] and "b (InputLayer)" in lines[0] and "(None, 8)" in lines[0]


def test_multi_output_model_returns_a_dict(digits8x8):
    x, _ = digits8x8
    inputs = dlkit.Input((64,))
    h = layers.Dense(16, "relu")(inputs)
    model = dlkit.Model(inputs, {"digit": layers.Dense(10)(h), "parity": layers.Dense(1, "sigmoid")(h)})
    assert model.output_shape == {"digit": (None, 10), "parity": (None, 1)}
    trainer = dlkit.Trainer(model, loss="mse")
    out = trainer.predict(x[:37], batch_size=16)
    assert set(out) == {"digit", "parity"}
    assert out["digit"].shape == (37, 10) and out["parity"].shape == (37, 1)
    direct = model.apply(trainer.state.variables, x[:37])
    chex.assert_trees_all_close(out, jax.tree.map(np.asarray, dict(direct)), rtol=1e-5, atol=1e-5)
    pair = dlkit.Model(inputs, [layers.Dense(2)(h), layers.Dense(3)(h)])
    outs = dlkit.Trainer(pair, loss="mse").predict(x[:4])
    assert [o.shape for o in outs] == [(4, 2), (4, 3)]
