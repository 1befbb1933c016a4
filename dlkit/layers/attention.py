"""Attention and Transformer layers: LayerNormalization, MultiHeadAttention,
PositionalEmbedding, TransformerEncoder, TransformerDecoder.

``MultiHeadAttention`` follows Keras 3 weight for weight (sub-layers ``query``,
``key``, ``value``, ``attention_output``, each with a ``kernel`` and ``bias``),
so weights copied from Keras give the same outputs. The Transformer blocks are
those of Chollet's *Deep Learning with Python* (ch. 11): post-norm residual
blocks with the book's sub-layer names.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlkit import initializers, mixed_precision
from dlkit.layers.base import Layer
from dlkit.layers.core import Dense, Dropout


def _large_negative(dtype) -> float:
    """Keras' score at masked positions: -1e9, or -3e4 in float16, whose range ends at 65504."""
    return -3e4 if jnp.dtype(dtype) == jnp.float16 else -1e9


class LayerNormalization(Layer):
    """Keras' ``LayerNormalization`` (Ba et al., 2016): normalise each sample over ``axis``.

    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the (biased)
    mean and variance of ``x`` over ``axis`` (an int or a tuple of ints), per
    sample and position. ``gamma`` (ones) and ``beta`` (zeros) have the shape
    of the normalised axes; ``scale=False``/``center=False`` drop them. The same
    computation in training and inference (no moving statistics).

    Args:
        axis: The axis or axes to normalise over (default the last).
        epsilon: Added to the variance (Keras' default 1e-3).
        center: Whether to learn the offset ``beta``.
        scale: Whether to learn the scale ``gamma``.
        beta_initializer: Initializer of ``beta``.
        gamma_initializer: Initializer of ``gamma``.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array of any rank.
        training: Unused; Keras' flag.

    Returns:
        An array of the shape of ``inputs``, in the compute dtype (the statistics are computed in
        float32 at least, as Keras does).
    """

    axis: Union[int, Sequence[int]] = -1
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    beta_initializer: Any = "zeros"
    gamma_initializer: Any = "ones"
    keras_name: ClassVar[str] = "layer_normalization"
    autocast: ClassVar[bool] = False

    @nn.compact
    def call(self, inputs, training: bool = False):
        axes = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
        axes = tuple(sorted(a % inputs.ndim for a in axes))
        x = inputs.astype(jnp.promote_types(inputs.dtype, jnp.float32))
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        param_shape = tuple(inputs.shape[a] for a in axes)
        broadcast = tuple(inputs.shape[a] if a in axes else 1 for a in range(inputs.ndim))
        if self.scale:
            gamma = self.param("gamma", initializers.get(self.gamma_initializer), param_shape, self.variable_dtype)
            y = y * gamma.reshape(broadcast).astype(y.dtype)
        if self.center:
            beta = self.param("beta", initializers.get(self.beta_initializer), param_shape, self.variable_dtype)
            y = y + beta.reshape(broadcast).astype(y.dtype)
        return mixed_precision.cast_floating(y, self.compute_dtype)


class _EinsumDense(Layer):
    """``einsum(equation, inputs, kernel) + bias``: the projection layer of Keras'
    ``MultiHeadAttention`` (Keras ``EinsumDense``, without activation)."""

    equation: str
    kernel_shape: Sequence[int]
    bias_shape: Optional[Sequence[int]] = None  # None: no bias
    kernel_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    keras_name: ClassVar[str] = "einsum_dense"

    @nn.compact
    def call(self, inputs, training: bool = False):
        kernel = self.weight("kernel", self.kernel_initializer, tuple(self.kernel_shape))
        y = jnp.einsum(self.equation, inputs, kernel)
        if self.bias_shape is not None:
            y = y + self.weight("bias", self.bias_initializer, tuple(self.bias_shape))
        return y


def causal_mask(query_length: int, key_length: int):
    """``(1, T_q, T_k)`` boolean lower-triangular mask: query ``i`` sees keys ``j <= i`` (Keras' convention).

    Args:
        query_length: ``T_q``, the number of query steps.
        key_length: ``T_k``, the number of key steps.

    Returns:
        Boolean array ``(1, query_length, key_length)``, True where ``j <= i``.
    """
    return (jnp.arange(query_length)[:, None] >= jnp.arange(key_length)[None, :])[None]


class MultiHeadAttention(Layer):
    """Keras' ``MultiHeadAttention``: multi-head scaled dot-product attention (Vaswani et al., 2017).

    ``layer(query, value, key=None, attention_mask=None, use_causal_mask=False,
    return_attention_scores=False, training=False)`` with ``query (B, T, d_q)``,
    ``value (B, S, d_v)`` and ``key (B, S, d_k)`` (default: ``value``). Per head ``h``::

        Q_h = query @ Wq[:, h] + bq[h]          Wq: (d_q, heads, key_dim)
        K_h = key   @ Wk[:, h] + bk[h]          Wk: (d_k, heads, key_dim)
        V_h = value @ Wv[:, h] + bv[h]          Wv: (d_v, heads, value_dim)
        A_h = softmax(Q_h K_h^T / sqrt(key_dim) + M)        (T, S), rows sum to 1
        out = sum_h dropout(A_h) V_h @ Wo[h] + bo           Wo: (heads, value_dim, d_out)

    ``M`` is 0 where attention is allowed and ``-1e9`` where not: ``attention_mask``
    (``(B, T, S)``, or anything broadcastable such as ``(B, 1, S)``; True/nonzero
    = attend) and, with ``use_causal_mask``, the lower-triangular mask (query
    ``i`` attends to keys ``j <= i``), ANDed together. Dropout (rate ``dropout``)
    drops attention probabilities in training only. ``return_attention_scores``
    also returns ``A`` (before dropout), shape ``(B, heads, T, S)``.
    ``d_out = output_shape`` or, if None, ``d_q``.

    Args:
        num_heads: Number of heads.
        key_dim: Size of each head's query and key projections.
        value_dim: Size of each head's value projection; ``None``: ``key_dim``.
        dropout: Dropout rate on the attention probabilities (training only).
        use_bias: Whether the four projections have biases.
        output_shape: ``d_out``, an int or a 1-tuple; ``None``: the query's feature size.
        kernel_initializer: Initializer of the projection kernels (default Glorot uniform).
        bias_initializer: Initializer of the projection biases.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        query: Array ``(B, T, d_q)``.
        value: Array ``(B, S, d_v)``.
        key: Array ``(B, S, d_k)``; ``None``: ``value``.
        attention_mask: Optional boolean mask broadcastable to ``(B, T, S)`` (or ``(B, heads, T, S)``).
        use_causal_mask: AND a lower-triangular (causal) mask into ``attention_mask``.
        return_attention_scores: Also return the attention probabilities.
        training: Enables ``dropout``.

    Returns:
        Array ``(B, T, d_out)``, or ``(output, scores)`` with ``scores (B, heads, T, S)``.

    Raises:
        ValueError: An input is not rank 3, or ``output_shape`` has more than one entry.
    """

    num_heads: int
    key_dim: int
    value_dim: Optional[int] = None
    dropout: float = 0.0
    use_bias: bool = True
    output_shape: Any = None
    kernel_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    keras_name: ClassVar[str] = "multi_head_attention"
    positive_arguments: ClassVar[tuple] = ("num_heads", "key_dim")

    def __call__(self, query, value, key=None, attention_mask=None, use_causal_mask: bool = False,
                 return_attention_scores: bool = False, training: bool = False):
        # Keras' keyword names (``query=``, ``value=``) work as well as positions.
        return super().__call__(query, value, key=key, attention_mask=attention_mask, use_causal_mask=use_causal_mask,
                                return_attention_scores=return_attention_scores, training=training)

    def _projection(self, name, equation, kernel_shape, bias_shape):
        return _EinsumDense(equation, kernel_shape, bias_shape if self.use_bias else None,
                           kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer,
                           name=name)

    @nn.compact
    def call(self, query, value, key=None, attention_mask=None, use_causal_mask: bool = False,
             return_attention_scores: bool = False, training: bool = False):
        key = value if key is None else key
        for what, t in (("query", query), ("value", value), ("key", key)):
            if t.ndim != 3:
                raise ValueError(f"MultiHeadAttention expects {what} of shape (batch, steps, features), "
                                 f"got shape {t.shape}.")
        heads, key_dim = self.num_heads, self.key_dim
        value_dim = self.value_dim or self.key_dim
        out_dim = query.shape[-1] if self.output_shape is None else self.output_shape
        if not isinstance(out_dim, int):
            out_dim = tuple(out_dim)
            if len(out_dim) != 1:
                raise ValueError(f"output_shape must be an int or a 1-tuple here, got {self.output_shape!r}.")
            out_dim = out_dim[0]

        q = self._projection("query", "btd,dnh->btnh", (query.shape[-1], heads, key_dim), (heads, key_dim))(query)
        k = self._projection("key", "bsd,dnh->bsnh", (key.shape[-1], heads, key_dim), (heads, key_dim))(key)
        v = self._projection("value", "bsd,dnh->bsnh", (value.shape[-1], heads, value_dim), (heads, value_dim))(value)

        q = q * (1.0 / math.sqrt(float(key_dim)))  # scaled before the product, as Keras
        scores = jnp.einsum("bsnh,btnh->bnts", k, q)
        mask = None
        if attention_mask is not None:
            mask = jnp.asarray(attention_mask).astype(bool)
            while mask.ndim < 4:  # Keras expands from the heads axis: (B, T, S) -> (B, 1, T, S)
                mask = jnp.expand_dims(mask, -3)
        if use_causal_mask:
            causal = causal_mask(query.shape[1], value.shape[1])[None]
            mask = causal if mask is None else jnp.logical_and(mask, causal)
        if mask is not None:
            scores = jnp.where(mask, scores, _large_negative(scores.dtype))
        probs = jax.nn.softmax(scores, axis=-1)

        dropped = Dropout(self.dropout, name="dropout")(probs, training=training) if self.dropout > 0 else probs
        context = jnp.einsum("bnts,bsnv->btnv", dropped, v)
        output = self._projection("attention_output", "btnv,nvo->bto", (heads, value_dim, out_dim), (out_dim,))(context)
        if return_attention_scores:
            return output, probs
        return output


class _Embedding(Layer):
    """A lookup table ``embeddings[inputs]`` (Keras ``Embedding``'s weight name and default init)."""

    input_dim: int
    output_dim: int
    embeddings_initializer: Any = "random_uniform"  # Keras' "uniform": U(-0.05, 0.05)
    keras_name: ClassVar[str] = "embedding"
    autocast: ClassVar[bool] = False  # ids as given, as Keras' Embedding

    @nn.compact
    def call(self, inputs, training: bool = False):
        table = self.weight("embeddings", self.embeddings_initializer, (self.input_dim, self.output_dim))
        return jnp.take(table, inputs.astype(jnp.int32), axis=0)


class PositionalEmbedding(Layer):
    """Chollet's ``PositionalEmbedding`` (*Deep Learning with Python*, ch. 11): token embedding
    plus learned position embedding.

    For integer tokens ``x (B, T)`` with ``T <= sequence_length``:
    ``y[b, t] = E_tok[x[b, t]] + E_pos[t]``, ``E_tok: (input_dim, output_dim)``,
    ``E_pos: (sequence_length, output_dim)``. The tables live in the sub-layers
    ``token_embeddings`` and ``position_embeddings`` (each an ``embeddings`` weight,
    as Keras' ``Embedding``, initialised ``U(-0.05, 0.05)``). Float inputs are cast to int32.

    Args:
        sequence_length: The longest sequence ``T`` the position table holds.
        input_dim: Vocabulary size (rows of the token table).
        output_dim: Embedding size.
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Integer tokens ``(B, T)``, ``T <= sequence_length``.
        training: Unused; Keras' flag.

    Returns:
        Array ``(B, T, output_dim)``.

    Raises:
        ValueError: The sequences are longer than ``sequence_length``.
    """

    sequence_length: int
    input_dim: int
    output_dim: int
    keras_name: ClassVar[str] = "positional_embedding"
    autocast: ClassVar[bool] = False  # ids as given, as Keras' Embedding

    @nn.compact
    def call(self, inputs, training: bool = False):
        length = inputs.shape[-1]
        if length > self.sequence_length:
            raise ValueError(f"PositionalEmbedding got sequences of length {length}, longer than its "
                             f"sequence_length={self.sequence_length}.")
        tokens = _Embedding(self.input_dim, self.output_dim, name="token_embeddings")(inputs)
        positions = _Embedding(self.sequence_length, self.output_dim, name="position_embeddings")(jnp.arange(length))
        return tokens + positions


def _key_padding(mask):
    """A ``(B, S)`` padding mask (True = real token) as an attention mask ``(B, 1, S)``."""
    return None if mask is None else jnp.asarray(mask).astype(bool)[:, None, :]


def _both(a, b):
    return b if a is None else a if b is None else jnp.logical_and(a, b)


class TransformerEncoder(Layer):
    """Chollet's Transformer encoder block (post-norm)::

        a = LayerNorm_1(x + Dropout(MHA(x, x)))
        y = LayerNorm_2(a + Dropout(Dense_2(relu(Dense_1(a)))))

    ``MHA`` has ``num_heads`` heads of size ``key_dim=embed_dim`` (as in the book);
    ``Dense_1`` has ``dense_dim`` units, ``Dense_2`` ``embed_dim``. Sub-layers:
    ``attention``, ``dense_proj`` (``dense``, ``dense_1``), ``layernorm_1``,
    ``layernorm_2``. ``dropout`` (the book's blocks have none; 0 reproduces them)
    acts on each sub-layer's output before the residual sum, in training only.
    ``mask`` (optional, ``(B, T)``, True = real token) keeps attention off padding.
    Input and output: ``(B, T, embed_dim)``. Attention: Vaswani et al. (2017).

    Args:
        embed_dim: Feature size of the inputs and outputs (and each head's ``key_dim``).
        dense_dim: Hidden size of the feed-forward block.
        num_heads: Number of attention heads.
        dropout: Dropout rate on each sub-layer's output (default 0.1; 0: the book's block).
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Array ``(B, T, embed_dim)``.
        training: Enables dropout.
        mask: Optional ``(B, T)`` booleans, True at real tokens.

    Returns:
        Array ``(B, T, embed_dim)``.
    """

    embed_dim: int
    dense_dim: int
    num_heads: int
    dropout: float = 0.1
    keras_name: ClassVar[str] = "transformer_encoder"

    @nn.compact
    def call(self, inputs, training: bool = False, mask=None):
        attention = MultiHeadAttention(self.num_heads, self.embed_dim, name="attention")(
            inputs, inputs, attention_mask=_key_padding(mask), training=training)
        attention = Dropout(self.dropout, name="dropout")(attention, training=training)
        proj_input = LayerNormalization(name="layernorm_1")(inputs + attention)
        proj_output = _FeedForward(self.dense_dim, self.embed_dim, name="dense_proj")(proj_input)
        proj_output = Dropout(self.dropout, name="dropout_1")(proj_output, training=training)
        return LayerNormalization(name="layernorm_2")(proj_input + proj_output)


class TransformerDecoder(Layer):
    """Chollet's Transformer decoder block (post-norm)::

        a = LayerNorm_1(x + Dropout(MHA_1(x, x, causal)))
        c = LayerNorm_2(a + Dropout(MHA_2(a, encoder_outputs)))
        y = LayerNorm_3(c + Dropout(Dense_2(relu(Dense_1(c)))))

    ``layer(inputs, encoder_outputs, training=False, mask=None, encoder_mask=None)``:
    the causal self-attention lets position ``t`` see targets ``<= t`` only; the
    cross-attention reads all encoder outputs. ``mask`` ``(B, T)`` hides padded
    targets from the self-attention, ``encoder_mask`` ``(B, S)`` padded source
    positions from the cross-attention. Sub-layers: ``attention_1``,
    ``attention_2``, ``dense_proj``, ``layernorm_1/2/3``; dropout as in
    ``TransformerEncoder``.

    Args:
        embed_dim: Feature size of the inputs and outputs (and each head's ``key_dim``).
        dense_dim: Hidden size of the feed-forward block.
        num_heads: Number of attention heads.
        dropout: Dropout rate on each sub-layer's output (default 0.1; 0: the book's block).
        input_shape: Optional sample shape without the batch axis (keyword only), as on a Keras first layer.
        dtype: Keras' dtype policy (keyword only), a name such as ``"mixed_bfloat16"`` or a
            ``dlkit.mixed_precision.DTypePolicy``; ``None``: the global policy.

    Call arguments:
        inputs: Target-side array ``(B, T, embed_dim)``.
        encoder_outputs: Source-side array ``(B, S, d)`` (the encoder's output).
        training: Enables dropout.
        mask: Optional ``(B, T)`` booleans, True at real target tokens.
        encoder_mask: Optional ``(B, S)`` booleans, True at real source tokens.

    Returns:
        Array ``(B, T, embed_dim)``.
    """

    embed_dim: int
    dense_dim: int
    num_heads: int
    dropout: float = 0.1
    keras_name: ClassVar[str] = "transformer_decoder"

    @nn.compact
    def call(self, inputs, encoder_outputs, training: bool = False, mask=None, encoder_mask=None):
        self_attention = MultiHeadAttention(self.num_heads, self.embed_dim, name="attention_1")(
            inputs, inputs, attention_mask=_key_padding(mask), use_causal_mask=True, training=training)
        self_attention = Dropout(self.dropout, name="dropout")(self_attention, training=training)
        a = LayerNormalization(name="layernorm_1")(inputs + self_attention)
        cross = MultiHeadAttention(self.num_heads, self.embed_dim, name="attention_2")(
            a, encoder_outputs, attention_mask=_key_padding(encoder_mask), training=training)
        cross = Dropout(self.dropout, name="dropout_1")(cross, training=training)
        c = LayerNormalization(name="layernorm_2")(a + cross)
        proj_output = _FeedForward(self.dense_dim, self.embed_dim, name="dense_proj")(c)
        proj_output = Dropout(self.dropout, name="dropout_2")(proj_output, training=training)
        return LayerNormalization(name="layernorm_3")(c + proj_output)


class _FeedForward(Layer):
    """The book's ``dense_proj``: ``Dense(dense_dim, 'relu')`` then ``Dense(embed_dim)``
    (weights under ``dense`` and ``dense_1``, as in a Keras ``Sequential``)."""

    dense_dim: int
    embed_dim: int
    keras_name: ClassVar[str] = "sequential"

    @nn.compact
    def call(self, inputs, training: bool = False):
        hidden = Dense(self.dense_dim, activation="relu", name="dense")(inputs)
        return Dense(self.embed_dim, name="dense_1")(hidden)
