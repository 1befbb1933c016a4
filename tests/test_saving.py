"""Whole-model saving (``trainer.save("model.keras")``, ``dlkit.load_model``), Keras 3's ``.weights.h5``
both ways, and ``ModelCheckpoint``'s Keras file semantics."""
import json
import os
import pathlib
import subprocess
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "jax")  # only read if Keras is imported, before its first import

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

import dlkit
from dlkit import layers
from dlkit.saving import ArchiveError, SerializationError

ROOT = pathlib.Path(__file__).parents[1]
RNG = np.random.default_rng(0)
X_IMAGES = RNG.normal(size=(48, 6, 6, 1)).astype(np.float32)
X_FEATURES = RNG.normal(size=(48, 5)).astype(np.float32)
Y = RNG.integers(0, 3, 48)
TARGETS = {"digit": Y, "odd": (Y % 2).astype(np.float32)}

CUSTOM = '''
import flax.linen as nn
import jax

import dlkit


@dlkit.saving.register_serializable(package="tests")
class Scale(nn.Module):
    """x times a learned vector times a constant."""

    factor: float = 1.0

    @nn.compact
    def __call__(self, x):
        return x * self.factor * self.param("scale", nn.initializers.ones, (x.shape[-1],))


@dlkit.saving.register_serializable(package="tests")
def swish(x):
    """A registered activation."""
    return x * jax.nn.sigmoid(x)
'''

# Runs in a fresh process: loads each archive, predicts, takes one training step, reports the compile
# arguments; the custom module is imported only after a first load has shown the missing-class error.
LOADER = '''
import json, os, sys
import jax, numpy as np
import dlkit

if os.environ.get("DLKIT_TEST_JAX_CACHE"):  # the test run's compilation cache (tests/conftest.py): less to compile
    jax.config.update("jax_compilation_cache_dir", os.environ["DLKIT_TEST_JAX_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
folder = sys.argv[1]
sys.path.insert(0, folder)
data, out, report = np.load(folder + "/inputs.npz"), {}, {}
try:
    dlkit.load_model(folder + "/custom.keras")
except dlkit.saving.SerializationError as error:
    report["before_import"] = str(error)
import saving_custom  # noqa: registers Scale and swish
try:
    dlkit.load_model(folder + "/unregistered.keras")
except dlkit.saving.SerializationError as error:
    report["unregistered"] = str(error)
for name, x, y in [("cnn", data["images"], data["y"]), ("functional", data["features"],
                   {"digit": data["y"], "odd": data["odd"]}), ("custom", data["features"], data["features"])]:
    trainer = dlkit.load_model(folder + "/" + name + ".keras")
    prediction = trainer.predict(x)
    for key, value in (prediction.items() if isinstance(prediction, dict) else [("", prediction)]):
        out[name + "_predict" + key] = value
    state, _ = trainer.train_step(trainer.state, (x[:16], jax.tree.map(lambda a: a[:16], y)))
    for i, leaf in enumerate(jax.tree.leaves(state.params)):
        out[f"{name}_next_{i}"] = np.asarray(leaf)
    report[name] = {"loss": repr(trainer.loss), "loss_weights": trainer.loss_weights,
                    "metrics": repr(trainer.metric_ids), "weighted": repr(trainer.weighted_metric_ids),
                    "epoch": trainer.epoch, "step": int(trainer.state.step), "model": type(trainer.model).__name__,
                    "learning_rate": trainer.optimizer.learning_rate}
np.savez(folder + "/outputs.npz", **out)
print(json.dumps(report))
'''


class Unregistered(nn.Module):
    """A Linen module that nobody registered."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(x)


def cnn():
    return dlkit.Sequential([dlkit.Input((6, 6, 1)), layers.Conv2D(3, 3, activation="relu"),
                             layers.BatchNormalization(), layers.Flatten(), layers.Dense(3, activation="softmax")])


def two_headed():
    inputs = dlkit.Input((5,), name="features")
    hidden = layers.Dense(8, "relu", name="hidden")(inputs)
    shared = layers.Dense(8, "relu")
    hidden = shared(layers.add([shared(hidden), hidden]))  # a layer called twice: one object, shared weights
    return dlkit.Model(inputs, {"digit": layers.Dense(3, name="digit")(hidden),
                                "odd": layers.Dense(1, "sigmoid", name="odd")(hidden)})


@pytest.fixture(scope="module")
def trained_cnn():
    trainer = dlkit.Trainer(cnn(), optimizer=dlkit.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                            metrics=["accuracy"])
    trainer.fit(X_IMAGES, Y, batch_size=16, epochs=2, verbose=0)
    return trainer


def next_params(trainer, x, y) -> list:
    state, _ = trainer.train_step(trainer.state, (x[:16], jax.tree.map(lambda a: a[:16], y)))
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]


# ---------------------------------------------------------------------- model.save / load_model
def test_load_model_in_a_fresh_process_predicts_and_trains_on_bitwise(tmp_path, trained_cnn):
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "saving_custom.py").write_text(CUSTOM)
    import saving_custom
    sys.path.remove(str(tmp_path))

    functional = dlkit.Trainer(
        two_headed(), optimizer=dlkit.optimizers.SGD(0.05, momentum=0.9, clipnorm=1.0),
        loss={"digit": dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), "odd": "binary_crossentropy"},
        loss_weights={"digit": 1.0, "odd": 0.5}, metrics={"digit": ["accuracy"]},
        weighted_metrics={"odd": [dlkit.metrics.AUC(num_thresholds=50)]})
    functional.state = functional.train_step(functional.state, (X_FEATURES[16:32], {k: v[16:32] for k, v in
                                                                                 TARGETS.items()}))[0]
    custom = dlkit.Trainer(dlkit.Sequential([dlkit.Input((5,)), saving_custom.Scale(2.0),
                                             layers.Dense(4, activation=saving_custom.swish), layers.Dense(5)]),
                           optimizer="adam", loss="mse")
    custom.state = custom.train_step(custom.state, (X_FEATURES[16:32], X_FEATURES[16:32]))[0]  # a used optimizer
    cases = {"cnn": (trained_cnn, X_IMAGES, Y), "functional": (functional, X_FEATURES, TARGETS),
             "custom": (custom, X_FEATURES, X_FEATURES)}
    for name, (trainer, _, _) in cases.items():
        trainer.save(tmp_path / f"{name}.keras")
    dlkit.Trainer(dlkit.Sequential([dlkit.Input((5,)), Unregistered()]), loss="mse").save(
        tmp_path / "unregistered.keras")
    np.savez(tmp_path / "inputs.npz", images=X_IMAGES, features=X_FEATURES, y=Y, odd=TARGETS["odd"])
    expected = {name: (trainer.predict(x), next_params(trainer, x, y)) for name, (trainer, x, y) in cases.items()}

    done = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-3000:]
    report, out = json.loads(done.stdout.splitlines()[-1]), np.load(tmp_path / "outputs.npz")
    for name, (trainer, _, _) in cases.items():
        prediction, following = expected[name]
        for key, value in (prediction.items() if isinstance(prediction, dict) else [("", prediction)]):
            np.testing.assert_array_equal(out[f"{name}_predict{key}"], value)  # bitwise
        for i, leaf in enumerate(following):  # the step after load is the step the original takes next
            np.testing.assert_array_equal(out[f"{name}_next_{i}"], leaf)
        assert report[name]["epoch"] == trainer.epoch and report[name]["step"] == int(trainer.state.step)
        assert report[name]["learning_rate"] == pytest.approx(trainer.optimizer.learning_rate)
    assert report["functional"]["loss"] == repr(functional.loss)
    assert report["functional"]["loss_weights"] == {"digit": 1.0, "odd": 0.5}
    assert report["functional"]["metrics"] == repr(functional.metric_ids)
    assert report["functional"]["weighted"] == repr(functional.weighted_metric_ids)
    assert report["cnn"]["model"] == "Sequential" and report["functional"]["model"] == "Model"
    for key, missing in (("before_import", "tests>Scale"), ("unregistered", "Unregistered")):
        assert missing in report[key] and "@dlkit.saving.register_serializable()" in report[key], report[key]


def test_custom_objects_load_an_unregistered_module(tmp_path):
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((5,)), Unregistered()]), loss="mse")
    trainer.save(tmp_path / "m.keras")
    with pytest.raises(SerializationError, match="Unregistered.*register_serializable"):
        dlkit.load_model(tmp_path / "m.keras")
    loaded = dlkit.load_model(tmp_path / "m.keras", custom_objects={"Unregistered": Unregistered})
    np.testing.assert_array_equal(loaded.predict(X_FEATURES), trainer.predict(X_FEATURES))


def test_a_field_that_cannot_be_saved_is_named_at_save_time(tmp_path):
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((5,)), layers.Dense(2, activation=lambda x: 2 * x)]),
                            loss="mse")
    with pytest.raises(SerializationError, match=r"layers\[1\] \(Dense\)\.activation.*a lambda"):
        trainer.save(tmp_path / "m.keras")
    assert not os.listdir(tmp_path)  # nothing half-written
    with pytest.raises(ValueError, match="must end in '.keras'"):
        trainer.save(tmp_path / "m.h5")


def test_an_optax_optimizer_must_be_given_back_and_its_state_is_restored(tmp_path):
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((5,)), layers.Dense(3)]), optimizer=optax.adam(1e-2),
                            loss="mse")
    trainer.fit(X_FEATURES, X_FEATURES[:, :3], epochs=1, verbose=0)
    trainer.save(tmp_path / "m.keras")
    with pytest.raises(SerializationError, match=r"optax transformation.*load_model\(path, optimizer=\.\.\.\)"):
        dlkit.load_model(tmp_path / "m.keras")
    loaded = dlkit.load_model(tmp_path / "m.keras", optimizer=optax.adam(1e-2))
    jax.tree.map(np.testing.assert_array_equal, loaded.state.opt_state, trainer.state.opt_state)
    with pytest.warns(UserWarning, match="optimizer state does not fit.*starts fresh"):
        dlkit.load_model(tmp_path / "m.keras", optimizer=optax.sgd(0.1, momentum=0.9))
    weights_only = dlkit.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_array_equal(weights_only.predict(X_FEATURES), trainer.predict(X_FEATURES))


def test_a_damaged_archive_is_detected(tmp_path, trained_cnn):
    path = tmp_path / "m.keras"
    trained_cnn.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
        kernel = next(entry["file"] for entry in json.loads(members["metadata.json"])["arrays"]
                      if entry["path"] == "params/conv2d/kernel")
        offset = archive.getinfo(kernel).header_offset
    # A flipped byte inside an array: the zip's CRC no longer matches.
    data = bytearray(path.read_bytes())
    start = offset + 30 + int.from_bytes(data[offset + 26:offset + 28], "little") + \
        int.from_bytes(data[offset + 28:offset + 30], "little")  # past the member's local header
    data[start + 5] ^= 0xFF
    (tmp_path / "flipped.keras").write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=f"damaged: its member '{kernel}' does not read back"):
        dlkit.load_model(tmp_path / "flipped.keras")
    # An array rewritten with a valid zip around it: its SHA-256 no longer matches; the array is named.
    members[kernel] = bytes(len(members[kernel]))
    with zipfile.ZipFile(tmp_path / "rewritten.keras", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ArchiveError, match=r"damaged: the array 'params/conv2d/kernel'.*SHA-256"):
        dlkit.load_model(tmp_path / "rewritten.keras")
    (tmp_path / "truncated.keras").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ArchiveError, match="damaged or not a dlkit .keras archive"):
        dlkit.load_model(tmp_path / "truncated.keras")


# ---------------------------------------------------------------------- .weights.h5, Keras both ways
def keras_cnn(keras):
    return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(3, 3, activation="relu"),
                             keras.layers.BatchNormalization(), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])


def test_keras_reads_dlkit_weights_h5_and_dlkit_reads_keras_files(tmp_path, trained_cnn):
    keras = pytest.importorskip("keras")
    trained_cnn.save_weights(tmp_path / "dlkit.weights.h5")
    from_dlkit = keras_cnn(keras)
    from_dlkit.load_weights(tmp_path / "dlkit.weights.h5")
    np.testing.assert_allclose(np.asarray(from_dlkit(X_IMAGES, training=False)), trained_cnn.predict(X_IMAGES),
                               atol=1e-5)

    written = keras_cnn(keras)
    written.set_weights([RNG.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in written.get_weights()])
    written.save_weights(tmp_path / "keras.weights.h5")
    written.save(tmp_path / "keras.keras")
    expected = np.asarray(written(X_IMAGES, training=False))
    for path in ("keras.weights.h5", "keras.keras"):
        reader = dlkit.Trainer(cnn(), loss="mse")
        reader.load_weights(tmp_path / path)
        np.testing.assert_allclose(reader.predict(X_IMAGES), expected, atol=1e-5)


def test_weights_h5_round_trips_a_functional_model_and_names_a_mismatch(tmp_path):
    trainer = dlkit.Trainer(two_headed(), loss={"digit": "mse", "odd": "mse"})
    trainer.save_weights(tmp_path / "w.weights.h5")
    other = dlkit.Trainer(two_headed(), loss={"digit": "mse", "odd": "mse"}, seed=1)
    other.load_weights(tmp_path / "w.weights.h5")
    jax.tree.map(np.testing.assert_array_equal, other.get_weights(), trainer.get_weights())
    with pytest.raises(ValueError, match=r"layer 'batch_normalization' has 4 weights, but the file holds 0"):
        dlkit.Trainer(dlkit.Sequential([dlkit.Input((5,)), layers.BatchNormalization(), layers.Dense(2)]),
                      loss="mse").load_weights(tmp_path / "w.weights.h5")
    trainer.save_weights(tmp_path / "w.msgpack")  # other suffixes: Flax msgpack, as before
    other.load_weights(tmp_path / "w.msgpack")


# ---------------------------------------------------------------------- ModelCheckpoint
def small_trainer():
    return dlkit.Trainer(dlkit.Sequential([dlkit.Input((5,)), layers.Dense(3)]), optimizer="adam",
                         loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def test_model_checkpoint_formats_keras_file_templates_per_epoch(tmp_path):
    trainer = small_trainer()
    history = trainer.fit(X_FEATURES, Y, epochs=2, verbose=0, validation_data=(X_FEATURES, Y), callbacks=[
        dlkit.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.keras")),
        dlkit.callbacks.ModelCheckpoint(str(tmp_path / "w.{epoch:02d}-{val_loss:.2f}.weights.h5"))])
    losses = history.history["val_loss"]
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["ckpt-01.keras", "ckpt-02.keras", f"w.01-{losses[0]:.2f}.weights.h5", f"w.02-{losses[1]:.2f}.weights.h5"])
    np.testing.assert_array_equal(dlkit.load_model(tmp_path / "ckpt-02.keras").predict(X_FEATURES),
                                  trainer.predict(X_FEATURES))
    with pytest.raises(ValueError, match="save_weights_only=True.*'.weights.h5'"):
        dlkit.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_weights_only=True)
    with pytest.raises(ValueError, match=r"\{epoch\}.*'.keras' and '.weights.h5' files only"):
        dlkit.callbacks.ModelCheckpoint("w.{epoch:02d}.h5")


def test_model_checkpoint_save_best_only_keeps_only_improvements(tmp_path):
    trainer = small_trainer()
    trainer.build(X_FEATURES)
    every = dlkit.callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch}.weights.h5"), save_best_only=True)
    latest = dlkit.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_accuracy",
                                             save_best_only=True)
    callbacks = dlkit.callbacks.CallbackList([every, latest], trainer, {})
    callbacks.on_train_begin()
    saved = {}
    for epoch, (loss, accuracy) in enumerate([(1.0, 0.2), (0.5, 0.6), (0.7, 0.5), (0.4, 0.55)]):
        trainer.set_weights([w + 1 for w in trainer.get_weights()])
        saved[epoch + 1] = trainer.get_weights()
        callbacks.on_epoch_begin(epoch)
        callbacks.on_epoch_end(epoch, {"val_loss": loss, "val_accuracy": accuracy})
    assert sorted(os.listdir(tmp_path)) == ["best-1.weights.h5", "best-2.weights.h5", "best-4.weights.h5",
                                            "best.keras"]
    jax.tree.map(np.testing.assert_array_equal, dlkit.load_model(tmp_path / "best.keras").get_weights(), saved[2])
    trainer.load_weights(tmp_path / "best-4.weights.h5")
    jax.tree.map(np.testing.assert_array_equal, trainer.get_weights(), saved[4])

    trainer.set_weights([np.full_like(w, np.nan) for w in trainer.get_weights()])
    nan = dlkit.callbacks.ModelCheckpoint(str(tmp_path / "nan.keras"))
    nan.set_model(trainer)
    with pytest.warns(UserWarning, match="not saved.*NaN"):
        nan.on_epoch_end(0, {})
    assert not (tmp_path / "nan.keras").exists()
    with pytest.raises(KeyError, match="Failed to format.*val_auc"):
        dlkit.callbacks.ModelCheckpoint(str(tmp_path / "{val_auc}.keras")).on_epoch_end(0, {"loss": 1.0})
