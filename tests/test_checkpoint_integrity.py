"""Checkpoints that cannot be silently wrong: checksums verified on load (a damaged latest checkpoint
falls back to the previous intact one), a fresh run never mixed with an earlier run's checkpoints,
BackupAndRestore resuming a killed fit bit-exactly, shape mismatches named, NaN refused at save, no
hang after a failed save, Keras file-name templates refused."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import warnings

import chex
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.checkpoints import CheckpointError, NonFiniteCheckpointError

FOREIGN = ("TensorStore", "JSONDecodeError", "Traceback", "strict", "partial_restore", "pybind11", "orbax")


def make_trainer(units=256, seed=0):
    model = dlkit.Sequential([dlkit.Input((64,)), layers.Dense(units, "relu"), layers.Dense(10)])
    return dlkit.Trainer(model, optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True),
                         seed=seed)


def assert_clean(message: str):
    assert len(message) < 2000, message
    for word in FOREIGN:
        assert word not in message, (word, message)


# ---------------------------------------------------------------------- 1. integrity
@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A directory with epoch 1 (seed 0's weights) and epoch 2 (seed 1's), and epoch 1's weights."""
    directory = str(tmp_path_factory.mktemp("intact") / "run")
    first, second = make_trainer(seed=0), make_trainer(seed=1)
    first.save_checkpoint(directory, epoch=1)
    second.save_checkpoint(directory, epoch=2)
    return directory, first.get_weights()


def largest_file(step_dir: str) -> str:
    files = [p for p in glob.glob(os.path.join(step_dir, "state", "**"), recursive=True) if os.path.isfile(p)]
    return max(files, key=os.path.getsize)


def garbage_in_the_largest_array_file(step_dir):
    path = largest_file(step_dir)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\xde\xad\xbe\xef" * 4)


def truncated_array_file(step_dir):
    path = largest_file(step_dir)
    os.truncate(path, os.path.getsize(path) // 2)


def deleted_array_file(step_dir):
    os.remove(largest_file(step_dir))


def truncated_record(step_dir):
    os.truncate(os.path.join(step_dir, "meta", "metadata"), 10)


def truncated_tree_metadata(step_dir):
    os.truncate(os.path.join(step_dir, "state", "_METADATA"), 100)


DAMAGE = [garbage_in_the_largest_array_file, truncated_array_file, deleted_array_file, truncated_record,
          truncated_tree_metadata]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_a_damaged_checkpoint_is_reported_and_the_previous_one_loaded(tmp_path, two_epochs, damage):
    intact, epoch_1_weights = two_epochs
    directory = str(tmp_path / "run")
    shutil.copytree(intact, directory)
    damage(os.path.join(directory, "2"))

    trainer = make_trainer(seed=2)
    with pytest.warns(UserWarning, match=r"epoch 2.*Loaded epoch 1") as caught:
        assert trainer.load_checkpoint(directory) == 1
    assert_clean(str(caught[0].message))
    chex.assert_trees_all_equal(trainer.get_weights(), epoch_1_weights)

    with pytest.raises(CheckpointError, match="epoch 2.*damaged") as raised:
        make_trainer().load_checkpoint(directory, epoch=2)
    assert isinstance(raised.value, ValueError)
    assert_clean(str(raised.value))
    with pytest.raises(CheckpointError, match="damaged"):
        make_trainer().load_checkpoint(directory, fallback=False)


def test_no_intact_checkpoint_left_raises(tmp_path, two_epochs):
    directory = str(tmp_path / "run")
    shutil.copytree(two_epochs[0], directory)
    garbage_in_the_largest_array_file(os.path.join(directory, "1"))
    deleted_array_file(os.path.join(directory, "2"))
    with pytest.raises(CheckpointError, match=r"epoch 2.*epoch 1") as raised:
        make_trainer().load_checkpoint(directory)
    assert_clean(str(raised.value))


# ---------------------------------------------------------------------- 2. a fresh run into an old directory
def test_a_fresh_run_moves_an_earlier_runs_checkpoints_aside_and_a_resumed_one_continues(tmp_path, digits8x8):
    x, y = digits8x8[0][:256, :64], digits8x8[1][:256]
    directory = str(tmp_path / "ckpt")
    make_trainer(seed=0).fit(x, y, batch_size=64, epochs=3, verbose=0,
                             callbacks=[dlkit.callbacks.ModelCheckpoint(directory)])
    second = make_trainer(seed=1)
    with pytest.warns(UserWarning, match="previous-1"):
        second.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[dlkit.callbacks.ModelCheckpoint(directory)])
    assert sorted(os.listdir(directory)) == ["1", "2", "previous-1"]
    assert sorted(os.listdir(os.path.join(directory, "previous-1"))) == ["1", "2", "3"]
    resumed = make_trainer(seed=5)
    assert resumed.load_checkpoint(directory) == 2  # this run's latest, not the earlier run's epoch 3
    chex.assert_trees_all_equal(resumed.get_weights(), second.get_weights())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # resuming moves nothing, warns nothing
        resumed.fit(x, y, batch_size=64, epochs=3, initial_epoch=2, verbose=0,
                    callbacks=[dlkit.callbacks.ModelCheckpoint(directory)])
    assert sorted(os.listdir(directory)) == ["1", "2", "3", "previous-1"]

    with pytest.warns(UserWarning, match="previous-2"):
        make_trainer().fit(x, y, batch_size=64, epochs=1, verbose=0,
                           callbacks=[dlkit.callbacks.ModelCheckpoint(directory)])
    assert sorted(os.listdir(directory)) == ["1", "previous-1", "previous-2"]


def test_saving_an_epoch_again_overwrites_it(tmp_path):
    directory = str(tmp_path / "again")
    make_trainer(seed=0).save_checkpoint(directory, epoch=1)
    newer = make_trainer(seed=1)
    newer.save_checkpoint(directory, epoch=1)
    loaded = make_trainer(seed=2)
    assert loaded.load_checkpoint(directory) == 1
    chex.assert_trees_all_equal(loaded.get_weights(), newer.get_weights())


# ---------------------------------------------------------------------- 3. BackupAndRestore
BACKUP_RUN = r"""
import os, signal, sys
import numpy as np
import dlkit
from dlkit import layers


def train(backup_dir, kill_after=0):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(192, 16)).astype(np.float32), rng.integers(0, 4, 192).astype(np.int32)
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((16,)), layers.Dense(32, "relu"), layers.Dropout(0.2),
                                              layers.Dense(4)]),
                            optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))

    def kill(epoch, logs=None):
        if epoch + 1 == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    history = trainer.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[
        dlkit.callbacks.BackupAndRestore(backup_dir), dlkit.callbacks.LambdaCallback(on_epoch_end=kill)])
    return trainer.get_weights(), history.epoch


if __name__ == "__main__":
    weights, epochs = train(sys.argv[1], int(sys.argv[3]))
    np.savez(sys.argv[2], *weights)
    print("epochs run:", epochs, flush=True)
"""


def test_backup_and_restore_resumes_a_killed_fit_bit_exactly(tmp_path):
    backup_dir, out = str(tmp_path / "backup"), str(tmp_path / "weights.npz")
    run = [sys.executable, "-c", BACKUP_RUN, backup_dir, out]
    killed = subprocess.run([*run, "2"], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert 2 in dlkit.checkpoints.all_steps(backup_dir)
    rerun = subprocess.run([*run, "0"], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "epochs run: [2, 3]" in rerun.stdout  # epochs 0 and 1 were not run again
    assert not os.path.exists(backup_dir)  # delete_checkpoint=True, training finished

    namespace = {"__name__": "uninterrupted"}
    exec(BACKUP_RUN, namespace)  # noqa: S102 - the same training, here, never killed
    expected, epochs = namespace["train"](str(tmp_path / "straight"))
    assert epochs == [0, 1, 2, 3]
    resumed = np.load(out)
    chex.assert_trees_all_equal([resumed[k] for k in resumed.files], expected)


def test_backup_and_restore_keeps_the_backup_after_an_error(tmp_path, digits8x8):
    x, y = digits8x8[0][:128, :64], digits8x8[1][:128]
    backup_dir = str(tmp_path / "backup")

    def fail(epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("lost the machine")

    trainer = make_trainer()
    with pytest.raises(RuntimeError, match="lost the machine"):
        trainer.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[
            dlkit.callbacks.BackupAndRestore(backup_dir), dlkit.callbacks.LambdaCallback(on_epoch_end=fail)])
    assert dlkit.checkpoints.all_steps(backup_dir) == [1, 2]
    history = make_trainer().fit(x, y, batch_size=64, epochs=3, verbose=0,
                                 callbacks=[dlkit.callbacks.BackupAndRestore(backup_dir)])
    assert history.epoch == [2]
    assert not os.path.exists(backup_dir)
    with pytest.raises(ValueError, match="save_freq='epoch'"):
        dlkit.callbacks.BackupAndRestore(backup_dir, save_freq=10)


# ---------------------------------------------------------------------- 4. another architecture
def test_loading_into_a_model_of_other_shapes_names_the_parameter_and_both_shapes(tmp_path):
    directory = str(tmp_path / "wide")
    make_trainer(units=256).save_checkpoint(directory, epoch=1)
    with pytest.raises(CheckpointError, match=r"'params/dense/bias' has shape \(256,\) in the checkpoint but "
                                              r"\(128,\) in this model") as raised:
        make_trainer(units=128).load_checkpoint(directory)
    assert_clean(str(raised.value))


# ---------------------------------------------------------------------- 5. NaN refused at save
def test_non_finite_weights_are_refused_at_save(tmp_path, digits8x8):
    trainer = make_trainer()
    weights = trainer.get_weights()
    weights[0] = weights[0].copy()
    weights[0][0, 0] = np.nan
    trainer.set_weights(weights)
    directory = str(tmp_path / "nan")
    with pytest.raises(NonFiniteCheckpointError, match="params/dense/kernel.*NaN.*allow_nonfinite=True"):
        trainer.save_checkpoint(directory, epoch=1)
    assert not dlkit.checkpoints.all_steps(directory)
    trainer.save_checkpoint(directory, epoch=1, allow_nonfinite=True)
    assert dlkit.checkpoints.all_steps(directory) == [1]


def test_model_checkpoint_skips_a_nan_epoch_with_a_warning(tmp_path, digits8x8):
    x, y = digits8x8[0][:128, :64], digits8x8[1][:128]
    trainer = make_trainer()

    def diverge(epoch, logs=None):
        if epoch == 1:
            trainer.set_weights([w * np.nan for w in trainer.get_weights()])

    directory = str(tmp_path / "ckpt")
    with pytest.warns(UserWarning, match="epoch 2 not saved.*NaN"):
        history = trainer.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[
            dlkit.callbacks.LambdaCallback(on_epoch_end=diverge), dlkit.callbacks.ModelCheckpoint(directory)])
    assert len(history.epoch) == 2  # ModelCheckpoint does not stop training; TerminateOnNaN would
    assert dlkit.checkpoints.all_steps(directory) == [1]


# ---------------------------------------------------------------------- 6. no hang after a failed save
FAILED_SAVES = r"""
import sys
import dlkit
from dlkit import layers
trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((4,)), layers.Dense(3)]), loss="mse", optimizer="adam")
for path in sys.argv[1:]:
    try:
        trainer.save_checkpoint(path, epoch=1)
        print("saved", path)
    except dlkit.checkpoints.CheckpointError as error:
        print("refused:", error)
"""


def read_only_directory(tmp_path) -> str:
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(0o555)
    candidates = [str(path), "/sys"]  # root writes anywhere; in /sys even root creates nothing
    for candidate in candidates:
        try:
            os.mkdir(os.path.join(candidate, "probe"))
        except OSError:
            return candidate
        os.rmdir(os.path.join(candidate, "probe"))
    pytest.skip("no read-only directory on this machine")


def test_a_failed_save_raises_a_clear_error_and_the_process_exits(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    paths = [str(a_file), read_only_directory(tmp_path)]
    # the hang this guards against lasted 300 s; a busy machine needs more than 20 s to start the process
    done = subprocess.run([sys.executable, "-c", FAILED_SAVES, *paths], capture_output=True, text=True, timeout=90)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2, done.stdout + done.stderr[-2000:]
    for path, line in zip(paths, lines):
        assert line.startswith("refused:") and path in line, line
        assert_clean(line)
    assert "is a file" in lines[0]


# ---------------------------------------------------------------------- 7. Keras file-name templates
def test_a_keras_file_name_template_is_refused_with_what_dlkit_does():
    with pytest.raises(ValueError, match=r"\{epoch\}.*checkpoint directory per run.*sub-directory per epoch"):
        dlkit.callbacks.ModelCheckpoint("w.{epoch:02d}.h5")
    dlkit.callbacks.ModelCheckpoint("plain-directory")  # no template: fine
