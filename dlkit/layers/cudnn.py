"""cuDNN's LSTM kernel (``jax.experimental.rnn``) under ``LSTM``, on the conditions Keras 3's JAX backend uses.

``LSTM(use_cudnn='auto')`` (Keras' argument and default) runs cuDNN when ``use_cudnn`` says every
condition holds: a GPU backend, ``activation`` tanh, ``recurrent_activation`` sigmoid, ``use_bias``,
``unroll=False``, ``recurrent_dropout == 0`` (input ``dropout`` is fine: its mask multiplies the
inputs first, as in Keras), no ``mask`` (Keras' JAX backend takes its own loop for any mask),
float32 weights (``jax.experimental.rnn`` computes in float32 only) and a default matmul precision
that is not bfloat16 (the kernel has none). Otherwise dlkit's own recurrence runs
(``dlkit/layers/recurrence.py``); ``use_cudnn=True`` raises instead, naming the unmet conditions,
and ``use_cudnn=False`` never takes cuDNN. ``GRU`` and ``SimpleRNN`` always run dlkit's recurrence:
``jax.experimental.rnn`` has an LSTM kernel only.

The weights are repacked at every call, so parameters, checkpoints and ``get_weights`` keep Keras'
layout whichever path runs (``cudnn_weights``). cuDNN's gates are Keras' in the same order
(``i, f, g, o`` with ``g`` Keras' ``c``), transposed (``(4 * units, features)``), and cuDNN adds two
biases: Keras' one bias is the input bias and the recurrent one is zero, so its gradient is the
bias' gradient. ``go_backwards`` reverses the inputs before the kernel, and the returned sequence
is in processing order, as dlkit's own path returns it (Keras' JAX cuDNN path flips it back to
input order, unlike its own loop); ``return_state`` and ``initial_state`` map to the kernel's
final and initial states.

Under ``jax.vmap`` (side-by-side K-fold or ensemble training) the kernel, which has no batching
rule of its own, runs once per vmapped member (``jax.lax.map``), forward and backward alike.

Everything here but the kernel call itself is tested on CPU, with ``reference_kernels()``
(``jax.experimental.rnn.lstm_ref``: the same equations in plain JAX) standing in for ``kernels()``. The cuDNN kernel
is unverified until run on a GPU: ``scripts/gpu_check.py`` compares its outputs and gradients with
dlkit's own recurrence on the same weights.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dlkit import activations

# What ``use_cudnn`` accepts as tanh and sigmoid: dlkit's (what the names resolve to) and JAX's.
_TANH = (activations.tanh, jnp.tanh, jax.nn.tanh)
_SIGMOID = (activations.sigmoid, jax.nn.sigmoid)
# Default matmul precisions that ``jax.experimental.rnn`` refuses (it has no bfloat16 kernel).
_BFLOAT16_PRECISIONS = ("bfloat16", "default", "fastest")


def backend() -> str:
    """The platform the layers are traced for: ``jax.default_backend()``, Keras' test.

    Returns:
        ``'cpu'``, ``'gpu'`` or ``'tpu'``.
    """
    return jax.default_backend()


def kernels():
    """The kernel's forward and backward halves: ``jax.experimental.rnn.lstm_fwd`` / ``lstm_bwd``.

    Returns:
        ``(fwd, bwd)`` with ``jax.experimental.rnn``'s signatures (tests put ``lstm_ref`` here).
    """
    from jax.experimental import rnn

    return rnn.lstm_fwd, rnn.lstm_bwd


def reference_kernels():
    """``kernels()``'s stand-in without a GPU: ``jax.experimental.rnn.lstm_ref`` (cuDNN's equations in plain
    JAX) in ``lstm_fwd``/``lstm_bwd``'s signatures, its backward pass JAX's own.

    Returns:
        ``(fwd, bwd)``; ``fwd``'s residuals are its inputs.
    """
    from jax.experimental import rnn

    def fwd(x, h0, c0, w, lengths, input_size, hidden_size, num_layers, dropout, bidirectional, precision=None):
        unpacked = rnn.unpack_lstm_weights(w, input_size, hidden_size, num_layers, bidirectional)
        out = rnn.lstm_ref(x, h0, c0, *unpacked, lengths, input_size, hidden_size, num_layers, dropout, bidirectional)
        return out, (x, h0, c0, w, lengths)

    def bwd(input_size, hidden_size, num_layers, dropout, bidirectional, precision, residuals, cotangents):
        *inputs, lengths = residuals
        sizes = (input_size, hidden_size, num_layers, dropout, bidirectional, precision)
        _, vjp = jax.vjp(lambda x, h0, c0, w: fwd(x, h0, c0, w, lengths, *sizes)[0], *inputs)
        return (*vjp(cotangents), jnp.zeros_like(lengths))

    return fwd, bwd


def unmet(layer, platform: str, mask=None, dtype=jnp.float32, precision=None) -> list:
    """The cuDNN conditions (module docstring) that ``layer`` does not meet.

    Args:
        layer: A recurrent layer (``LSTM``; any other kind meets none).
        platform: ``backend()`` or a platform name.
        mask: The call's sequence mask, or ``None``.
        dtype: The weights' dtype.
        precision: ``jax.config.jax_default_matmul_precision``'s value (``None``: the default).

    Returns:
        Each unmet condition as a short phrase; empty when cuDNN can run.
    """
    if type(layer).keras_name != "lstm":
        return [f"{type(layer).__name__} has no cuDNN kernel in jax.experimental.rnn (LSTM only)"]
    checks = (
        (platform == "gpu", f"a GPU backend (this is {platform!r})"),
        (activations.get(layer.activation) in _TANH, "activation='tanh'"),
        (activations.get(layer.recurrent_activation) in _SIGMOID, "recurrent_activation='sigmoid'"),
        (bool(layer.use_bias), "use_bias=True"),
        (not layer.unroll, "unroll=False"),
        (not layer.recurrent_dropout, "recurrent_dropout=0"),
        (mask is None, "no mask"),
        (jnp.dtype(dtype) == jnp.float32, f"float32 weights (these are {jnp.dtype(dtype).name})"),
        (precision is None or str(precision).lower() not in _BFLOAT16_PRECISIONS,
         f"a matmul precision other than bfloat16 (jax_default_matmul_precision is {precision!r})"),
    )
    return [need for ok, need in checks if not ok]


def use_cudnn(layer, platform: str, mask=None, dtype=jnp.float32, precision=None) -> bool:
    """Whether ``layer``'s call runs the cuDNN kernel: its ``use_cudnn`` and the conditions (``unmet``).

    Args:
        layer: A recurrent layer; only ``LSTM`` has ``use_cudnn`` (``'auto'``, ``True`` or ``False``).
        platform: ``backend()`` or a platform name.
        mask: The call's sequence mask, or ``None``.
        dtype: The weights' dtype.
        precision: ``jax.config.jax_default_matmul_precision``'s value.

    Returns:
        ``True`` to run cuDNN, ``False`` for dlkit's own recurrence.

    Raises:
        ValueError: ``use_cudnn=True`` and a condition is unmet (Keras raises here too).
    """
    wanted = getattr(layer, "use_cudnn", False)
    if wanted is False:
        return False
    missing = unmet(layer, platform, mask, dtype, precision)
    if missing and wanted is True:
        raise ValueError(f"{type(layer).__name__}(use_cudnn=True), but cuDNN needs {'; '.join(missing)}. Pass "
                         f"use_cudnn='auto' to fall back to dlkit's own recurrence.")
    return not missing


def cudnn_weights(kernel, recurrent_kernel, bias):
    """Keras' LSTM weights as ``jax.experimental.rnn``'s flat cuDNN array (one layer, one direction).

    Args:
        kernel: ``(features, 4 * units)``, gate blocks ``i, f, c, o``.
        recurrent_kernel: ``(units, 4 * units)``.
        bias: ``(4 * units,)``.

    Returns:
        ``[W_ih, W_hh, b_ih, b_hh]`` flattened: ``kernel.T``, ``recurrent_kernel.T``, ``bias``, zeros.
    """
    return jnp.concatenate([kernel.T.ravel(), recurrent_kernel.T.ravel(), bias, jnp.zeros_like(bias)])


def _member_by_member(fun):
    """``fun`` with a vmap rule that runs it once per member (``lax.map``); unbatched arguments are shared."""
    fun = jax.custom_batching.custom_vmap(fun)

    @fun.def_vmap
    def rule(axis_size, in_batched, *args):
        leaves, tree = jax.tree.flatten(args)
        flags = jax.tree.leaves(in_batched)

        def one(mapped):
            mapped = iter(mapped)
            return fun(*jax.tree.unflatten(tree, [next(mapped) if b else a for a, b in zip(leaves, flags)]))

        out = jax.lax.map(one, [a for a, b in zip(leaves, flags) if b])
        return out, jax.tree.map(lambda _: True, out)
    return fun


def _kernel_call(fwd, bwd, input_size: int, units: int):
    """``(x, h0, c0, weights) -> (y, h_n, c_n)`` through ``fwd``/``bwd``, differentiable and vmappable."""
    sizes = (input_size, units, 1, 0.0, False, None)  # input, hidden, layers, dropout, bidirectional, precision

    @_member_by_member
    def forward(x, h0, c0, weights):
        lengths = jnp.full((x.shape[0],), x.shape[1], jnp.int32)
        return fwd(x, h0, c0, weights, lengths, *sizes)

    @_member_by_member
    def backward(residuals, cotangents):
        return bwd(*sizes, residuals, cotangents)[:4]  # the last is seq_lengths' (zero) gradient

    @jax.custom_vjp
    def call(x, h0, c0, weights):
        return forward(x, h0, c0, weights)[0]

    call.defvjp(forward, backward)
    return call


def lstm(inputs, weights, states, input_mask, return_sequences: bool, go_backwards: bool):
    """The LSTM on the cuDNN kernel (``kernels()``), with dlkit's own path's results.

    Args:
        inputs: Batch-major ``(batch, time, features)``, in the weights' dtype.
        weights: ``(kernel, recurrent_kernel, bias)``, Keras' layout.
        states: ``(h, c)``, each ``(batch, units)``.
        input_mask: The input dropout multipliers ``(batch, 1, features)``, or ``None``.
        return_sequences: Return every step's output.
        go_backwards: Read the sequence from its last step to its first.

    Returns:
        ``(output, (h, c))``: ``output`` ``(batch, time, units)`` in processing order with
        ``return_sequences``, else ``(batch, units)``; the final states.
    """
    kernel, recurrent_kernel, bias = weights
    if input_mask is not None:  # one multiplier per (sample, feature), reused at every step: Keras' input dropout
        inputs = inputs * input_mask
    if go_backwards:
        inputs = inputs[:, ::-1]
    call = _kernel_call(*kernels(), int(kernel.shape[0]), int(recurrent_kernel.shape[0]))
    y, h, c = call(inputs, states[0][None], states[1][None], cudnn_weights(kernel, recurrent_kernel, bias))
    return (y if return_sequences else h[0]), (h[0], c[0])


def default_precision():
    """``jax.config.jax_default_matmul_precision``, as ``use_cudnn``'s ``precision``.

    Returns:
        Its value (``None`` when unset).
    """
    return jax.config.jax_default_matmul_precision

