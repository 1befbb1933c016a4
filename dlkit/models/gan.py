"""The generative adversarial network (Goodfellow et al., 2014; DCGAN-style, Radford et al., 2016, as in
Chollet, *Deep Learning with Python*, ch. 12).

The generator ``G`` maps a latent vector ``z ~ N(0, I)`` to an image; the discriminator
``D`` gives one logit per image, "real" (1) against "generated" (0). Each batch of real
images makes two updates, with two optimizers and two optimizer states:

* generator: ``L_G = BCE(D(G(z)), 1)``, differentiated in G's parameters only; D is frozen
  (its parameters and optimizer state are not touched) and the real images are not read;
* discriminator: ``L_D = (BCE(D(x), 1 - noise) + BCE(D(G(z')), 0 + noise)) / 2`` on the real batch
  ``x`` and fresh generated images (``stop_gradient``: G does not learn from it), in two forward
  passes so that batch normalization in D never mixes real and generated images, where
  ``noise ~ U(0, label_noise)`` softens the labels, a trick that steadies training; with
  ``r1_gamma > 0`` it adds the R1 penalty ``(r1_gamma / 2) * mean_x ||grad_x D(x)||^2`` on the
  real images (Mescheder et al., 2018), which keeps D from growing steep around the data and
  lets a larger discriminator train without oscillating.

Both networks run in training mode (dropout, batch statistics); each network's
non-trainable state (``batch_stats``) is updated only in its own update.

``Trainer(GAN(...), optimizer={'generator': ..., 'discriminator': ...}).fit(x)`` trains it;
``trainer.predict(z)`` (or ``dlkit.models.sample``) generates images.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dlkit.layers.base import call_with_training
from dlkit.training.step import apply, step_rng


class GAN(nn.Module):
    """A GAN (Goodfellow et al., 2014) with its own two-optimizer training step (module docstring).

    ``Trainer(GAN(g, d), optimizer={'generator': ..., 'discriminator': ...}).fit(images)``; the
    logs are ``d_loss`` and ``g_loss``. There is no ``test_step``.

    Args:
        generator: Linen module ``(batch, latent_dim) -> images``.
        discriminator: Linen module ``images -> (batch, 1)`` logits (real: 1).
        latent_dim: Size of the latent vector ``z ~ N(0, I)``.
        label_noise: ``noise ~ U(0, label_noise)`` softens the discriminator's labels.
        r1_gamma: Weight of the R1 gradient penalty on real images (0: none).

    Call arguments:
        z: Latent vectors ``(batch, latent_dim)``.
        training: Run the generator in training mode.

    Returns:
        The generated images (at initialisation the discriminator is run too, to create its parameters).
    """

    generator: nn.Module
    discriminator: nn.Module
    latent_dim: int = 128
    label_noise: float = 0.05
    r1_gamma: float = 0.0

    @property
    def input_shape(self) -> tuple:
        """``(latent_dim,)``: the model's input is a latent vector."""
        return (self.latent_dim,)

    def generate(self, z, training: bool = False):
        """Images from latent vectors.

        Args:
            z: Latent vectors ``(batch, latent_dim)``.
            training: Passed to the generator if it takes it.

        Returns:
            ``generator(z)``.
        """
        return call_with_training(self.generator, z, training)

    def discriminate(self, images, training: bool = False):
        """The discriminator's logits.

        Args:
            images: Batch of images.
            training: Passed to the discriminator if it takes it.

        Returns:
            ``discriminator(images)``, ``(batch, 1)`` logits.
        """
        return call_with_training(self.discriminator, images, training)

    def generate_and_discriminate(self, z, training: bool = False):
        """``D(G(z))``, the generator step's forward pass.

        Args:
            z: Latent vectors ``(batch, latent_dim)``.
            training: Run both networks in training mode.

        Returns:
            The logits of the generated images.
        """
        return self.discriminate(self.generate(z, training), training)

    def __call__(self, z, training: bool = False):
        images = self.generate(z, training)
        if self.is_initializing():  # create the discriminator's parameters too
            self.discriminate(images, training)
        return images

    def latents(self, key, rows: int):
        """Draw latent vectors ``z ~ N(0, I)``.

        Args:
            key: A JAX random key.
            rows: Number of vectors.

        Returns:
            Array ``(rows, latent_dim)``.
        """
        return jax.random.normal(key, (rows, self.latent_dim))

    def generator_step(self, state, rows: int):
        """Update G to make D call its images real; D's parameters and optimizer state are untouched.

        Args:
            state: The ``TrainState`` (one parameter group per network).
            rows: Number of images to generate.

        Returns:
            ``(new state, L_G)``.
        """
        z = self.latents(step_rng(state, "generator_z"), rows)
        return _update(state, "generator", ((z, jnp.ones(rows)),), "generate_and_discriminate")

    def discriminator_step(self, state, real):
        """Update D to tell ``real`` images from freshly generated ones: a pass over the real batch,
        then one over the generated batch, each with its own batch statistics (DCGAN's recipe).

        Args:
            state: The ``TrainState``.
            real: Batch of real images.

        Returns:
            ``(new state, L_D)`` (R1 penalty included when ``r1_gamma > 0``).
        """
        rows = real.shape[0]
        z = self.latents(step_rng(state, "discriminator_z"), rows)
        fake = jax.lax.stop_gradient(apply(state, z, method="generate", rng=step_rng(state, "fake")).outputs)
        noise = self.label_noise * jax.random.uniform(step_rng(state, "label_noise"), (2 * rows,))
        passes = ((real, 1.0 - noise[:rows]), (fake.astype(real.dtype), noise[rows:]))  # real 1 - noise, fake 0 + noise
        penalty = self.r1_penalty(state, real) if self.r1_gamma > 0.0 else None
        return _update(state, "discriminator", passes, "discriminate", penalty)

    def r1_penalty(self, state, real):
        """The R1 penalty (Mescheder et al., 2018) as a function of D's parameters.

        Args:
            state: The ``TrainState``.
            real: Batch of real images.

        Returns:
            ``params -> (r1_gamma / 2) * mean over real images of ||d D(x) / d x||^2`` (D in training mode).
        """
        def penalty(params):
            def total_logit(x):
                return apply(state, x, {**state.params, "discriminator": params}, method="discriminate",
                             rng=step_rng(state, "r1")).outputs.sum()
            grads = jax.grad(total_logit)(real)
            return 0.5 * self.r1_gamma * jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))
        return penalty

    def train_step(self, state, batch):
        """A generator update, then a discriminator update (the ``Trainer``'s step contract).

        Args:
            state: The ``TrainState``.
            batch: A ``Batch`` whose ``x`` are real images (``y`` is not used).

        Returns:
            ``(new state, {'d_loss': L_D, 'g_loss': L_G})``.
        """
        state, g_loss = self.generator_step(state, batch.x.shape[0])
        state, d_loss = self.discriminator_step(state, batch.x)
        return state, {"d_loss": d_loss, "g_loss": g_loss}


def _update(state, part: str, passes, method: str, penalty=None):
    """One update of ``part``'s parameters on the mean over ``passes = ((x, labels), ...)`` of
    ``mean(BCE(logits, labels)) + added losses`` (plus ``penalty(params)``), where ``method``
    maps ``x`` to one logit per row. Each pass is its own forward pass: batch statistics are
    computed per pass and their moving averages updated pass after pass. Returns ``(state, loss)``."""
    def loss_fn(params):
        model_state, losses, rng = state.model_state, [], step_rng(state, part)
        for i, (x, labels) in enumerate(passes):
            out = apply(state.replace(model_state=model_state), x, {**state.params, part: params}, method=method,
                        rng=jax.random.fold_in(rng, i) if i else rng)
            bce = optax.sigmoid_binary_cross_entropy(out.outputs.reshape(labels.shape), labels)
            losses.append(jnp.mean(bce) + out.added_loss)
            model_state = _with_part(model_state, out.model_state, part)
        loss = sum(losses) / len(losses)
        return loss + (0.0 if penalty is None else penalty(params)), model_state

    (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params[part])
    return state.apply_gradients(grads, part=part).replace(model_state=model_state), loss


def _with_part(model_state: dict, updates: dict, part: str) -> dict:
    """``model_state`` with ``part``'s collections (e.g. its ``batch_stats``) taken from ``updates``:
    each network's statistics change only in its own update."""
    return {name: {**tree, part: updates[name][part]} if part in updates.get(name, {}) else tree
            for name, tree in model_state.items()}
