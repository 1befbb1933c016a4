"""dlkit.inspection: Grad-CAM, class activation maps and saliency find the evidence where it is, the
gradient check passes on real layers and fails on a wrong derivative, and TensorBoard's histograms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit import inspection, layers

PLUS = np.array([[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]], np.float32)
RING = np.pad(np.zeros((3, 3), np.float32), 1, constant_values=1.0)
CROSS = np.minimum(np.eye(5) + np.eye(5)[::-1], 1).astype(np.float32)


def quadrant_images(n: int, seed: int, clutter: int = 2, where: bool = False):
    """16x16 images in noise: the class's shape (plus, ring or cross, 5x5) somewhere in one quadrant, and in
    ``clutter`` other quadrants a random 5x5 pattern of 10 bright pixels, which is no class. ``where``: the
    class is the quadrant of a plus instead, and the clutter is rings. Returns ``(x, class, quadrant)``,
    quadrants numbered 0 1 / 2 3."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.1, (n, 16, 16, 1)).astype(np.float32)
    y, quadrant = rng.integers(0, 3, n), rng.integers(0, 4, n)
    for i in range(n):
        others = rng.permutation([k for k in range(4) if k != quadrant[i]])[:clutter]
        for k in (quadrant[i], *others):
            if where:
                pattern = PLUS if k == quadrant[i] else RING
            else:
                pattern = (PLUS, RING, CROSS)[y[i]] if k == quadrant[i] else (rng.permutation(25) < 10).reshape(5, 5)
            (row, col), (dr, dc) = divmod(k, 2), rng.integers(0, 4, 2)
            x[i, 8 * row + dr:8 * row + dr + 5, 8 * col + dc:8 * col + dc + 5, 0] += pattern
    return x, (quadrant if where else y), quadrant


def peak_quadrant(maps) -> np.ndarray:
    """The quadrant (0 1 / 2 3) of each map's maximum."""
    rows, cols = maps.shape[1:3]
    row, col = np.unravel_index(maps.reshape(len(maps), -1).argmax(1), (rows, cols))
    return (row >= rows // 2) * 2 + (col >= cols // 2)


def cnn(classes: int = 3):
    model = dlkit.Sequential([dlkit.Input((16, 16, 1)), layers.Conv2D(8, 3, activation="relu", padding="same"),
                              layers.MaxPooling2D(2), layers.Conv2D(16, 3, activation="relu", padding="same"),
                              layers.GlobalAveragePooling2D(), layers.Dense(classes)])
    return dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(0.01), metrics=["accuracy"],
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))


@pytest.fixture(scope="module")
def trained():
    """The CNN trained on 800 clutter images; 200 held-out ones."""
    x, y, quadrant = quadrant_images(1000, seed=0)
    trainer = cnn()
    trainer.fit(x[:800], y[:800], batch_size=32, epochs=10, verbose=0)
    return trainer, x[800:], y[800:], quadrant[800:]


def test_grad_cam_peaks_in_the_quadrant_of_the_class_pattern(trained):
    trainer, x, y, quadrant = trained
    assert trainer.evaluate(x, y, verbose=0)[1] > 0.85
    maps = inspection.grad_cam(trainer, x, layer="conv2d_1", class_index=y)
    assert maps.shape == (200, 16, 16) and maps.min() >= 0.0 and np.allclose(maps.max(axis=(1, 2)), 1.0)
    hits = np.mean(peak_quadrant(maps) == quadrant)
    assert hits > 0.8, hits
    assert np.mean(peak_quadrant(x[..., 0]) == quadrant) < 0.5  # the brightest pixel would not do
    # The predicted class (the default) explains the same evidence where the model is right.
    predicted = inspection.grad_cam(trainer, x, layer="conv2d_1")
    right = trainer.predict(x).argmax(-1) == y
    np.testing.assert_allclose(predicted[right], maps[right], atol=1e-5)
    raw = inspection.grad_cam(trainer, x[:4], layer="conv2d_1", class_index=y[:4], upsample=False, normalize=False)
    assert raw.shape == (4, 8, 8)  # the feature map's size
    with pytest.raises(ValueError, match="No layer 'conv2d_9'.*conv2d, max_pooling2d, conv2d_1"):
        inspection.grad_cam(trainer, x[:2], layer="conv2d_9")


def test_class_activation_map_is_the_dense_weighted_feature_map_and_grad_cam_generalises_it(trained):
    trainer, x, y, quadrant = trained
    x, y, quadrant = x[:8], y[:8], quadrant[:8]
    cam = inspection.class_activation_map(trainer, x, class_index=y, upsample=False, normalize=False)
    features = inspection.activations(trainer, x)["conv2d_1"]  # what the pooling averages
    kernel = trainer.state.params["dense"]["kernel"]
    np.testing.assert_allclose(cam, np.einsum("bijk,kb->bij", features, np.asarray(kernel)[:, y]), rtol=1e-5,
                               atol=1e-5)
    # Selvaraju et al.: with global average pooling then Dense, Grad-CAM = relu(CAM) / positions.
    grad = inspection.grad_cam(trainer, x, layer="conv2d_1", class_index=y, upsample=False, normalize=False)
    np.testing.assert_allclose(grad, np.maximum(cam, 0) / 64, rtol=1e-4, atol=1e-6)
    scaled = inspection.class_activation_map(trainer, x, class_index=y)
    assert scaled.shape == (8, 16, 16) and np.allclose(scaled.min((1, 2)), 0) and np.allclose(scaled.max((1, 2)), 1)
    flat = dlkit.Trainer(dlkit.Sequential([dlkit.Input((16, 16, 1)), layers.Flatten(), layers.Dense(3)]), loss="mse")
    with pytest.raises(ValueError, match="GlobalAveragePooling and Dense"):
        inspection.class_activation_map(flat, x)


def test_saliency_has_the_input_shape_and_is_largest_in_the_informative_quadrant():
    # The class is where the plus is; a dense model's output depends on those pixels (a pooled CNN's
    # gradients, the same at every position, would show where its units are active instead).
    x, y, quadrant = quadrant_images(1000, seed=2, clutter=2, where=True)
    model = dlkit.Sequential([dlkit.Input((16, 16, 1)), layers.Flatten(), layers.Dense(32, activation="relu"),
                              layers.Dense(4)])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(0.01), metrics=["accuracy"],
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(x[:800], y[:800], batch_size=32, epochs=2, verbose=0)
    assert trainer.evaluate(x[800:], y[800:], verbose=0)[1] > 0.9
    gradients = inspection.saliency(trainer, x[800:], class_index=y[800:])
    assert gradients.shape == (200, 16, 16, 1) and gradients.min() >= 0
    per_quadrant = gradients[..., 0].reshape(200, 2, 8, 2, 8).sum(axis=(2, 4)).reshape(200, 4)
    hits = np.mean(per_quadrant.argmax(1) == quadrant[800:])
    assert hits > 0.9, hits


def test_plot_heatmap_overlays_the_map_on_the_image(trained):
    trainer, x, y, _ = trained
    heatmap = inspection.grad_cam(trainer, x[:1], layer="conv2d_1", upsample=False)[0]
    axis = dlkit.plotting.plot_heatmap(x[0], heatmap)
    image, overlay = axis.images
    np.testing.assert_array_equal(image.get_array(), x[0, ..., 0])
    np.testing.assert_array_equal(overlay.get_array(), heatmap)
    assert overlay.get_extent() == [-0.5, 15.5, 15.5, -0.5]  # stretched over the 16x16 image


@pytest.mark.parametrize("layer, shape", [(layers.Dense(3, activation="tanh"), (2, 4)),
                                          (layers.Conv2D(2, 3, padding="same"), (1, 5, 5, 2)),
                                          (layers.LSTM(3, return_sequences=True), (2, 4, 2))])
def test_check_gradients_passes_on_layers(layer, shape):
    inspection.check_gradients(layer, np.random.default_rng(0).normal(size=shape), rtol=1e-6, atol=1e-6)


@jax.custom_vjp
def wrong_sin(x):
    return jnp.sin(x)


wrong_sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x) * 1.01,))  # 1% too steep


def test_check_gradients_fails_on_a_wrong_derivative_and_passes_on_a_right_one():
    x = np.linspace(-1.0, 1.0, 5)
    with pytest.raises(AssertionError):
        inspection.check_gradients(lambda x: wrong_sin(x) ** 2, x)
    inspection.check_gradients(lambda x: jnp.sin(x) ** 2, x, order=2, modes=("fwd", "rev"))
    ids = np.array([0, 2])  # an integer argument is held fixed
    inspection.check_gradients(lambda table, ids: jnp.tanh(table[ids]).sum(), np.ones((3, 2)) * 0.3, ids)
    with pytest.raises(ValueError, match="floating argument"):
        inspection.check_gradients(lambda ids: ids * 2, ids)


def test_tensorboard_writes_weight_and_activation_histograms_every_k_epochs(tmp_path, digits8x8):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = digits8x8
    model = dlkit.Sequential([dlkit.Input((64,)), layers.Dense(8, activation="relu"),
                              layers.BatchNormalization(), layers.Dense(10)])
    trainer = dlkit.Trainer(model, optimizer="adam", loss=dlkit.losses.SparseCategoricalCrossentropy(True))
    board = dlkit.callbacks.TensorBoard(tmp_path, histogram_freq=2, activation_data=x[:64])
    trainer.fit(x[:256], y[:256], batch_size=64, epochs=3, callbacks=[board], verbose=0)
    events = EventAccumulator(str(tmp_path / "train"), size_guidance={"histograms": 0}).Reload()
    tags = set(events.Tags()["histograms"])
    assert {"dense/kernel/histogram", "dense/bias/histogram", "dense_1/kernel/histogram",
            "batch_normalization/moving_mean/histogram", "dense/activations/histogram",
            "dense_1/activations/histogram"} <= tags
    kernel = events.Histograms("dense_1/kernel/histogram")
    assert [e.step for e in kernel] == [0, 2]  # epochs 0, k, 2k ... as Keras
    last, weights = kernel[-1].histogram_value, np.asarray(trainer.state.params["dense_1"]["kernel"])
    assert last.num == weights.size
    np.testing.assert_allclose([last.min, last.max, last.sum], [weights.min(), weights.max(), weights.sum()],
                               rtol=1e-5, atol=1e-5)
    relu = events.Histograms("dense/activations/histogram")[-1].histogram_value
    assert relu.num == 64 * 8 and relu.min == 0.0  # the relu layer's outputs on the 64 samples
    with pytest.raises(ValueError, match="histogram_freq"):
        dlkit.callbacks.TensorBoard(tmp_path, histogram_freq=-1)
