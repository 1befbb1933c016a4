"""The LSTM example reads digits row by row and reaches >= 0.95 test accuracy in 15 epochs (slow: ~30 s on CPU;
measured 0.9540 with per-gate initialisation, seed 0; 0.961-0.967 with seeds 1-3)."""

import pytest


@pytest.mark.slow
def test_example_lstm_reaches_95_percent(capsys, load_example):
    accuracy = load_example("lstm_mnist_rows").main(epochs=15)
    out = capsys.readouterr().out
    assert "Epoch 15/15" in out and "test accuracy" in out
    assert accuracy >= 0.95
