"""``Embedding``: integer indices to dense vectors (Keras ``Embedding``).

Masks. With ``mask_zero=True`` index 0 is padding: ``Embedding.compute_mask(tokens)``
is ``tokens != 0``, a ``(batch, time)`` boolean array, and the recurrent layers
(``SimpleRNN``, ``LSTM``, ``GRU``, ``Bidirectional``) take it as ``mask=``::

    emb = layers.Embedding(1000, 64, mask_zero=True)
    x = emb(tokens)                                    # inside a Linen module or a functional graph
    y = layers.LSTM(32)(x, mask=emb.compute_mask(tokens))

``compute_mask`` works on arrays and on symbolic tensors (``dlkit.Input``). Inside a
``Sequential`` or a functional ``dlkit.Model`` the passing is implicit, as in Keras
(``dlkit.masking``): the embedding's output carries its mask, layers that keep the
positions pass it on, and each later layer whose ``call`` takes ``mask`` (``LSTM``,
``Bidirectional``, ``TransformerEncoder``, ``GlobalAveragePooling1D``...) receives it.
The mask is an ordinary array the model passes by keyword (no ``_keras_mask`` attribute
rides on the arrays), so every layer stays a pure function of its arguments.
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from dlkit import symbolic
from dlkit.layers.base import Layer, report


def _as_indices(inputs):
    """Keras casts non-integer indices to ``int32``."""
    inputs = jnp.asarray(inputs)
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
        inputs = inputs.astype(jnp.int32)
    return inputs


class _NotZero(Layer):
    """``inputs != 0``: the padding mask, as a graph node when ``compute_mask`` meets a symbolic tensor."""

    keras_name: ClassVar[str] = "not_equal"
    autocast: ClassVar[bool] = False

    def call(self, inputs, training: bool = False):
        return _as_indices(inputs) != 0


class Embedding(Layer):
    """Keras' ``Embedding``: ``outputs[..., :] = embeddings[inputs[...]]`` for integer ``inputs`` in ``[0, input_dim)``.

    ``embeddings`` has shape ``(input_dim, output_dim)``; an input of shape
    ``(batch, time)`` gives ``(batch, time, output_dim)``. Float inputs are cast
    to ``int32`` as in Keras. The default initializer ``'uniform'`` is Keras'
    ``RandomUniform(-0.05, 0.05)``. ``embeddings_regularizer`` adds
    ``penalty(embeddings)`` to the loss.

    Indices are not range-checked inside compiled code; as with Keras on its
    JAX backend (``jnp.take``), an index ``>= input_dim`` gives a row of NaN
    and a negative one counts from the end.

    ``mask_zero=True`` reserves index 0 for padding; ``compute_mask(inputs)``
    then returns the ``(batch, time)`` mask ``inputs != 0`` to pass as ``mask=``
    to a recurrent layer (see the module docstring). As in Keras, ``input_dim``
    must then count the padding index too (vocabulary size + 1).

    Args:
        input_dim: Number of rows of the table (the vocabulary size, padding index included).
        output_dim: Size of each embedding vector.
        embeddings_initializer: Initializer of ``embeddings`` (default ``'uniform'``, ``U(-0.05, 0.05)``).
        embeddings_regularizer: Penalty on ``embeddings`` added to the loss, or ``None``.
        mask_zero: Whether index 0 is padding (see ``compute_mask``).
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Integer (or float, cast to ``int32``) indices of any shape, e.g. ``(batch, time)``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(*inputs.shape, output_dim)``, in the compute dtype (``embeddings`` is kept in the
        variable dtype).

    Raises:
        ValueError: ``input_dim`` or ``output_dim`` is not positive (when the layer is made); ids outside
            ``[0, input_dim)`` (``fit``/``evaluate``/``predict`` raise it, naming the layer).
    """

    input_dim: int
    output_dim: int
    embeddings_initializer: Any = "uniform"
    embeddings_regularizer: Any = None
    mask_zero: bool = False
    keras_name: ClassVar[str] = "embedding"
    positive_arguments: ClassVar[tuple] = ("input_dim", "output_dim")
    autocast: ClassVar[bool] = False  # ids as given: a bfloat16 id above 256 would not be exact

    @nn.compact
    def call(self, inputs, training: bool = False):
        ids = _as_indices(inputs)
        report(self, f"got ids outside [0, {self.input_dim}) (input_dim={self.input_dim}); make input_dim larger "
                     f"than the largest id, or fix the data", jnp.sum((ids < 0) | (ids >= self.input_dim)))
        embeddings = self.weight("embeddings", self.embeddings_initializer, (self.input_dim, self.output_dim),
                                 self.embeddings_regularizer)
        return jnp.take(embeddings, ids, axis=0)

    @nn.nowrap
    def compute_mask(self, inputs, mask=None):
        """``inputs != 0`` if ``mask_zero`` else ``None`` (Keras ``Embedding.compute_mask``).

        Needs no weights, so it may be called on the unbound layer; on a
        symbolic tensor it records the comparison in the functional graph.

        Args:
            inputs: The indices given to the layer (an array or a symbolic tensor).
            mask: Ignored (Keras' signature: an incoming mask).

        Returns:
            A boolean array (or symbolic tensor) of the shape of ``inputs``, or ``None``
            without ``mask_zero``.
        """
        if not self.mask_zero:
            return None
        if symbolic.is_symbolic(inputs):
            return _NotZero(parent=None)(inputs)  # a graph node of its own, not a child of this layer
        return _as_indices(inputs) != 0
