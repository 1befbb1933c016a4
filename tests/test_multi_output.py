"""Several outputs: a loss per output, loss_weights summed into one loss, Keras' log names."""
import numpy as np
import pytest

import dlkit
from dlkit import layers


def two_headed():
    inputs = dlkit.Input((64,), name="pixels")
    hidden = layers.Dense(32, "relu")(inputs)
    digit = layers.Dense(10, name="digit")(hidden)
    parity = layers.Dense(1, "sigmoid", name="parity")(hidden)
    return dlkit.Model(inputs, {"digit": digit, "parity": parity})


def test_each_output_learns_and_logs_under_keras_names(digits8x8):
    x, y = digits8x8
    targets = {"digit": y, "parity": (y % 2).astype(np.float32)}
    trainer = dlkit.Trainer(
        two_headed(), optimizer=dlkit.optimizers.Adam(5e-3),
        loss={"digit": dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), "parity": "binary_crossentropy"},
        loss_weights={"digit": 1.0, "parity": 0.5}, metrics={"digit": ["accuracy"], "parity": ["accuracy"]})
    history = trainer.fit(x[:1400], {k: v[:1400] for k, v in targets.items()}, epochs=10, validation_split=0.2,
                          verbose=0)
    assert set(history.history) == {
        "loss", "digit_loss", "parity_loss", "digit_accuracy", "parity_accuracy",
        "val_loss", "val_digit_loss", "val_parity_loss", "val_digit_accuracy", "val_parity_accuracy"}
    logs = trainer.evaluate(x[1400:], {k: v[1400:] for k, v in targets.items()}, verbose=0, return_dict=True)
    assert logs["digit_accuracy"] > 0.9 and logs["parity_accuracy"] > 0.85
    # the total is the weighted sum of the per-output losses
    np.testing.assert_allclose(logs["loss"], logs["digit_loss"] + 0.5 * logs["parity_loss"], rtol=1e-5)
    predictions = trainer.predict(x[:4])
    assert type(predictions) is dict and predictions["digit"].shape == (4, 10) and predictions["parity"].shape == (4, 1)


def test_a_loss_weight_of_zero_leaves_that_output_untrained(digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(two_headed(), optimizer=dlkit.optimizers.Adam(5e-3),
                            loss={"digit": dlkit.losses.SparseCategoricalCrossentropy(True),
                                  "parity": "binary_crossentropy"},
                            loss_weights={"digit": 1.0, "parity": 0.0})
    trainer.build(x[:1])
    before = np.array(trainer.state.params["parity"]["kernel"])
    trainer.fit(x[:500], {"digit": y[:500], "parity": (y[:500] % 2).astype(np.float32)}, epochs=2, verbose=0)
    np.testing.assert_array_equal(np.array(trainer.state.params["parity"]["kernel"]), before)


def test_a_missing_loss_or_target_is_named(digits8x8):
    x, y = digits8x8
    with pytest.raises(ValueError, match="No loss for output 'parity'"):
        dlkit.Trainer(two_headed(), loss={"digit": "mse"}).fit(x[:10], {"digit": y[:10], "parity": y[:10]},
                                                               verbose=0)
    with pytest.raises(ValueError, match="no entry for output 'parity'"):
        dlkit.Trainer(two_headed(), loss="mse").fit(x[:10], {"digit": y[:10]}, verbose=0)


def test_wide_and_deep_example_beats_the_mean_baseline(load_example):
    module = load_example("wide_and_deep")
    result = module.main(epochs=60, verbose=0)
    assert result["test_mae"] < 0.85 * result["baseline_mae"]
