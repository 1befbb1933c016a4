"""Autoencoders on the bundled MNIST digits: dense, convolutional and denoising.

    python examples/autoencoder.py

Each is trained to reproduce its input (``fit(x)``: the targets are the inputs) and
scored by its test reconstruction error against the mean-image baseline (predicting the
average training digit for every input). The denoising one sees inputs corrupted by
Gaussian noise in training and is scored on cleaning noisy test digits.
"""
import numpy as np

import dlkit
from dlkit import layers
from dlkit.models import Autoencoder


def dense_autoencoder(code_size: int = 32, noise_stddev: float = 0.0) -> Autoencoder:
    encoder = dlkit.Sequential([layers.Flatten(), layers.Dense(128, activation="relu"),
                                layers.Dense(code_size, activation="relu")])
    decoder = dlkit.Sequential([layers.Dense(128, activation="relu"), layers.Dense(28 * 28, activation="sigmoid"),
                                layers.Reshape((28, 28, 1))])
    return Autoencoder(encoder, decoder, noise_stddev=noise_stddev, loss="binary_crossentropy")


def conv_autoencoder(noise_stddev: float = 0.0) -> Autoencoder:
    encoder = dlkit.Sequential([layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
                                layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")])
    decoder = dlkit.Sequential([layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
                                layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),
                                layers.Conv2D(1, 3, padding="same", activation="sigmoid")])
    return Autoencoder(encoder, decoder, noise_stddev=noise_stddev, loss="binary_crossentropy")


def train(model: Autoencoder, x_train, epochs: int, batch_size: int = 128, verbose=0) -> dlkit.Trainer:
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(2e-3))
    trainer.fit(x_train, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return trainer


def mse(a, b) -> float:
    return float(np.mean((np.asarray(a) - np.asarray(b)) ** 2))


def add_noise(x, stddev: float, seed: int = 0):
    return np.clip(x + stddev * np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32), 0.0, 1.0)


def main(epochs: int = 5) -> dict:
    (x_train, _), (x_test, _) = dlkit.datasets.split_digits()
    baseline = mse(np.broadcast_to(x_train.mean(axis=0), x_test.shape), x_test)
    print(f"mean-image baseline test MSE: {baseline:.4f}")
    results = {"baseline": baseline}
    for name, model in [("dense", dense_autoencoder()), ("conv", conv_autoencoder())]:
        trainer = train(model, x_train, epochs)
        results[name] = mse(trainer.predict(x_test, batch_size=500), x_test)
        print(f"{name} autoencoder test MSE: {results[name]:.4f}")
    noisy = add_noise(x_test, 0.3)
    trainer = train(conv_autoencoder(noise_stddev=0.3), x_train, epochs)
    results["noisy_input"], results["denoised"] = mse(noisy, x_test), mse(trainer.predict(noisy), x_test)
    print(f"denoising: noisy input MSE {results['noisy_input']:.4f} -> denoised {results['denoised']:.4f}")
    return results


if __name__ == "__main__":
    main()
