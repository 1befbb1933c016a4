"""The LSTM example reads digits row by row and reaches >= 0.95 test accuracy in 10 epochs (slow: ~20-30 s on CPU)."""
import importlib.util
import pathlib

import pytest


def load_example(name: str):
    path = pathlib.Path(__file__).parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_example_lstm_reaches_95_percent(capsys):
    accuracy = load_example("lstm_mnist_rows").main(epochs=10)
    out = capsys.readouterr().out
    assert "Epoch 10/10" in out and "test accuracy" in out
    assert accuracy >= 0.95
