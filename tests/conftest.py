import importlib.util
import os
import pathlib
import shutil
import tempfile

import numpy as np
import pytest
from sklearn import datasets as skdatasets

_CACHE_VARIABLE = "DLKIT_TEST_JAX_CACHE"


def pytest_configure(config):
    """One JAX compilation cache per test run, shared by the pytest-xdist workers (they inherit the
    variable from the controller): a program that several tests compile (the same model, the same
    step) compiles once. On 2 cores: 587 s and 18.2 CPU-minutes against 705 s and 21.9 without."""
    import jax
    if _CACHE_VARIABLE not in os.environ:
        config.dlkit_made_cache = os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix="dlkit-test-jax-cache-")
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_VARIABLE])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def pytest_unconfigure(config):
    made = getattr(config, "dlkit_made_cache", None)  # only the process that made it, after every worker
    if made:
        os.environ.pop(_CACHE_VARIABLE, None)
        shutil.rmtree(made, ignore_errors=True)


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
