import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from sklearn import datasets as skdatasets

_CACHE_VARIABLE = "DLKIT_TEST_JAX_CACHE"
_XLA_VARIABLE = "DLKIT_TEST_XLA_FLAGS"

# The suite spends ~70% of its time in XLA's CPU compiler (each test builds its own small programs) and
# little running them. These flags make LLVM optimise less (level 1, no expensive passes) and emit fusions
# the classic way: a Transformer's, an LSTM's and a conv autoencoder's first fit compile in 4.6-5.3 s
# instead of 9.5-11.3 s, and their epochs run as fast; the whole suite used 8.6 CPU-minutes instead of
# 14.0. They change how XLA compiles, not what a test computes or checks. A jaxlib that no longer knows a
# flag would abort on it, so the first process of a run checks them in a subprocess (once per jaxlib: the
# answer is kept in pytest's cache). DLKIT_TEST_XLA_FLAGS="" tests with XLA's defaults (or other flags).
_FAST_COMPILE = ("--xla_backend_optimization_level=1", "--xla_llvm_disable_expensive_passes=true",
                 "--xla_cpu_use_fusion_emitters=false")


def _accepted(flags: str) -> bool:
    env = dict(os.environ, XLA_FLAGS=f"{flags} {os.environ.get('XLA_FLAGS', '')}".strip(), JAX_PLATFORMS="cpu")
    check = "import jax.numpy as jnp; jnp.zeros(2).block_until_ready()"
    return subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, timeout=120).returncode == 0


def _fast_compile_flags(config) -> str:
    """The flags of ``_FAST_COMPILE`` this jaxlib accepts, checked once per jaxlib (kept in pytest's cache)."""
    import jaxlib
    together = " ".join(_FAST_COMPILE)
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    known = cache.get("dlkit/xla_flags", {}) if cache is not None else {}
    if known.get("jaxlib") == jaxlib.__version__ and known.get("wanted") == together:
        return known["accepted"]
    flags = together if _accepted(together) else " ".join(f for f in _FAST_COMPILE if _accepted(f))
    if cache is not None:
        cache.set("dlkit/xla_flags", {"jaxlib": jaxlib.__version__, "wanted": together, "accepted": flags})
    return flags


def pytest_configure(config):
    """One JAX compilation cache per test run, shared by the pytest-xdist workers (they inherit the
    variable from the controller): a program that several tests compile (the same model, the same
    step) compiles once. On 2 cores: 587 s and 18.2 CPU-minutes against 705 s and 21.9 without.
    The XLA flags above are set here too, before any process of the run starts its backend (the
    workers inherit them); the user's own XLA_FLAGS come after them, so they win."""
    import jax
    if _XLA_VARIABLE not in os.environ:  # the first process of the run
        config.dlkit_xla_flags = os.environ.get("XLA_FLAGS")
        os.environ[_XLA_VARIABLE] = _fast_compile_flags(config)
        os.environ["XLA_FLAGS"] = f"{os.environ[_XLA_VARIABLE]} {os.environ.get('XLA_FLAGS', '')}".strip()
    if _CACHE_VARIABLE not in os.environ:
        config.dlkit_made_cache = os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix="dlkit-test-jax-cache-")
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_VARIABLE])
    # Every program, however fast it compiles: with the flags above most compile in under the 0.2 s this
    # cache kept before, and a hit still saves most of that (4 files: 10% less CPU time than with 0.2).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


# The slowest tests, slowest first (seconds in a full run on 2 cores, both workers busy), run before all
# others: a worker that drew one of them last would run alone at the end. The rest keep their order.
# Measured once; a renamed test only loses its place.
SLOWEST_FIRST = (
    "tests/test_multihost.py::test_two_processes_train_as_one_and_their_files_restore_in_one",  # 36 s: 4 processes
    "tests/test_docs.py::test_page_snippets_run[data.md]",  # 30 s loaded: tfds datasets written and read
    "tests/test_sharded_data.py::test_fsdp_splits_params_and_optimizer_state_and_trains_as_replicated",  # 20 s
    "tests/test_sharded_data.py::test_eight_devices_hold_no_copy_of_the_data_and_train_on_the_same_batches_as_one",
    "tests/test_colab_notebook.py::test_the_code_cells_train_offline_on_the_cpu",  # 10-16 s
    "tests/test_datasets.py::test_writes_loads_and_trains_with_tensorflow_unimportable",  # 10 s: a subprocess
    "tests/test_devices.py::test_eight_devices_match_one_device",  # 40 s: two subprocesses, one after the other
    "tests/test_docs.py::test_page_snippets_run[training.md]",  # 24 s
    "tests/test_saving.py::test_load_model_in_a_fresh_process_predicts_and_trains_on_bitwise",  # 21 s loaded
    "tests/test_docs.py::test_page_snippets_run[evaluation.md]",  # 21 s loaded
    "tests/test_docs.py::test_page_snippets_run[tuning.md]",  # 14 s loaded
    "tests/test_docs.py::test_page_snippets_run[inspection.md]",  # 13 s loaded
    "tests/test_convnets.py::test_a_small_resnet_learns_a_slice_of_the_digits",  # 13 s loaded
    "tests/test_seq2seq.py::test_transformer_learns_to_reverse_decoded_greedily",  # 21 s
    "tests/test_mnist_cnn.py::test_example_cnn_reaches_97_percent",  # 19 s: three epochs of the README's CNN
    "tests/test_seq2seq.py::test_lstm_encoder_decoder_learns_to_reverse_decoded_greedily",  # 19 s
    "tests/test_metrics.py::test_equal_to_keras_on_real_predictions",  # 16 s
    "tests/test_generative.py::test_the_example_gan_trains_and_saves_a_sample_grid_per_epoch",  # 10 s
    "tests/test_generative.py::test_autoencoders_reconstruct_well_below_the_mean_image_baseline",  # 10 s
    "tests/test_docs.py::test_page_snippets_run[sequences.md]",  # 9 s
    "tests/test_attention.py::test_mha_equals_keras_after_copying_weights[True-4]",  # 9 s
    "tests/test_examples_timeseries.py::test_forecaster_beats_the_naive_last_value_forecast",  # 9 s
    "tests/test_generative.py::test_vae_reconstructs_below_baseline_samples_and_interpolates",  # 8 s
    "tests/test_training.py::test_a_fixed_number_of_programs_however_many_epochs[True-5]",  # 8 s
    "tests/test_attention.py::test_mha_equals_per_head_numpy_attention_with_output_projection",  # 8 s
    "tests/test_docs.py::test_page_snippets_run[generative.md]",  # 7 s
    "tests/test_attention.py::test_transformer_encoder_classifier_learns_token_order",  # 7 s
)


def pytest_collection_modifyitems(config, items):
    """``SLOWEST_FIRST`` first; the others keep their order (a stable sort)."""
    rank = {nodeid: i for i, nodeid in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))


def pytest_unconfigure(config):
    made = getattr(config, "dlkit_made_cache", None)  # only the process that made it, after every worker
    if made:
        os.environ.pop(_CACHE_VARIABLE, None)
        shutil.rmtree(made, ignore_errors=True)
    if hasattr(config, "dlkit_xla_flags"):  # the process that set them, as it found them
        os.environ.pop(_XLA_VARIABLE, None)
        if config.dlkit_xla_flags is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = config.dlkit_xla_flags


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
