"""x as arrays, as a dict of named inputs, or as an iterable of batches."""
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit import layers


class Loader:
    """A re-iterable batch source, like a data loader: each ``iter()`` starts a new shuffled pass."""

    def __init__(self, x, y, batch_size, seed=0):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)

    def __iter__(self):
        order = self.rng.permutation(len(self.x))
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.x[index], self.y[index]


def classifier():
    return dlkit.Trainer(dlkit.Sequential([layers.Dense(32, "relu"), layers.Dense(10)]),
                         optimizer=dlkit.optimizers.Adam(0.005),
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def test_fit_on_an_iterable_of_batches_learns(digits8x8):
    x, y = digits8x8
    trainer = classifier()
    history = trainer.fit(Loader(x[:1400], y[:1400], 50), epochs=6, verbose=0,
                          validation_data=Loader(x[1400:], y[1400:], 100))
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    # streaming evaluation equals evaluation on the arrays (the last batch of 97 included exactly)
    np.testing.assert_allclose(trainer.evaluate(Loader(x[1400:], y[1400:], 100), verbose=0),
                               trainer.evaluate(x[1400:], y[1400:], verbose=0), rtol=1e-5)
    np.testing.assert_allclose(trainer.predict(b for b in [x[:7], x[7:20]]), trainer.predict(x[:20]), rtol=1e-6)


def test_a_generator_is_used_up_after_one_epoch(digits8x8):
    x, y = digits8x8
    batches = ((x[i:i + 64], y[i:i + 64]) for i in range(0, 640, 64))
    trainer = classifier()
    trainer.fit(batches, epochs=1, verbose=0)  # one pass works
    with pytest.raises(ValueError, match="yielded no batches.*__iter__"):
        trainer.fit(batches, epochs=1, verbose=0)


def test_stream_batches_must_be_tuples(digits8x8):
    x, _ = digits8x8
    with pytest.raises(ValueError, match=r"tuple \(x, y\)"):
        classifier().fit(iter([x[:10]]), verbose=0)


class TwoInputs(nn.Module):
    @nn.compact
    def __call__(self, inputs, training: bool = False):
        left = layers.Dense(16, "relu", name="left")(inputs["pixels"])
        right = layers.Dense(4, "relu", name="right")(inputs["parity"])
        return layers.Dense(10, name="out")(jnp.concatenate([left, right], -1))


def test_a_dict_of_named_inputs(digits8x8):
    x, y = digits8x8
    inputs = {"pixels": x, "parity": np.eye(2, dtype=np.float32)[y % 2]}
    trainer = dlkit.Trainer(TwoInputs(), optimizer="adam",
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    trainer.fit({k: v[:1400] for k, v in inputs.items()}, y[:1400], epochs=10, verbose=0)
    assert trainer.evaluate({k: v[1400:] for k, v in inputs.items()}, y[1400:], verbose=0)[1] > 0.9
    assert trainer.predict({k: v[:3] for k, v in inputs.items()}).shape == (3, 10)


def test_a_dict_of_dataframe_columns_feeds_a_multi_input_model():
    """Keras' structured-data recipe: one ``Input(shape=(1,), name=column)`` per column, ``x`` a dict of
    pandas columns (each ``(n,)``, fed to the ``(1,)`` input as Keras does)."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    columns = ["mean_radius", "mean_texture", "mean_smoothness", "worst_concavity", "worst_area"]
    frame[columns] = (frame[columns] - frame[columns].mean()) / frame[columns].std()
    train, test = frame.iloc[:450], frame.iloc[450:]

    def trainer():
        inputs = {c: dlkit.Input((1,), name=c) for c in columns}
        hidden = layers.Dense(16, activation="relu")(layers.Concatenate()(list(inputs.values())))
        model = dlkit.Model(inputs, layers.Dense(1, activation="sigmoid")(hidden))
        return dlkit.Trainer(model, optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])

    def features(part, as_arrays=False):
        return {c: part[c].to_numpy()[:, None] if as_arrays else part[c] for c in columns}

    from_frame = trainer()
    history = from_frame.fit(features(train), train["target"], epochs=20, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert from_frame.evaluate(features(test), test["target"], return_dict=True)["accuracy"] > 0.85
    from_arrays = trainer()
    from_arrays.fit(features(train, True), train["target"].to_numpy(), epochs=20, batch_size=32, verbose=0)
    np.testing.assert_array_equal(from_frame.predict(features(test)), from_arrays.predict(features(test, True)))
