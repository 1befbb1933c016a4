"""Slow tier (``python -m pytest -q -m slow``): are VAE and GAN samples digits?

A CNN trained on real digits (``examples/mnist_cnn.py``) classifies 256 samples drawn with a
fixed seed; the issue's bar is max softmax >= 0.9 for at least 70% of them, spread over at
least 8 classes. The VAE and the GAN clear it.
"""
import jax
import numpy as np
import pytest

import dlkit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    (x_train, y_train), (x_test, _) = dlkit.datasets.split_digits()
    return x_train, y_train, np.concatenate([x_train, x_test])


@pytest.fixture(scope="module")
def classifier(digits, load_example):
    x_train, y_train, _ = digits
    trainer = dlkit.Trainer(load_example("mnist_cnn").build_model(), optimizer="adam",
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True))
    trainer.fit(x_train, y_train, batch_size=32, epochs=3, verbose=0)
    return trainer


def confident_classes(classifier, images, threshold: float = 0.9):
    """(fraction of images classified with max softmax >= threshold, how many classes those cover)."""
    p = np.asarray(jax.nn.softmax(classifier.predict(images), axis=-1))
    sure = p.max(axis=-1) >= threshold
    return float(sure.mean()), len(set(p.argmax(axis=-1)[sure].tolist()))


def test_the_classifier_is_confident_on_real_digits(classifier, digits):
    fraction, classes = confident_classes(classifier, digits[2][-1000:])
    assert fraction >= 0.9 and classes == 10


def test_vae_samples_are_confidently_digits(classifier, digits, load_example):
    """A dense 3-D VAE, 100 epochs on 10k digits (about a minute): measured 0.80 / 0.77 / 0.80 confident
    over 10 classes for seeds 0 / 1 / 2 (8-D: 0.64, 16-D: 0.57; a wider latent leaves holes the prior
    samples fall into)."""
    example = load_example("vae_mnist")
    trainer = dlkit.Trainer(example.build_vae(latent_dim=3, conv=False), optimizer="adam")
    trainer.fit(digits[2], epochs=100, batch_size=64, verbose=0)
    fraction, classes = confident_classes(classifier, dlkit.models.sample(trainer, 256, seed=0))
    assert fraction >= 0.7 and classes >= 8


def test_gan_samples_are_confidently_digits(classifier, digits, load_example):
    """The example DCGAN (batch normalization in both networks, real and generated images in separate
    discriminator batches, 16-D latent), 100 epochs on 10k digits (about 25 minutes on 2 CPU cores).
    Measured for trainer seed 0, these 256 samples: 0.67 / 0.69 / 0.69 / 0.74 / 0.74 / 0.75 confident at
    epochs 40 / 60 / 70 / 80 / 90 / 100, over 10 classes; 1024 samples: 0.64 / 0.68 / 0.69 / 0.69 / 0.71 / 0.71.
    Before (one discriminator batch of real and generated images, so no batch normalization in D): 0.57
    at 30 epochs, at most 0.70 with R1 and an averaged generator."""
    example = load_example("gan_mnist")
    trainer = example.train(example.build_gan(), digits[2], epochs=100)
    fraction, classes = confident_classes(classifier, dlkit.models.sample(trainer, 256, seed=0))
    assert fraction >= 0.7 and classes >= 8
