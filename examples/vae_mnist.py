"""A variational autoencoder on the bundled MNIST digits (Chollet, ch. 12).

    python examples/vae_mnist.py

Trains a VAE with a 2-D latent space (dense by default; ``conv=True`` for Chollet's
convolutional one, several times slower on a CPU), prints the test reconstruction error
against the mean-image baseline, and writes three PNGs: the decoded latent grid
(``vae_latent_space.png``), an interpolation between two test digits
(``vae_interpolation.png``), and random samples (``vae_samples.png``).
"""
import numpy as np

import dlkit
from dlkit import layers
from dlkit.models import VAE, interpolate, sample


def build_vae(latent_dim: int = 2, conv: bool = True) -> VAE:
    if conv:
        encoder = dlkit.Sequential([layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
                                    layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
                                    layers.Flatten(), layers.Dense(16, activation="relu")])
        decoder = dlkit.Sequential([layers.Dense(7 * 7 * 64, activation="relu"), layers.Reshape((7, 7, 64)),
                                    layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu"),
                                    layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
                                    layers.Conv2D(1, 3, padding="same", activation="sigmoid")])
    else:
        encoder = dlkit.Sequential([layers.Flatten(), layers.Dense(512, activation="relu"),
                                    layers.Dense(256, activation="relu")])
        decoder = dlkit.Sequential([layers.Dense(256, activation="relu"), layers.Dense(512, activation="relu"),
                                    layers.Dense(28 * 28, activation="sigmoid"), layers.Reshape((28, 28, 1))])
    return VAE(encoder, decoder, latent_dim=latent_dim)


def train(vae: VAE, x_train, x_test, epochs: int, batch_size: int = 128, verbose=0) -> dlkit.Trainer:
    trainer = dlkit.Trainer(vae, optimizer=dlkit.optimizers.Adam(1e-3))
    trainer.fit(x_train, epochs=epochs, batch_size=batch_size, validation_data=(x_test,), verbose=verbose)
    return trainer


def main(epochs: int = 30, conv: bool = False, out: str = ".") -> dict:
    (x_train, _), (x_test, _) = dlkit.datasets.split_digits()
    trainer = train(build_vae(latent_dim=2, conv=conv), x_train, x_test, epochs, batch_size=64, verbose=2)
    reconstruction = float(np.mean((trainer.predict(x_test, batch_size=500) - x_test) ** 2))
    baseline = float(np.mean((x_train.mean(axis=0) - x_test) ** 2))
    print(f"test reconstruction MSE {reconstruction:.4f} (mean-image baseline {baseline:.4f})")
    dlkit.plot_latent_space(trainer, f"{out}/vae_latent_space.png", n=15, scale=2.0)
    dlkit.plot_image_grid(interpolate(trainer, x_test[0], x_test[1], steps=10), f"{out}/vae_interpolation.png",
                          cols=10)
    dlkit.plot_image_grid(sample(trainer, 64, seed=0), f"{out}/vae_samples.png")
    return {"reconstruction": reconstruction, "baseline": baseline}


if __name__ == "__main__":
    main()
