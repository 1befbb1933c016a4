"""Models: ``Sequential``, functional ``Model`` and ``Input`` (any Flax Linen module is a model too),
and model families that bring their own training step: ``Autoencoder``, ``VAE``, ``GAN``;
``seq2seq`` decoding helpers."""
from dlkit.models import seq2seq
from dlkit.models.autoencoder import Autoencoder
from dlkit.models.functional import Model
from dlkit.models.gan import GAN
from dlkit.models.seq2seq import greedy_decode, greedy_decoder, shift_right
from dlkit.models.sequential import Input, Sequential
from dlkit.models.vae import VAE, Sampling, interpolate, kl_divergence, sample

__all__ = ["GAN", "VAE", "Autoencoder", "Input", "Model", "Sampling", "Sequential", "greedy_decode",
           "greedy_decoder", "interpolate", "kl_divergence", "sample", "seq2seq", "shift_right"]
