"""Autoencoder, VAE and GAN: the maths of their pieces, the GAN's update rules, and learning on MNIST."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlkit
from dlkit.models import GAN, VAE, Sampling, kl_divergence
from dlkit.training import Batch


@pytest.fixture(scope="module")
def digits():
    """4000 training and 1000 test MNIST digits (the bundled set)."""
    (x_train, _), (x_test, _) = dlkit.datasets.split_digits()
    return x_train[:4000], x_test[:1000]


def mse(a, b) -> float:
    return float(np.mean((np.asarray(a) - np.asarray(b)) ** 2))


# ------------------------------------------------------------------ VAE pieces
def test_kl_term_equals_the_closed_form_and_a_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    mean, log_var = rng.normal(size=(5, 3)), rng.normal(scale=0.5, size=(5, 3))
    var = np.exp(log_var)
    closed = 0.5 * np.sum(var + mean ** 2 - 1.0 - log_var, axis=-1)  # KL(N(m, s^2) || N(0, 1)), summed
    chex.assert_trees_all_close(np.asarray(kl_divergence(jnp.asarray(mean), jnp.asarray(log_var))), closed,
                                rtol=1e-5)
    # E_q[log q(z) - log p(z)] by sampling, for the first row
    z = mean[0] + np.sqrt(var[0]) * rng.standard_normal((200_000, 3))
    log_q = -0.5 * np.sum((z - mean[0]) ** 2 / var[0] + log_var[0] + np.log(2 * np.pi), axis=-1)
    log_p = -0.5 * np.sum(z ** 2 + np.log(2 * np.pi), axis=-1)
    np.testing.assert_allclose(np.mean(log_q - log_p), closed[0], rtol=0.02)


def test_the_kl_term_reaches_the_loss_through_add_loss(digits):
    x, _ = digits
    vae = VAE(dlkit.Sequential([dlkit.layers.Flatten(), dlkit.layers.Dense(8)]),
              dlkit.Sequential([dlkit.layers.Dense(784, activation="sigmoid"), dlkit.layers.Reshape((28, 28, 1))]),
              latent_dim=3, beta=0.5)
    variables = vae.init(jax.random.key(0), x[:4])
    _, sown = vae.apply(variables, x[:4], mutable=["losses"])
    z_mean, z_log_var = vae.apply(variables, x[:4], method="encode")
    expected = 0.5 * np.mean(kl_divergence(z_mean, z_log_var))
    chex.assert_trees_all_close(sown["losses"]["kl_loss"][0], expected, rtol=1e-6)


def test_reparameterisation_gives_gradients_to_mean_and_log_variance():
    layer = Sampling()
    mean, log_var = jnp.array([[0.3, -1.0]]), jnp.array([[0.2, -0.4]])
    rngs = {"dropout": jax.random.key(7)}

    def z_sum(m, lv):
        return jnp.sum(layer.apply({}, (m, lv), training=True, rngs=rngs))

    eps = (layer.apply({}, (mean, log_var), training=True, rngs=rngs) - mean) / jnp.exp(0.5 * log_var)
    d_mean, d_log_var = jax.grad(z_sum, argnums=(0, 1))(mean, log_var)
    chex.assert_trees_all_close(d_mean, jnp.ones_like(mean))
    chex.assert_trees_all_close(d_log_var, 0.5 * jnp.exp(0.5 * log_var) * eps, rtol=1e-5)
    assert np.all(np.abs(np.asarray(d_log_var)) > 0)
    chex.assert_trees_all_equal(layer.apply({}, (mean, log_var), training=False), mean)  # inference: the mean


# ------------------------------------------------------------------ GAN update rules
def tiny_gan(dropout: float = 0.3, r1_gamma: float = 0.0):
    generator = dlkit.Sequential([dlkit.layers.Dense(16, activation="relu"), dlkit.layers.Dense(4 * 4),
                                  dlkit.layers.Reshape((4, 4, 1))])
    discriminator = dlkit.Sequential([dlkit.layers.Flatten(), dlkit.layers.Dense(8), dlkit.layers.LeakyReLU(0.2),
                                      dlkit.layers.Dropout(dropout), dlkit.layers.Dense(1)])
    gan = GAN(generator, discriminator, latent_dim=5, r1_gamma=r1_gamma)
    adam = dlkit.optimizers.Adam(1e-2, beta_1=0.5)
    trainer = dlkit.Trainer(gan, optimizer={"generator": adam, "discriminator": adam})
    real = np.random.default_rng(0).uniform(size=(64, 4, 4, 1)).astype(np.float32)
    trainer.fit(real, epochs=1, batch_size=16, verbose=0)  # a few steps, so Adam's moments are not zero
    return gan, trainer, real


@pytest.fixture(scope="module")
def trained_gan():
    """One ``tiny_gan()`` for the tests that only read its state (each builds new states from it)."""
    return tiny_gan()


def batch_of(real):
    ones = np.ones(len(real), np.float32)
    return Batch(jnp.asarray(real), jnp.zeros(len(real)), ones, ones)


def test_the_discriminator_is_frozen_in_the_generator_update(trained_gan):
    gan, trainer, _ = trained_gan
    state = trainer.state
    new, _ = jax.jit(gan.generator_step, static_argnums=1)(state, 16)
    chex.assert_trees_all_equal(new.params["discriminator"], state.params["discriminator"])
    chex.assert_trees_all_equal(new.opt_state["discriminator"], state.opt_state["discriminator"])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.params["generator"], state.params["generator"])
    assert all(jax.tree.leaves(changed))


def test_the_generator_update_never_sees_the_real_batch(trained_gan):
    gan, trainer, real = trained_gan
    step = jax.jit(gan.train_step)
    other = np.random.default_rng(1).uniform(size=real[:16].shape).astype(np.float32)
    a, _ = step(trainer.state, batch_of(real[:16]))
    b, _ = step(trainer.state, batch_of(other))
    chex.assert_trees_all_equal(a.params["generator"], b.params["generator"])
    chex.assert_trees_all_equal(a.opt_state["generator"], b.opt_state["generator"])
    assert not np.array_equal(a.params["discriminator"]["dense"]["kernel"],
                              b.params["discriminator"]["dense"]["kernel"])


def test_the_discriminator_update_leaves_the_generator_unchanged(trained_gan):
    gan, trainer, real = trained_gan
    new, _ = jax.jit(gan.discriminator_step)(trainer.state, jnp.asarray(real[:16]))
    chex.assert_trees_all_equal(new.params["generator"], trainer.state.params["generator"])
    assert not np.array_equal(new.params["discriminator"]["dense_1"]["kernel"],
                              trainer.state.params["discriminator"]["dense_1"]["kernel"])


def test_the_r1_penalty_is_half_gamma_times_the_squared_input_gradient_of_d():
    gan, trainer, real = tiny_gan(dropout=0.0, r1_gamma=3.0)
    state, x = trainer.state, real[:16].astype(np.float64)
    variables = {"params": state.params, **state.model_state}

    logits = jax.jit(lambda images: state.apply_fn(variables, images, method="discriminate"))  # one program

    def d(images):  # D's logits, in numpy
        return np.asarray(logits(images.astype(np.float32)))[:, 0]

    eps, grads = 1e-2, np.zeros_like(x)  # D is piecewise linear: central differences are exact off the kinks
    for i in np.ndindex(x.shape[1:]):
        step = np.zeros_like(x)
        step[(slice(None), *i)] = eps
        grads[(slice(None), *i)] = (d(x + step) - d(x - step)) / (2 * eps)
    expected = 1.5 * np.mean(np.sum(grads ** 2, axis=(1, 2, 3)))
    penalty = gan.r1_penalty(state, jnp.asarray(real[:16]))
    chex.assert_trees_all_close(penalty(state.params["discriminator"]), expected, rtol=1e-3)
    # it reaches D's update: with it, D's weights move differently
    plain = GAN(gan.generator, gan.discriminator, latent_dim=5)
    with_r1, _ = jax.jit(gan.discriminator_step)(state, jnp.asarray(real[:16]))
    without, _ = jax.jit(plain.discriminator_step)(state, jnp.asarray(real[:16]))
    assert not np.allclose(with_r1.params["discriminator"]["dense"]["kernel"],
                           without.params["discriminator"]["dense"]["kernel"])


def test_a_gan_checkpoint_with_two_optimizers_round_trips(tmp_path, trained_gan):
    gan, trainer, real = trained_gan
    trainer.save_checkpoint(str(tmp_path / "ckpt"))
    restored = dlkit.Trainer(gan, optimizer={"generator": "adam", "discriminator": "adam"})
    restored.load_checkpoint(str(tmp_path / "ckpt"))
    chex.assert_trees_all_equal(restored.state.params, trainer.state.params)
    chex.assert_trees_all_equal(restored.state.opt_state, trainer.state.opt_state)


# ------------------------------------------------------------------ learning on MNIST
def test_autoencoders_reconstruct_well_below_the_mean_image_baseline(digits, load_example):
    example = load_example("autoencoder")
    x_train, x_test = digits
    baseline = mse(np.broadcast_to(x_train.mean(axis=0), x_test.shape), x_test)
    dense = example.train(example.dense_autoencoder(), x_train, epochs=3, batch_size=32)
    assert mse(dense.predict(x_test), x_test) < 0.5 * baseline  # measured 0.35
    conv = example.train(example.conv_autoencoder(), x_train, epochs=1, batch_size=32)
    assert mse(conv.predict(x_test), x_test) < 0.2 * baseline  # measured 0.07


def test_a_denoising_autoencoder_cleans_noisy_digits(digits, load_example):
    example = load_example("autoencoder")
    x_train, x_test = digits
    trainer = example.train(example.conv_autoencoder(noise_stddev=0.3), x_train, epochs=2, batch_size=32)
    noisy = example.add_noise(x_test, 0.3)
    assert mse(trainer.predict(noisy), x_test) < 0.35 * mse(noisy, x_test)  # measured 0.16


def test_vae_reconstructs_below_baseline_samples_and_interpolates(digits, load_example, tmp_path):
    example = load_example("vae_mnist")
    x_train, x_test = digits
    trainer = example.train(example.build_vae(latent_dim=16, conv=False), x_train, x_test, epochs=3, batch_size=32)
    logs = trainer.evaluate(x_test, return_dict=True)
    assert list(logs) == ["loss", "reconstruction_loss", "kl_loss"] and logs["kl_loss"] > 0
    baseline = mse(np.broadcast_to(x_train.mean(axis=0), x_test.shape), x_test)
    assert mse(trainer.predict(x_test), x_test) < 0.65 * baseline  # measured 0.48
    samples = dlkit.models.sample(trainer, 8, seed=0)
    chex.assert_shape(samples, (8, 28, 28, 1))
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    path = dlkit.models.interpolate(trainer, x_test[0], x_test[1], steps=5)
    ends = trainer.predict(trainer.predict(x_test[:2], method="encode")[0], method="generate")
    chex.assert_trees_all_close(path[[0, -1]], ends, atol=1e-5)
    assert mse(path[2], path[0]) > 0  # the middle differs from the ends
    with pytest.raises(ValueError, match="latent_dim is 16"):
        dlkit.plot_latent_space(trainer, str(tmp_path / "latent.png"))


def test_plot_latent_space_decodes_a_grid_of_2d_codes(digits, load_example, tmp_path):
    example = load_example("vae_mnist")
    _, x_test = digits
    trainer = dlkit.Trainer(example.build_vae(latent_dim=2, conv=False))  # the grid's layout needs no training:
    trainer.build(x_test[:1])  # its random decoder gives each code its own image too
    png = dlkit.plot_latent_space(trainer, str(tmp_path / "latent.png"), n=5, scale=2.0)
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    grid = np.stack(np.meshgrid(np.linspace(-2, 2, 5), np.linspace(2, -2, 5)), -1).reshape(-1, 2)
    images = trainer.predict(grid.astype(np.float32), method="generate")
    assert len({image.tobytes() for image in images}) == 25  # so a tile in the wrong place would show
    tiled = dlkit.plotting.image_grid(images, cols=5)
    chex.assert_shape(tiled, (5 * 28, 5 * 28))
    chex.assert_trees_all_equal(tiled[28:56, 56:84], images[7, ..., 0])  # row 1, column 2


def test_summary_lists_the_discriminator_the_forward_pass_does_not_call(trained_gan):
    _, trainer, _ = trained_gan
    lines = []
    trainer.summary(print_fn=lines.append)
    table = lines[0]
    assert next(line for line in table.splitlines() if line.startswith("generator")).split()[2:5] == \
        ["(None,", "4,", "4,"]
    row = next(line for line in table.splitlines() if line.startswith("discriminator"))
    assert row.split()[-1] == "145"  # Dense(16 -> 8) + Dense(8 -> 1)


def test_each_network_updates_its_batch_statistics_in_its_own_step():
    generator = dlkit.Sequential([dlkit.layers.Dense(16), dlkit.layers.BatchNormalization(),
                                  dlkit.layers.Reshape((4, 4, 1))])
    discriminator = dlkit.Sequential([dlkit.layers.Flatten(), dlkit.layers.Dense(4),
                                      dlkit.layers.BatchNormalization(), dlkit.layers.Dense(1)])
    gan = GAN(generator, discriminator, latent_dim=3)
    trainer = dlkit.Trainer(gan, optimizer={"generator": "adam", "discriminator": "adam"})
    state = trainer.state
    real = jnp.asarray(np.random.default_rng(0).uniform(size=(8, 4, 4, 1)), jnp.float32)
    after_g, _ = jax.jit(gan.generator_step, static_argnums=1)(state, 8)
    stats, new_stats = state.model_state["batch_stats"], after_g.model_state["batch_stats"]
    chex.assert_trees_all_equal(new_stats["discriminator"], stats["discriminator"])  # frozen: inference statistics
    assert not np.allclose(new_stats["generator"]["batch_normalization"]["moving_mean"],
                           stats["generator"]["batch_normalization"]["moving_mean"])
    after_d, _ = jax.jit(gan.discriminator_step)(state, real)
    chex.assert_trees_all_equal(after_d.model_state["batch_stats"]["generator"], stats["generator"])
    assert not np.allclose(after_d.model_state["batch_stats"]["discriminator"]["batch_normalization"]["moving_mean"],
                           stats["discriminator"]["batch_normalization"]["moving_mean"])


def test_the_discriminator_normalizes_real_and_generated_images_in_separate_batches():
    """DCGAN's recipe: D's batch statistics come from the real batch, then from the generated batch,
    never from a mix. A BatchNormalization on the pixels makes each pass's mean visible."""
    generator = dlkit.Sequential([dlkit.layers.Dense(16), dlkit.layers.Reshape((4, 4, 1))])
    discriminator = dlkit.Sequential([dlkit.layers.BatchNormalization(momentum=0.5), dlkit.layers.Flatten(),
                                      dlkit.layers.Dense(1)])
    gan = GAN(generator, discriminator, latent_dim=3)
    state = dlkit.Trainer(gan, optimizer={"generator": "adam", "discriminator": "adam"}).state
    real = jnp.asarray(np.random.default_rng(0).uniform(2.0, 3.0, size=(8, 4, 4, 1)), jnp.float32)
    z = gan.latents(dlkit.training.step_rng(state, "discriminator_z"), 8)
    fake = dlkit.training.apply(state, z, method="generate", rng=dlkit.training.step_rng(state, "fake")).outputs
    before = state.model_state["batch_stats"]["discriminator"]["batch_normalization"]["moving_mean"]
    after_d, _ = jax.jit(gan.discriminator_step)(state, real)
    after = after_d.model_state["batch_stats"]["discriminator"]["batch_normalization"]["moving_mean"]
    real_mean, fake_mean = np.mean(real, axis=(0, 1, 2)), np.mean(fake, axis=(0, 1, 2))
    chex.assert_trees_all_close(after, 0.5 * (0.5 * before + 0.5 * real_mean) + 0.5 * fake_mean, rtol=1e-5)
    mixed = 0.5 * before + 0.5 * (real_mean + fake_mean) / 2  # what one concatenated batch would give
    assert not np.allclose(after, mixed, rtol=1e-2)


def test_the_example_gan_trains_and_saves_a_sample_grid_per_epoch(digits, load_example, tmp_path):
    example = load_example("gan_mnist")
    grids = example.SampleGrid(str(tmp_path / "gan_epoch_{epoch}.png"), n=16)
    logs = []
    record = dlkit.callbacks.LambdaCallback(on_epoch_end=lambda epoch, epoch_logs=None: logs.append(epoch_logs))
    trainer = example.train(example.build_gan(), digits[0][:512], epochs=2, callbacks=[grids, record])
    for epoch in (1, 2):
        assert open(tmp_path / f"gan_epoch_{epoch}.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(logs) == 2 and all(np.isfinite(epoch_logs[k]) for epoch_logs in logs for k in ("d_loss", "g_loss"))
    samples = dlkit.models.sample(trainer, 8, seed=0)
    chex.assert_shape(samples, (8, 28, 28, 1))
    assert 0.0 <= samples.min() and samples.max() <= 1.0
