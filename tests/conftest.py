import importlib.util
import pathlib

import numpy as np
import pytest
from sklearn import datasets as skdatasets


@pytest.fixture(scope="session")
def digits8x8():
    """scikit-learn's 8x8 digits (1797 real samples), scaled to [0, 1], shuffled once."""
    x, y = skdatasets.load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    return (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)


@pytest.fixture(scope="session")
def load_example():
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    def load(name: str):
        path = pathlib.Path(__file__).parents[1] / "examples" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
