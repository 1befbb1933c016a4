"""Autoencoders: a model trained to reproduce its input through a narrower code.

``Autoencoder(encoder, decoder)`` learns ``decoder(encoder(x)) ≈ x``: its step uses the
inputs as targets, so ``Trainer(Autoencoder(...)).fit(x)`` needs no ``y``. With
``noise_stddev > 0`` it is a *denoising* autoencoder: in training the input is corrupted
with Gaussian noise before encoding, and the clean input stays the target.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from dlkit import losses as losses_lib
from dlkit.layers.base import call_with_training
from dlkit.layers.core import GaussianNoise
from dlkit.training.step import apply, masked_mean


class Autoencoder(nn.Module):
    """``decoder(encoder(x))``, trained on ``loss(x, decoder(encoder(x)))`` (mean over rows).

    ``encode`` and ``decode`` run one half: ``trainer.predict(x, method='encode')``.
    """

    encoder: nn.Module
    decoder: nn.Module
    noise_stddev: float = 0.0
    loss: Any = "mse"

    def setup(self):
        self.noise = GaussianNoise(self.noise_stddev)

    def encode(self, x, training: bool = False):
        return call_with_training(self.encoder, x, training)

    def decode(self, code, training: bool = False):
        return call_with_training(self.decoder, code, training)

    def __call__(self, x, training: bool = False):
        return self.decode(self.encode(self.noise(x, training=training), training), training)

    def reconstruction_error(self, state, batch, params=None, training: bool = False):
        """``(mean per-row loss against the clean input, updated model state)``."""
        out = apply(state, batch.x, params, training=training)
        per_row = losses_lib.get(self.loss).per_row(batch.x, out.outputs)
        return masked_mean(per_row, batch.mask) + out.added_loss, out.model_state

    def train_step(self, state, batch):
        def loss_fn(params):
            return self.reconstruction_error(state, batch, params, training=True)

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads).replace(model_state={**state.model_state, **updates})
        return state, {"loss": loss}

    def test_step(self, state, batch):
        return {"loss": self.reconstruction_error(state, batch)[0]}
