import numpy as np
import pytest
from sklearn import datasets as skdatasets


@pytest.fixture(scope="session")
def digits8x8():
    """scikit-learn's 8x8 digits (1797 real samples), scaled to [0, 1], shuffled once."""
    x, y = skdatasets.load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    return (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)
