"""A DCGAN on the bundled MNIST digits: two networks, two optimizers, one ``fit``.

    python examples/gan_mnist.py

The generator turns 16-D Gaussian noise into 28x28 digits; the discriminator learns to
tell them from real ones, and the generator learns to fool it (``dlkit.models.GAN``
holds the step). Radford et al.'s recipe: batch normalization in both networks (the
discriminator sees real and generated images in separate batches), ReLU in the
generator, LeakyReLU in the discriminator, strided (transposed) convolutions instead of
pooling, Adam(2e-4, beta_1=0.5). A callback saves a grid of samples from fixed noise
after every epoch (``gan_epoch_<n>.png``).
"""
import numpy as np

import dlkit
from dlkit import layers
from dlkit.models import GAN


def build_gan(latent_dim: int = 16) -> GAN:
    generator = dlkit.Sequential([
        layers.Dense(7 * 7 * 128, use_bias=False), layers.BatchNormalization(), layers.Activation("relu"),
        layers.Reshape((7, 7, 128)),
        layers.Conv2DTranspose(64, 4, strides=2, padding="same", use_bias=False), layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="sigmoid"),
    ])
    discriminator = dlkit.Sequential([
        layers.Conv2D(64, 4, strides=2, padding="same"), layers.LeakyReLU(0.2),
        layers.Conv2D(128, 4, strides=2, padding="same", use_bias=False), layers.BatchNormalization(),
        layers.LeakyReLU(0.2),
        layers.Flatten(), layers.Dense(1),
    ])
    return GAN(generator, discriminator, latent_dim=latent_dim)


class SampleGrid(dlkit.callbacks.Callback):
    """Save generated digits from the same noise after each epoch, to watch them form."""

    def __init__(self, path: str, n: int = 36, seed: int = 0):
        super().__init__()
        self.path, self.n, self.seed = path, n, seed

    def on_epoch_end(self, epoch, logs=None):
        z = np.random.default_rng(self.seed).standard_normal((self.n, self.model.model.latent_dim))
        images = self.model.predict(z.astype(np.float32))
        dlkit.plot_image_grid(images, self.path.format(epoch=epoch + 1), title=f"epoch {epoch + 1}")


def train(gan: GAN, x_train, epochs: int, callbacks=(), verbose=0) -> dlkit.Trainer:
    adam = lambda: dlkit.optimizers.Adam(2e-4, beta_1=0.5)  # noqa: E731 - DCGAN's settings
    trainer = dlkit.Trainer(gan, optimizer={"generator": adam(), "discriminator": adam()})
    trainer.fit(x_train, epochs=epochs, batch_size=64, callbacks=list(callbacks), verbose=verbose)
    return trainer


def main(epochs: int = 20, out: str = ".") -> dlkit.Trainer:
    (x_train, _), _ = dlkit.datasets.split_digits()
    return train(build_gan(), x_train, epochs, [SampleGrid(f"{out}/gan_epoch_{{epoch}}.png")], verbose=2)


if __name__ == "__main__":
    main()
