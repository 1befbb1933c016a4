"""The variational autoencoder (Kingma & Welling, 2014; Chollet, *Deep Learning with Python*, ch. 12).

The encoder's features give ``z_mean`` and ``z_log_var`` (two ``Dense(latent_dim)`` heads);
``Sampling`` draws ``z = z_mean + exp(z_log_var / 2) * eps``, ``eps ~ N(0, I)`` (the
reparameterisation: ``z`` is differentiable in both); the decoder maps ``z`` back to an
image of probabilities. The loss per image is

    reconstruction = sum_pixels BCE(x, x_hat)
    kl = -1/2 * sum_j (1 + z_log_var_j - z_mean_j^2 - exp(z_log_var_j))   (KL(q(z|x) || N(0, I)))

and ``loss = mean(reconstruction) + beta * mean(kl)``. The KL term enters through
``add_loss``, the same path as weight penalties.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dlkit.layers.base import Layer, add_loss, call_with_training
from dlkit.layers.core import Dense
from dlkit.training.step import apply, masked_mean

_EPSILON = 1e-7  # Keras' clip for probabilities inside a log


def kl_divergence(z_mean, z_log_var):
    """``KL(N(z_mean, exp(z_log_var)) || N(0, I))`` per row, summed over the latent axis:
    ``-1/2 * sum_j (1 + z_log_var_j - z_mean_j^2 - exp(z_log_var_j))``.

    Args:
        z_mean: Array ``(batch, latent_dim)``.
        z_log_var: Array ``(batch, latent_dim)``, the log-variances.

    Returns:
        Array ``(batch,)``.
    """
    return -0.5 * jnp.sum(1.0 + z_log_var - jnp.square(z_mean) - jnp.exp(z_log_var), axis=-1)


class Sampling(Layer):
    """The reparameterisation trick (Kingma & Welling, 2014), Chollet's ``Sampling`` layer:
    ``z_mean + exp(z_log_var / 2) * eps`` with ``eps ~ N(0, I)`` from the ``'dropout'`` stream in
    training; ``z_mean`` in inference (so ``predict`` is deterministic; Chollet's layer samples always).

    Args:
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: The pair ``(z_mean, z_log_var)``, each ``(batch, latent_dim)``.
        training: Sample if True, else return ``z_mean``.

    Returns:
        Array ``(batch, latent_dim)``.
    """

    keras_name: ClassVar[str] = "sampling"

    def call(self, inputs, training: bool = False):
        z_mean, z_log_var = inputs
        if not training:
            return z_mean
        eps = jax.random.normal(self.make_rng("dropout"), z_mean.shape, z_mean.dtype)
        return z_mean + jnp.exp(0.5 * z_log_var) * eps


class VAE(nn.Module):
    """A variational autoencoder (Kingma & Welling, 2014) with its own training step (module docstring).

    ``encoder`` maps images to features, two ``Dense(latent_dim)`` heads (``z_mean``,
    ``z_log_var``) map those to the code's distribution, ``decoder`` maps ``latent_dim`` codes
    to images in [0, 1]. ``encode`` gives ``(z_mean, z_log_var)``, ``generate`` decodes codes;
    ``dlkit.models.sample`` and ``interpolate`` use them on a trained ``Trainer``.

    Args:
        encoder: Linen module ``images -> features (batch, f)``.
        decoder: Linen module ``(batch, latent_dim) -> images`` of probabilities, the inputs' shape.
        latent_dim: Size of the code ``z``.
        beta: Weight of the KL term (a beta-VAE for ``beta != 1``).

    Call arguments:
        x: Batch of images in [0, 1].
        training: Sample ``z`` (else use ``z_mean``) and run the halves in training mode.

    Returns:
        The decoded images; the call also adds ``beta * mean(KL)`` with ``add_loss`` (``'kl_loss'``).
    """

    encoder: nn.Module
    decoder: nn.Module
    latent_dim: int = 2
    beta: float = 1.0

    def setup(self):
        self.z_mean = Dense(self.latent_dim)
        self.z_log_var = Dense(self.latent_dim)
        self.sampling = Sampling()

    def encode(self, x, training: bool = False):
        """The code distribution ``q(z | x)``.

        Args:
            x: Batch of images.
            training: Passed to the encoder if it takes it.

        Returns:
            ``(z_mean, z_log_var)``, each ``(batch, latent_dim)``.
        """
        features = call_with_training(self.encoder, x, training)
        return self.z_mean(features), self.z_log_var(features)

    def generate(self, z, training: bool = False):
        """Decode codes to images.

        Args:
            z: Codes ``(batch, latent_dim)``.
            training: Passed to the decoder if it takes it.

        Returns:
            ``decoder(z)``.
        """
        return call_with_training(self.decoder, z, training)

    def __call__(self, x, training: bool = False):
        z_mean, z_log_var = self.encode(x, training)
        add_loss(self, self.beta * jnp.mean(kl_divergence(z_mean, z_log_var)), name="kl_loss")
        return self.generate(self.sampling((z_mean, z_log_var), training=training), training)

    def losses(self, state, batch, params=None, training: bool = False):
        """The VAE loss of one batch: ``mean(sum_pixels BCE(x, x_hat)) + beta * mean(KL)``.

        Args:
            state: The ``TrainState``.
            batch: A ``Batch``; ``x`` is input and target (``y`` is not used).
            params: Parameters to run with (default ``state.params``).
            training: Sample ``z`` and run in training mode.

        Returns:
            ``(loss, logs, updated model state)``, ``logs = {'loss', 'reconstruction_loss',
            'kl_loss'}`` (``kl_loss`` is ``beta * mean(KL)``).
        """
        out = apply(state, batch.x, params, training=training)
        x, x_hat = batch.x, jnp.clip(out.outputs, _EPSILON, 1.0 - _EPSILON)
        bce = -(x * jnp.log(x_hat) + (1.0 - x) * jnp.log(1.0 - x_hat))
        reconstruction = masked_mean(bce.reshape(bce.shape[0], -1).sum(axis=1), batch.mask)
        loss = reconstruction + out.added_loss
        kl = sum(jax.tree.leaves(out.losses.get("kl_loss", ())))
        return loss, {"loss": loss, "reconstruction_loss": reconstruction, "kl_loss": kl}, out.model_state

    def train_step(self, state, batch):
        """One gradient step on ``losses`` (the ``Trainer``'s step contract).

        Args:
            state: The ``TrainState``.
            batch: A ``Batch`` of images.

        Returns:
            ``(new state, logs)``, logs as ``losses`` gives them.
        """
        def loss_fn(params):
            loss, logs, updates = self.losses(state, batch, params, training=True)
            return loss, (logs, updates)

        (_, (logs, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads).replace(model_state={**state.model_state, **updates})
        return state, logs

    def test_step(self, state, batch):
        """The inference-mode logs of a batch (``z = z_mean``).

        Args:
            state: The ``TrainState``.
            batch: A ``Batch`` of images.

        Returns:
            ``{'loss', 'reconstruction_loss', 'kl_loss'}``.
        """
        return self.losses(state, batch)[1]


def sample(trainer, n: int, seed: int = 0) -> np.ndarray:
    """``n`` images generated from codes ``z ~ N(0, I)`` by a trained VAE or GAN.

    Args:
        trainer: A ``Trainer`` whose model has ``latent_dim`` and a ``generate`` method.
        n: Number of images.
        seed: Seed of the codes (numpy).

    Returns:
        The images as numpy, ``(n, ...)``.
    """
    z = np.random.default_rng(seed).standard_normal((n, trainer.model.latent_dim)).astype(np.float32)
    return trainer.predict(z, method="generate")


def interpolate(trainer, image_a, image_b, steps: int = 8) -> np.ndarray:
    """Decode ``steps`` codes evenly spaced from image_a's ``z_mean`` to image_b's (ends included).

    Args:
        trainer: A ``Trainer`` holding a trained ``VAE``.
        image_a: One image (no batch axis), the start.
        image_b: One image, the end.
        steps: Number of codes, ``z_k = (1 - t_k) z_a + t_k z_b`` with ``t_k`` from 0 to 1.

    Returns:
        The decoded images as numpy, ``(steps, ...)``.
    """
    z_mean, _ = trainer.predict(np.stack([image_a, image_b]), method="encode")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return trainer.predict((1.0 - t) * z_mean[0] + t * z_mean[1], method="generate")
