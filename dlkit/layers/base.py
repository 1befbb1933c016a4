"""The conventions every dlkit layer follows, and that user-written Linen modules may follow.

* **Training flag.** ``__call__(self, inputs, training: bool = False)`` (a dlkit
  ``Layer`` implements it as ``call``), Keras' ``training=`` call argument. The loop passes
  ``training=True`` in ``fit`` and
  ``False`` in ``evaluate``/``predict``; a module whose ``__call__`` has no
  ``training`` parameter is simply called without it.
* **Randomness.** Training-time randomness (dropout, augmentation) draws from
  the ``'dropout'`` RNG stream: ``self.make_rng('dropout')``. The loop derives
  a fresh key per step from the explicit state.
* **Extra loss terms.** ``add_loss(self, value)`` (Keras' ``add_loss``) sows a
  scalar into the ``'losses'`` collection; the loop adds the sum of that
  collection to the loss it differentiates. Weight penalties use it; so can a
  VAE's KL term.
* **State.** Non-trainable variables live in ``'batch_stats'``; the loop marks
  it mutable in training.
* **Precision.** ``dtype=`` (keyword only) is Keras' per-layer dtype policy
  (``dlkit.mixed_precision``): floating inputs are cast to ``compute_dtype`` when the layer is
  called, parameters are created in ``variable_dtype`` and cast to ``compute_dtype`` for use.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax.numpy as jnp

from dlkit import activations, initializers, mixed_precision, regularizers, symbolic
from dlkit.calling import accepts_training, call_with_training  # noqa: F401  (the layers' calling convention)
from dlkit.layer_objects import LayerObject

LOSSES = "losses"
DIAGNOSTICS = "diagnostics"  # problems layers find in their inputs, read by the loop at its epoch sync


def add_loss(module: nn.Module, value, name: str = "add_loss") -> None:
    """Keras' ``layer.add_loss``: add a scalar term to the training loss.

    Args:
      module: the (bound) module adding the term; call it from inside its ``call``.
      value: a scalar; the step adds the sum of all terms to the loss it differentiates.
      name: lets a step find the term again (``Applied.losses``) to log it on its own.
    """
    module.sow(LOSSES, name, jnp.asarray(value, jnp.float32))


def report(module: nn.Module, problem: str, count) -> None:
    """Report a problem a layer finds in its inputs (ids out of range, say), from inside ``call``.

    Nothing leaves the device in the step: ``count`` is summed over the epoch and the loop
    raises a ``ValueError`` naming the layer and ``problem`` at its one host sync per epoch.

    Args:
      module: the (bound) layer reporting.
      problem: what is wrong and how to fix it, e.g. "got ids outside [0, 5): make input_dim larger".
      count: how many times this batch shows the problem (0: none).
    """
    module.sow(DIAGNOSTICS, problem, jnp.asarray(count, jnp.float32))


def as_tuple(value, n: int, what: str, positive: bool = False) -> tuple:
    """Keras accepts ``3`` for ``(3, 3)``: expand an int, or check a sequence, to ``n`` ints.

    Args:
      value: an int or a sequence of ints.
      n: the length wanted.
      what: the argument's name, for the error.
      positive: require every int to be at least 1.

    Returns:
      A tuple of ``n`` ints.

    Raises:
      ValueError: for a sequence of another length, of non-ints, or (``positive``) of ints below 1.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * n
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(value) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} must be an int or a tuple of {n} ints, got {value!r}.")
    if positive and min(value) < 1:
        raise ValueError(f"{what} must be positive, got {value[0] if len(set(value)) == 1 else value!r}.")
    return value


def as_float(inputs, dtype=jnp.float32):
    """Integer inputs (uint8 images, say) as floats, as Keras casts a layer's inputs.

    Args:
      inputs: an array.
      dtype: the float dtype, the layer's ``compute_dtype``.

    Returns:
      ``inputs`` as ``dtype`` if its dtype is not floating, else ``inputs`` itself (``Layer``
      has cast floating inputs to the compute dtype already).
    """
    return inputs if jnp.issubdtype(inputs.dtype, jnp.floating) else inputs.astype(dtype)


class Layer(LayerObject, nn.Module):
    """Keras' ``Layer``: the base class of dlkit layers, a Linen module with a Keras name.

    Subclasses implement ``call(self, inputs, training=False)`` as in Keras
    (decorated with ``nn.compact`` when they create variables). Calling a layer
    on arrays runs ``call``; calling it on a symbolic tensor (``dlkit.Input``)
    records it in a functional-API graph instead.

    Args:
      input_shape: the shape of one sample (no batch axis), as on a Keras first layer, so
        the model can be built, and summarised, before it sees data.
      dtype: Keras' dtype policy of the layer, a ``dlkit.mixed_precision.DTypePolicy`` or its
        name (``"mixed_bfloat16"``); ``None`` takes the global policy when the layer is made
        (stored as an ``InheritedPolicy``, which a ``Trainer``'s ``dtype_policy=`` replaces).
    """

    input_shape: Optional[Sequence[int]] = dataclasses.field(default=None, kw_only=True)
    dtype: Any = dataclasses.field(default=None, kw_only=True)
    keras_name: ClassVar[str] = "layer"
    # Keras' ``autocast``: cast floating inputs to the compute dtype when called. LayerNormalization
    # (which computes in float32) and the embeddings (which take ids) take their inputs as they come.
    autocast: ClassVar[bool] = True
    # Constructor arguments that must be positive ints (or tuples of them), checked when the
    # layer is made, as Keras does, not deep inside the first step.
    positive_arguments: ClassVar[tuple] = ()

    def __post_init__(self):
        for name in self.positive_arguments:
            value = getattr(self, name)
            if value is not None:
                size = len(value) if isinstance(value, (tuple, list)) else 1
                as_tuple(value, size, f"{type(self).__name__}({name}=...)", positive=True)
        # Resolved once, when the layer is made (Keras' rule); Flax's clones copy the field.
        object.__setattr__(self, "dtype", mixed_precision.for_new_layer(self.dtype))
        super().__post_init__()

    @property
    def dtype_policy(self) -> mixed_precision.DTypePolicy:
        """Keras' ``layer.dtype_policy``: the policy the layer runs with (its own ``dtype=``, else the
        enclosing ``Trainer``'s or layer's policy, else the global policy it was made under)."""
        return mixed_precision.resolve(self.dtype)

    @property
    def compute_dtype(self) -> str:
        """Keras' ``layer.compute_dtype``: the dtype of the layer's computation."""
        return self.dtype_policy.compute_dtype

    @property
    def variable_dtype(self) -> str:
        """Keras' ``layer.variable_dtype``: the dtype of the layer's parameters."""
        return self.dtype_policy.variable_dtype

    def __call__(self, inputs, *args, **kwargs):
        if symbolic.is_symbolic(inputs):
            return symbolic.call_layer(self, inputs, *args, **kwargs)
        policy = self.dtype_policy
        if self.autocast:
            inputs, args, kwargs = mixed_precision.cast_floating((inputs, args, kwargs), policy.compute_dtype)
        with mixed_precision.policy_scope(policy):  # the sub-layers this layer makes run with its policy
            return self.call(inputs, *args, **kwargs)

    @nn.nowrap
    def weight(self, name: str, init, shape: tuple, regularizer=None):
        """A parameter created in the variable dtype, returned in the compute dtype (Keras' autocast).

        Args:
          name: the parameter's name.
          init: an initializer name or function (``dlkit.initializers``).
          shape: its shape.
          regularizer: a penalty on the parameter (on its variable-dtype value), added to the loss.

        Returns:
          The parameter as ``compute_dtype``.
        """
        value = self.param(name, initializers.get(init), shape, jnp.dtype(self.variable_dtype))
        penalty = regularizers.get(regularizer)
        if penalty is not None:
            add_loss(self, penalty(value))
        return mixed_precision.cast_floating(value, self.compute_dtype)

    def call(self, inputs, training: bool = False):
        """The layer's computation, as Keras' ``call``.

        Args:
          inputs: a batch, batch axis first.
          training: Keras' flag: dropout and batch statistics on.

        Returns:
          The layer's outputs.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement call(self, inputs, training=False).")


class WeightedLayer(Layer):
    """The shared machinery of ``Dense`` and the convolutions: kernel, bias, penalties, activation,
    ``y = activation(op(x, kernel) + bias)`` plus the regularizers' penalties added to the loss.

    Args:
      input_shape: as on ``Layer``.
      dtype: as on ``Layer``.

    Subclasses declare the Keras fields ``activation, use_bias,
    kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
    activity_regularizer`` themselves, after their own leading fields, so that
    Keras' positional order (``Dense(10, 'relu')``) holds.
    """

    def _weights(self, kernel_shape: tuple, bias_size: int):
        kernel = self.weight("kernel", self.kernel_initializer, kernel_shape, self.kernel_regularizer)
        bias = None
        if self.use_bias:
            bias = self.weight("bias", self.bias_initializer, (bias_size,), self.bias_regularizer)
        return kernel, bias

    def _output(self, y, bias):
        if bias is not None:
            y = y + bias
        y = activations.get(self.activation)(y)
        penalty = regularizers.get(self.activity_regularizer)
        if penalty is not None:
            # Keras divides the activity penalty by the batch size, so its weight
            # does not depend on how the data are batched.
            add_loss(self, penalty(y) / y.shape[0])
        return y
