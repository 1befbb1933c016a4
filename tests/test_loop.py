"""The loop's own guarantees: the pure steps compile once, fit ends cleanly on an exception or Ctrl-C."""
import os
import signal

import chex
import numpy as np
import pytest

import dlkit
from dlkit import layers
from dlkit.testing import assert_max_traces


def classifier(**kwargs):
    model = dlkit.Sequential([dlkit.Input((64,)), layers.Dense(16, activation="relu"), layers.Dense(10)])
    return dlkit.Trainer(model, optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(True),
                         metrics=["accuracy"], **kwargs)


def test_train_step_is_one_compiled_object_until_compile_replaces_it(digits8x8):
    x, y = digits8x8[0][:64], digits8x8[1][:64]
    trainer = classifier()
    step = trainer.train_step
    assert trainer.train_step is step and trainer.test_step is trainer.test_step
    state = trainer.state
    with assert_max_traces(1, trainer):  # one trace over three calls
        for _ in range(3):
            state, logs = trainer.train_step(state, (x, y))
    assert int(state.step) == 3 and set(logs) == {"loss", "accuracy"}
    trainer.compile(optimizer="sgd")
    assert trainer.train_step is not step
    trainer.freeze("dense")
    after_freeze = trainer.train_step
    assert after_freeze is not step and trainer.train_step is after_freeze


class Raises(dlkit.callbacks.Callback):
    def __init__(self, error, at_epoch):
        super().__init__()
        self.error, self.at_epoch, self.ended = error, at_epoch, False

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise self.error

    def on_train_end(self, logs=None):
        self.ended = True


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_fit_runs_on_train_end_and_keeps_a_usable_state_when_interrupted(error, digits8x8):
    x, y = digits8x8[0][:256], digits8x8[1][:256]
    trainer = classifier()
    callback = Raises(error, at_epoch=1)
    with pytest.raises(type(error)):
        trainer.fit(x, y, batch_size=64, epochs=5, callbacks=[callback], verbose=0)
    assert callback.ended and trainer.epoch == 2 and int(trainer.state.step) == 8
    assert np.isfinite(trainer.predict(x[:4])).all()  # the state was not donated away
    history = trainer.fit(x, y, batch_size=64, epochs=3, initial_epoch=2, verbose=0)  # and training continues
    assert len(history.history["loss"]) == 1 and int(trainer.state.step) == 12


def test_ctrl_c_stops_fit_after_the_running_program_with_its_state(digits8x8):
    x, y = digits8x8[0][:640], digits8x8[1][:640]
    trainer = classifier()
    # dlkit holds Ctrl-C only over Python's own handler (a program with its own keeps it); a library
    # an earlier test in this worker imported may have installed another, so start from Python's
    signal.signal(signal.SIGINT, signal.default_int_handler)

    class CtrlC(dlkit.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 3:
                os.kill(os.getpid(), signal.SIGINT)  # arrives while batch 3 is dispatched

    with pytest.raises(KeyboardInterrupt, match="last completed step"):
        trainer.fit(x, y, batch_size=64, epochs=2, callbacks=[CtrlC()], verbose=0)
    assert int(trainer.state.step) == 4  # batches 0-3 ran; the interrupt waited for batch 3's state
    chex.assert_tree_all_finite(trainer.state.params)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # fit put the handler back


def test_set_weights_reaches_a_variable_of_the_model_itself():
    import flax.linen as nn

    class Scaled(nn.Module):  # a parameter at the top, beside a sub-module's
        @nn.compact
        def __call__(self, x):
            return self.param("scale", nn.initializers.ones, (1,)) * nn.Dense(2)(x)

    trainer = dlkit.Trainer(Scaled(), loss="mse", input_shape=(3,))
    values = [np.full(w.shape, i + 1.0, np.float32) for i, w in enumerate(trainer.get_weights())]
    trainer.set_weights(values)
    chex.assert_trees_all_equal(trainer.get_weights(), values)
