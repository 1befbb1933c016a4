"""Models: ``Sequential``, functional ``Model`` and ``Input`` (any Flax Linen module is a model too),
and model families that bring their own training step: ``Autoencoder``, ``VAE``, ``GAN``;
``seq2seq`` decoding helpers; deep convnets: ``residual_block``, ``xception_block``, ``resnet``,
``mini_xception``; ensembles: ``Ensemble``, ``ensemble_predict``, ``train_seed_ensemble``."""
from dlkit.models import seq2seq
from dlkit.models.autoencoder import Autoencoder
from dlkit.models.convnets import conv_bn, mini_xception, residual_block, resnet, xception_block
from dlkit.models.ensemble import Ensemble, ensemble_predict, train_seed_ensemble
from dlkit.models.functional import Model
from dlkit.models.gan import GAN
from dlkit.models.seq2seq import greedy_decode, greedy_decoder, shift_right
from dlkit.models.sequential import Input, Sequential
from dlkit.models.vae import VAE, Sampling, interpolate, kl_divergence, sample

__all__ = ["GAN", "VAE", "Autoencoder", "Input", "Model", "Sampling", "Sequential", "greedy_decode",
           "greedy_decoder", "interpolate", "kl_divergence", "sample", "seq2seq", "shift_right"]
__all__ += ["conv_bn", "mini_xception", "residual_block", "resnet", "xception_block"]
__all__ += ["Ensemble", "ensemble_predict", "train_seed_ensemble"]
