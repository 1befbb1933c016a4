"""Transfer learning: freeze a base, train a head, unfreeze the top, re-compile with a lower rate."""
import chex
import jax
import numpy as np
import pytest

import dlkit
from dlkit import layers


def base():
    return dlkit.Sequential([layers.Dense(32, "relu"), layers.BatchNormalization(), layers.Dense(16, "relu")],
                            name="base")


def model():
    return dlkit.Sequential([dlkit.Input((64,)), base(), layers.Dense(10, name="head")])


def trainer():
    return dlkit.Trainer(model(), optimizer=dlkit.optimizers.Adam(1e-2),
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def test_frozen_params_and_batch_statistics_stay_bitwise_unchanged(digits8x8, capsys):
    x, y = digits8x8
    t = trainer()
    t.freeze("base")
    before = jax.device_get(t.state.variables)
    t.fit(x[:500], y[:500], epochs=2, verbose=0)
    after = jax.device_get(t.state.variables)
    chex.assert_trees_all_equal(after["params"]["base"], before["params"]["base"])
    chex.assert_trees_all_equal(after["batch_stats"], before["batch_stats"])  # frozen BN: inference mode
    assert not np.allclose(after["params"]["head"]["kernel"], before["params"]["head"]["kernel"])
    t.summary()
    text = capsys.readouterr().out
    head = 16 * 10 + 10
    assert f"Trainable params: {head:,}" in text


def test_unfreezing_the_top_of_a_frozen_base(digits8x8):
    x, y = digits8x8
    t = trainer()
    t.freeze("base")
    t.fit(x[:300], y[:300], epochs=1, verbose=0)
    t.unfreeze("base/dense_1")  # the top layer of the base
    t.compile(optimizer=dlkit.optimizers.Adam(1e-4))  # lower rate, weights kept
    assert t.learning_rate == pytest.approx(1e-4)
    before = jax.device_get(t.state.params)
    t.fit(x[:300], y[:300], epochs=1, verbose=0)
    after = jax.device_get(t.state.params)
    chex.assert_trees_all_equal(after["base"]["dense"], before["base"]["dense"])
    assert not np.allclose(after["base"]["dense_1"]["kernel"], before["base"]["dense_1"]["kernel"])


def test_freezing_an_unknown_part_lists_the_known_ones():
    with pytest.raises(ValueError, match="No sub-module 'bass'.*base/dense"):
        trainer().freeze("bass")


@pytest.mark.slow  # ~50 s: it pretrains and fine-tunes a BatchNormalization ResNet three times
def test_transfer_beats_training_from_scratch_on_20_labels(load_example):
    example = load_example("fine_tuning")
    results = example.main(verbose=0)  # (frozen base, fine-tuned, from scratch) test accuracy, 3 draws of 20 labels
    assert all(frozen > scratch and fine_tuned > scratch for frozen, fine_tuned, scratch in results), results
    assert np.mean([f - s for _, f, s in results]) > 0.05, results  # measured: 0.12 - 0.32
    assert np.mean([f - frozen for frozen, f, _ in results]) >= 0, results  # unfreezing the top block helps
