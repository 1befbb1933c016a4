"""The README's main job: the example CNN reaches >= 0.97 test accuracy on the bundled digits in 3 epochs."""

import numpy as np

import dlkit


def test_bundled_digits_are_the_real_mnist_test_set():
    x, y = dlkit.datasets.load_digits()
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32 and y.shape == (10000,)
    assert 0.0 == x.min() and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_example_cnn_reaches_97_percent(capsys, load_example):
    accuracy = load_example("mnist_cnn").main(epochs=3)
    out = capsys.readouterr().out
    assert "Epoch 3/3" in out and "test accuracy" in out
    assert accuracy >= 0.97
