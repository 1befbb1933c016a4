"""The LSTM example reads digits row by row and reaches >= 0.95 test accuracy in 10 epochs (slow: ~20-30 s on CPU)."""

import pytest


@pytest.mark.slow
def test_example_lstm_reaches_95_percent(capsys, load_example):
    accuracy = load_example("lstm_mnist_rows").main(epochs=10)
    out = capsys.readouterr().out
    assert "Epoch 10/10" in out and "test accuracy" in out
    assert accuracy >= 0.95
