"""Orbax checkpoints: exact resume, fresh-trainer loading, atomic commits."""
import os
import signal
import subprocess
import sys

import chex
import numpy as np
import pytest

import dlkit
from dlkit import layers


def make_trainer():
    model = dlkit.Sequential([layers.Dense(32, "relu"), layers.BatchNormalization(), layers.Dropout(0.3),
                              layers.Dense(10)])
    return dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(3e-3),
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


@pytest.fixture(scope="module")
def straight(digits8x8):
    """The weights and step count of ``make_trainer()`` after 4 uninterrupted epochs on 600 digits: what a
    resumed run must reproduce bit for bit (numpy copies, so no test can change them)."""
    x, y = digits8x8[0][:600], digits8x8[1][:600]
    trainer = make_trainer()
    trainer.fit(x, y, batch_size=64, epochs=4, verbose=0)
    return trainer.get_weights(), int(trainer.state.step)


def test_resume_from_a_checkpoint_is_bit_identical(tmp_path, digits8x8, straight):
    x, y = digits8x8[0][:600], digits8x8[1][:600]
    straight_weights, straight_step = straight
    first = make_trainer()
    first.fit(x, y, batch_size=64, epochs=2, verbose=0)
    first.save_checkpoint(str(tmp_path / "ckpt"))
    resumed = make_trainer()  # has seen no data: built from the checkpoint's saved sample shape
    assert resumed.load_checkpoint(str(tmp_path / "ckpt")) == 2
    chex.assert_trees_all_equal(resumed.get_weights(), first.get_weights())
    with pytest.raises(ValueError, match="initial_epoch=2"):
        resumed.fit(x, y, batch_size=64, epochs=4, initial_epoch=1, verbose=0)
    resumed.load_checkpoint(str(tmp_path / "ckpt"))
    history = resumed.fit(x, y, batch_size=64, epochs=4, initial_epoch=2, verbose=0)
    assert len(history.history["loss"]) == 2
    chex.assert_trees_all_equal(resumed.get_weights(), straight_weights)
    assert int(resumed.state.step) == straight_step


def test_loading_a_directory_takes_its_latest_checkpoint(tmp_path, digits8x8):
    x, y = digits8x8[0][:300], digits8x8[1][:300]
    trainer = make_trainer()
    for _ in range(3):
        trainer.fit(x, y, epochs=trainer.epoch + 1, initial_epoch=trainer.epoch, verbose=0)
        trainer.save_checkpoint(str(tmp_path / "run"))
    fresh = make_trainer()
    assert fresh.load_checkpoint(str(tmp_path / "run")) == 3
    chex.assert_trees_all_equal(fresh.get_weights(), trainer.get_weights())
    assert fresh.load_checkpoint(str(tmp_path / "run"), epoch=1) == 1


def test_loading_an_empty_directory_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint.*ModelCheckpoint"):
        make_trainer().load_checkpoint(str(tmp_path / "nothing"))


KILLER = r"""
import os, signal, sys
import dlkit
from dlkit import layers
from orbax.checkpoint._src.path import atomicity

def pause_before_commit(cls):
    finalize = cls.finalize
    async def paused(self, *args, **kwargs):
        if "2" in os.path.basename(str(self.get())):  # epoch 2: its files are written, not yet committed
            print("writing", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)  # the parent kills us here
        return await finalize(self, *args, **kwargs)
    cls.finalize = paused

pause_before_commit(atomicity.AtomicRenameTemporaryPath)
pause_before_commit(atomicity.CommitFileTemporaryPath)
trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((64,)), layers.Dense(256), layers.Dense(256)]), loss="mse",
                        optimizer="adam")
trainer.save_checkpoint(sys.argv[1], epoch=1)
print("saved", flush=True)
trainer.save_checkpoint(sys.argv[1], epoch=2)
print("not killed", flush=True)
"""


def test_a_process_killed_while_saving_leaves_a_readable_checkpoint(tmp_path):
    directory = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-c", KILLER, directory], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saved"
        assert proc.stdout.readline().strip() == "writing"  # stopped inside the second save
        leftovers = sorted(os.listdir(directory))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert "1" in leftovers and any(name.startswith("2") and name != "2" for name in leftovers), leftovers
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((64,)), layers.Dense(256), layers.Dense(256)]),
                            loss="mse", optimizer="adam")
    before = trainer.get_weights()[0].copy()
    assert trainer.load_checkpoint(directory) == 1  # the half-written epoch 2 is not taken for the latest
    assert all(np.isfinite(w).all() for w in trainer.get_weights())
    np.testing.assert_array_equal(trainer.get_weights()[0], before)  # same seed, never trained: same weights


def test_model_checkpoint_in_fit_then_resume_on_a_fresh_trainer(tmp_path, digits8x8, straight):
    x, y = digits8x8[0][:600], digits8x8[1][:600]
    directory = str(tmp_path / "checkpoints")
    make_trainer().fit(x, y, batch_size=64, epochs=2, verbose=0,
                       callbacks=[dlkit.callbacks.ModelCheckpoint(directory)])
    assert sorted(os.listdir(directory)) == ["1", "2"]
    resumed = make_trainer()
    assert resumed.load_checkpoint(directory) == 2
    resumed.fit(x, y, batch_size=64, epochs=4, initial_epoch=2, verbose=0)
    chex.assert_trees_all_equal(resumed.get_weights(), straight[0])


def test_model_checkpoint_save_best_only_keeps_the_best_epoch(tmp_path, digits8x8):
    x, y = digits8x8
    directory = str(tmp_path / "best")
    checkpoint = dlkit.callbacks.ModelCheckpoint(directory, monitor="val_accuracy", save_best_only=True,
                                                 save_weights_only=True)
    trainer = make_trainer()
    history = trainer.fit(x[:800], y[:800], epochs=5, validation_split=0.25, callbacks=[checkpoint], verbose=0)
    accuracies = history.history["val_accuracy"]
    improved = [i + 1 for i, a in enumerate(accuracies) if a > max(accuracies[:i], default=-1.0)]
    assert sorted(int(d) for d in os.listdir(directory)) == improved
    best = make_trainer()
    best.load_checkpoint(directory)
    np.testing.assert_allclose(best.evaluate(x[600:800], y[600:800], verbose=0)[1], max(accuracies), atol=1e-6)
