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
    """An autoencoder ``decoder(encoder(x))``, trained on ``loss(x, decoder(encoder(x + noise)))``.

    The loss is the mean over the batch's real rows of the per-row ``loss`` (``sample_weight``
    is not used), plus any ``add_loss`` terms; ``noise ~ N(0, noise_stddev^2)`` in training only
    (a denoising autoencoder; Vincent et al., 2008). ``encode`` and ``decode`` run one half:
    ``trainer.predict(x, method='encode')``.

    Args:
        encoder: Linen module ``x -> code``.
        decoder: Linen module ``code -> reconstruction`` of ``x``'s shape.
        noise_stddev: Standard deviation of the Gaussian corruption in training (0: none).
        loss: Reconstruction loss: a ``dlkit.losses`` name, ``Loss`` or ``fn(y_true, y_pred)`` (default ``'mse'``).

    Call arguments:
        x: Batch of inputs.
        training: Corrupt the input, and run both halves in training mode.

    Returns:
        The reconstruction ``decoder(encoder(x))``.
    """

    encoder: nn.Module
    decoder: nn.Module
    noise_stddev: float = 0.0
    loss: Any = "mse"

    def setup(self):
        self.noise = GaussianNoise(self.noise_stddev)

    def encode(self, x, training: bool = False):
        """The code of ``x``.

        Args:
            x: Batch of inputs (uncorrupted).
            training: Passed to the encoder if it takes it.

        Returns:
            ``encoder(x)``.
        """
        return call_with_training(self.encoder, x, training)

    def decode(self, code, training: bool = False):
        """The reconstruction of a code.

        Args:
            code: Batch of codes.
            training: Passed to the decoder if it takes it.

        Returns:
            ``decoder(code)``.
        """
        return call_with_training(self.decoder, code, training)

    def __call__(self, x, training: bool = False):
        return self.decode(self.encode(self.noise(x, training=training), training), training)

    def reconstruction_error(self, state, batch, params=None, training: bool = False):
        """The reconstruction loss of one batch against its clean inputs.

        Args:
            state: The ``TrainState``.
            batch: A ``Batch``; its ``x`` is both input and target, ``mask`` marks real rows.
            params: Parameters to run with (default ``state.params``).
            training: Run in training mode (noise, dropout, batch statistics).

        Returns:
            ``(loss, updated model state)``: the masked mean per-row loss plus the ``add_loss`` terms.
        """
        out = apply(state, batch.x, params, training=training)
        per_row = losses_lib.get(self.loss).per_row(batch.x, out.outputs)
        return masked_mean(per_row, batch.mask) + out.added_loss, out.model_state

    def train_step(self, state, batch):
        """One gradient step on ``reconstruction_error`` (the ``Trainer``'s step contract).

        Args:
            state: The ``TrainState``.
            batch: A ``Batch`` (``y`` is not used).

        Returns:
            ``(new state, {'loss': loss})``.
        """
        def loss_fn(params):
            return self.reconstruction_error(state, batch, params, training=True)

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads).replace(model_state={**state.model_state, **updates})
        return state, {"loss": loss}

    def test_step(self, state, batch):
        """The inference-mode reconstruction loss of a batch.

        Args:
            state: The ``TrainState``.
            batch: A ``Batch`` (``y`` is not used).

        Returns:
            ``{'loss': loss}``.
        """
        return {"loss": self.reconstruction_error(state, batch)[0]}
