"""Preprocessing and augmentation layers against numpy references (and Keras 3 where installed)."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before any Keras import; leaves a prior choice alone

import chex
import jax
import numpy as np
import pytest

import dlkit
from dlkit import layers

RNG = np.random.default_rng(7)
KEY = jax.random.key(0)


def image(h=8, w=8, c=1):
    """Distinct values everywhere, so any move of a pixel shows."""
    return np.arange(h * w * c, dtype=np.float32).reshape(h, w, c) + 1.0


def train(layer, x, key=KEY):
    return np.asarray(layer.apply({}, x, training=True, rngs={"dropout": key}))


def infer(layer, x):
    return np.asarray(layer.apply({}, x, training=False))


def normalize(layer, x):
    """An adapted Normalization holds its statistics as variables: build them, then apply."""
    return np.asarray(layer.apply(layer.init(KEY, x), x))


# ----------------------------------------------------------------------------------------------
# Rescaling and Normalization
# ----------------------------------------------------------------------------------------------

def test_rescaling_values():
    x = RNG.integers(0, 256, (3, 4, 4, 3)).astype(np.uint8)
    chex.assert_trees_all_close(infer(layers.Rescaling(1 / 255), x), x / 255.0, rtol=1e-6)
    chex.assert_trees_all_close(infer(layers.Rescaling(1 / 127.5, offset=-1.0), x), x / 127.5 - 1.0, atol=1e-6)
    per_channel = layers.Rescaling(np.array([1.0, 2.0, 3.0]), offset=[0.0, 1.0, -1.0])
    chex.assert_trees_all_close(infer(per_channel, x), x * np.array([1, 2, 3]) + np.array([0, 1, -1]), rtol=1e-6)


def test_normalization_adapt_standardises_with_training_statistics_only():
    x_train = (RNG.standard_normal((500, 4)) * [1.0, 3.0, 0.5, 10.0] + [5.0, -2.0, 0.0, 100.0]).astype(np.float32)
    blank = layers.Normalization()
    norm = blank.adapt(x_train)
    assert norm is blank and np.shape(norm.mean) == (4,)  # adapt updates the layer in place
    variables = norm.init(KEY, x_train)  # Keras' non-trainable weights, no params
    assert set(variables) == {"batch_stats"} and list(variables["batch_stats"]) == ["mean", "variance", "count"]
    y = normalize(norm, x_train)
    chex.assert_trees_all_close(y.mean(0), np.zeros(4), atol=1e-4)
    chex.assert_trees_all_close(y.std(0), np.ones(4), atol=1e-4)
    # a test set with another mean is NOT centred: it is shifted by the training statistics
    x_test = x_train + np.float32(7.0)
    y_test = normalize(norm, x_test)
    chex.assert_trees_all_close(y_test.mean(0), 7.0 / x_train.std(0), rtol=1e-3)
    assert np.all(np.abs(y_test.mean(0)) > 0.5)
    chex.assert_trees_all_close(normalize(norm, x_train[:5]), (x_train[:5] - x_train.mean(0)) / x_train.std(0),
                                atol=1e-4)


def test_normalization_images_per_channel_and_scalar():
    x = (RNG.standard_normal((64, 5, 5, 3)) * [1.0, 2.0, 4.0] + [0.0, 1.0, -3.0]).astype(np.float32)
    norm = layers.Normalization(axis=-1).adapt(x)
    assert np.shape(norm.mean) == (3,)
    y = normalize(norm, x)
    chex.assert_trees_all_close(y.mean((0, 1, 2)), np.zeros(3), atol=1e-4)
    chex.assert_trees_all_close(y.std((0, 1, 2)), np.ones(3), atol=1e-4)
    whole = layers.Normalization(axis=None).adapt(x)
    chex.assert_trees_all_close(normalize(whole, x), (x - x.mean()) / x.std(), atol=1e-4)


def test_normalization_given_statistics_and_invert():
    x = RNG.standard_normal((6, 2)).astype(np.float32)
    norm = layers.Normalization(mean=[1.0, -1.0], variance=[4.0, 0.25])
    chex.assert_trees_all_close(infer(norm, x), (x - [1.0, -1.0]) / [2.0, 0.5], rtol=1e-6)
    inverse = layers.Normalization(mean=[1.0, -1.0], variance=[4.0, 0.25], invert=True)
    chex.assert_trees_all_close(infer(inverse, infer(norm, x)), x, atol=1e-6)
    # zero variance: Keras divides by max(sqrt(variance), 1e-7), never by zero
    assert np.all(np.isfinite(infer(layers.Normalization(mean=0.0, variance=0.0), x)))


def test_normalization_before_adapt_warns_and_starts_as_keras():
    with pytest.warns(UserWarning, match=r"adapt\(x_train\)"):  # Keras' initial values, not silently
        variables = layers.Normalization().init(KEY, np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], np.zeros(3))
    np.testing.assert_array_equal(variables["batch_stats"]["variance"], np.ones(3))
    with pytest.raises(ValueError, match="both mean and variance"):
        layers.Normalization(mean=0.0)


# ----------------------------------------------------------------------------------------------
# Random augmentation: shared behaviour
# ----------------------------------------------------------------------------------------------

RANDOM_LAYERS = {
    "flip": layers.RandomFlip("horizontal_and_vertical"),
    "translation": layers.RandomTranslation(0.3, 0.3),
    "rotation": layers.RandomRotation(0.2),
    "zoom": layers.RandomZoom(0.3, 0.3),
    "crop": layers.RandomCrop(5, 6),
}


@pytest.mark.parametrize("name", RANDOM_LAYERS)
def test_random_layer_is_identity_in_inference_and_random_in_training(name):
    layer = RANDOM_LAYERS[name]
    x = np.broadcast_to(image(8, 8, 2), (16, 8, 8, 2)).copy()
    if name != "crop":  # crop: centre crop in inference, tested below
        np.testing.assert_array_equal(infer(layer, x), x)
    step = jax.jit(lambda x, key: layer.apply({}, x, training=True, rngs={"dropout": key}))
    a, b = np.asarray(step(x, jax.random.key(1))), np.asarray(step(x, jax.random.key(2)))
    np.testing.assert_allclose(a, train(layer, x, jax.random.key(1)), atol=1e-4)  # jit and eager agree
    assert a.shape == ((16, 5, 6, 2) if name == "crop" else x.shape)
    assert not np.array_equal(a, b)  # another key, another draw
    assert len({a[i].tobytes() for i in range(16)}) > 2  # each sample draws its own transform
    if name != "crop":
        assert not np.array_equal(a, x)
    unbatched = train(layer, x[0], jax.random.key(1))
    assert unbatched.shape == a.shape[1:]


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="mode"):
        layers.RandomFlip("diagonal")
    with pytest.raises(ValueError, match="fill_mode"):
        layers.RandomRotation(0.1, fill_mode="mirrored")
    with pytest.raises(ValueError, match="height_factor"):
        layers.RandomTranslation(1.5, 0.1)
    with pytest.raises(ValueError, match="Expected channels-last"):
        layers.RandomRotation(0.1).apply({}, np.zeros((8, 8)), training=True, rngs={"dropout": KEY})


# ----------------------------------------------------------------------------------------------
# Random augmentation: each transform against a reference
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, axes", [("horizontal", [(1,)]), ("vertical", [(0,)]),
                                        ("horizontal_and_vertical", [(1,), (0,), (0, 1)])])
def test_random_flip_matches_np_flip(mode, axes):
    img = image(6, 7, 2)
    out = train(layers.RandomFlip(mode), np.broadcast_to(img, (64, 6, 7, 2)))
    candidates = [img] + [np.flip(img, a) for a in axes]
    seen = [next(i for i, c in enumerate(candidates) if np.array_equal(o, c)) for o in out]  # StopIteration if none
    assert set(seen) == set(range(len(candidates)))  # over 64 samples every outcome occurs, unflipped included


def test_random_translation_by_whole_pixels_matches_shift_with_zero_fill():
    img = image(8, 8, 1)
    # fixed factors: 25% of 8 rows down (+2), 12.5% of 8 columns left (-1)
    layer = layers.RandomTranslation((0.25, 0.25), (-0.125, -0.125), fill_mode="constant")
    expected = np.roll(img, (2, -1), axis=(0, 1))
    expected[:2], expected[:, -1:] = 0.0, 0.0
    out = train(layer, np.broadcast_to(img, (4, 8, 8, 1)))
    for o in out:
        np.testing.assert_allclose(o, expected, atol=1e-5)
    filled = train(layers.RandomTranslation((0.25, 0.25), 0.0, fill_mode="constant", fill_value=-3.0), img[None])
    np.testing.assert_allclose(filled[0, :2], -3.0)


@pytest.mark.parametrize("factor, k", [(0.25, 1), (-0.25, -1), (0.5, 2)])
def test_random_rotation_quarter_turns_match_rot90(factor, k):
    img = image(7, 7, 2)  # positive factor = counter-clockwise, as np.rot90 with k > 0
    out = train(layers.RandomRotation((factor, factor), fill_mode="constant"), np.broadcast_to(img, (3, 7, 7, 2)))
    for o in out:
        np.testing.assert_allclose(o, np.rot90(img, k), atol=1e-4)


def test_random_zoom_in_and_out_about_the_centre():
    img = image(9, 9, 1)
    # zoom in 2x (factor -0.5): the centre pixel stays, its neighbours are half a pixel away
    zin = train(layers.RandomZoom((-0.5, -0.5), fill_mode="constant"), img[None])[0, :, :, 0]
    assert zin[4, 4] == img[4, 4, 0]
    np.testing.assert_allclose(zin[4, 5], (img[4, 4, 0] + img[4, 5, 0]) / 2, rtol=1e-6)
    # zoom out 2x (factor 1.0): output pixel (y, x) reads input (2y - 4, 2x - 4); outside is filled with 0
    zout = train(layers.RandomZoom((1.0, 1.0), fill_mode="constant"), img[None])[0, :, :, 0]
    np.testing.assert_allclose(zout[2:7, 2:7], img[::2, ::2, 0], rtol=1e-6)
    assert np.all(zout[:2] == 0) and np.all(zout[:, 7:] == 0)
    # width_factor=None keeps the aspect ratio; a separate width factor zooms columns only
    wide = train(layers.RandomZoom((0.0, 0.0), (1.0, 1.0), fill_mode="constant"), img[None])[0, :, :, 0]
    np.testing.assert_allclose(wide[:, 2:7], img[:, ::2, 0], rtol=1e-6)


def test_random_crop_shapes_windows_and_centre_in_inference():
    x = RNG.standard_normal((32, 10, 9, 2)).astype(np.float32)
    layer = layers.RandomCrop(4, 5)
    out = train(layer, x)
    assert out.shape == (32, 4, 5, 2)
    offsets = []
    for src, o in zip(x, out):
        found = [(t, c) for t in range(7) for c in range(5) if np.array_equal(src[t:t + 4, c:c + 5], o)]
        assert found, "a training crop is not a window of its input"
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # per-sample offsets
    np.testing.assert_array_equal(infer(layer, x), x[:, 3:7, 2:7])  # centre: ((10-4)//2, (9-5)//2)
    # smaller than the target: centre-cropped to the aspect ratio, then resized (Keras' smart_resize)
    assert infer(layers.RandomCrop(12, 12), x).shape == (32, 12, 12, 2)


@pytest.mark.parametrize("fill_mode", ["reflect", "constant", "nearest", "wrap"])
def test_fixed_transforms_match_keras(fill_mode):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("the Keras comparison runs on its jax backend")
    x = RNG.standard_normal((2, 6, 7, 2)).astype(np.float32)
    pairs = [
        (layers.RandomRotation((0.1, 0.1), fill_mode, fill_value=0.5),
         keras.layers.RandomRotation((0.1, 0.1), fill_mode=fill_mode, fill_value=0.5)),
        (layers.RandomTranslation((0.3, 0.3), (-0.2, -0.2), fill_mode),
         keras.layers.RandomTranslation((0.3, 0.3), (-0.2, -0.2), fill_mode=fill_mode)),
        (layers.RandomZoom((0.3, 0.3), None, fill_mode, "nearest"),
         keras.layers.RandomZoom((0.3, 0.3), None, fill_mode=fill_mode, interpolation="nearest")),
        (layers.RandomZoom((-0.4, -0.4), (0.2, 0.2), fill_mode),
         keras.layers.RandomZoom((-0.4, -0.4), (0.2, 0.2), fill_mode=fill_mode)),
    ]
    for ours, theirs in pairs:
        expected = np.asarray(keras.ops.convert_to_numpy(theirs(x, training=True)))
        np.testing.assert_allclose(train(ours, x), expected, atol=1e-4, err_msg=type(ours).__name__)


# ----------------------------------------------------------------------------------------------
# In a model, through the Trainer
# ----------------------------------------------------------------------------------------------

def test_augmented_model_trains_and_predicts_deterministically(digits8x8):
    x, y = digits8x8
    x = x.reshape(-1, 8, 8, 1)
    model = dlkit.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.05), layers.Flatten(),
                              layers.Dense(10)])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(0.01), metrics=["accuracy"],
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = trainer.fit(x[:1500], y[:1500], batch_size=64, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] * 0.7
    first, second = trainer.predict(x[1500:], verbose=0), trainer.predict(x[1500:], verbose=0)
    np.testing.assert_array_equal(first, second)
    assert np.mean(np.argmax(first, -1) == y[1500:]) > 0.6


def test_adapted_normalization_in_a_model_has_no_trainable_params():
    x = RNG.standard_normal((50, 3)).astype(np.float32) * 4 + 2
    model = dlkit.Sequential([layers.Normalization().adapt(x), layers.Dense(2)])
    variables = model.init(KEY, x)
    assert set(variables["params"]) == {"dense"} and set(variables["batch_stats"]) == {"normalization"}
    stats = {"batch_stats": variables["batch_stats"]["normalization"]}
    chex.assert_trees_all_close(model.layers[0].apply(stats, x).mean(0), np.zeros(3), atol=1e-4)
