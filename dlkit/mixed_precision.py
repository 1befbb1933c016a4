"""Keras' mixed precision (``keras.mixed_precision``): dtype policies, the global policy, loss scaling.

A policy names two dtypes: ``variable_dtype``, the dtype parameters are created and updated in,
and ``compute_dtype``, the dtype a layer casts its inputs and weights to for its computation.
``"mixed_bfloat16"`` (bfloat16 compute, float32 variables) is for TPUs and recent GPUs;
``"mixed_float16"`` for GPUs, with dynamic loss scaling in the supervised step, as Keras wraps the
optimizer in a ``LossScaleOptimizer``. On a CPU both are usually slower than float32.

Which policy a layer uses, as in Keras:

* its own ``dtype=`` (a policy or a name) wins;
* a layer made without one takes the global policy (``set_global_policy``) at the moment it is
  made; a ``Trainer(..., dtype_policy=...)``, or an enclosing dlkit layer (the sub-layers a
  ``TransformerEncoder`` makes), replaces that inherited policy, but never a layer's own.

What stays float32 under a mixed policy, as in Keras: parameters, the statistics of
``BatchNormalization`` and ``LayerNormalization`` (computed in float32, output in the compute
dtype), and losses and metrics (the model's outputs are cast to float32 first). A softmax output
is in the compute dtype, as Keras' ``Activation("softmax")`` and ``Dense(..., activation="softmax")``
give it; the loss casts it to float32.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax.training import dynamic_scale

from dlkit import layer_objects

# name: (compute dtype, variable dtype)
_POLICIES = {
    "float32": ("float32", "float32"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "float16": ("float16", "float16"),
    "mixed_bfloat16": ("bfloat16", "float32"),
    "mixed_float16": ("float16", "float32"),
}
# Keras' LossScaleOptimizer defaults.
INITIAL_SCALE = 2.0 ** 15
DYNAMIC_GROWTH_STEPS = 2000


@dataclasses.dataclass(frozen=True)
class DTypePolicy:
    """Keras' ``DTypePolicy`` (also ``Policy``): the compute and variable dtypes of a layer.

    Args:
      name: ``"float32"`` (default), ``"bfloat16"``, ``"float16"``, ``"mixed_bfloat16"`` or
        ``"mixed_float16"``.

    Raises:
      ValueError: for another name, listing the valid ones.
    """

    name: str = "float32"

    def __post_init__(self):
        if not isinstance(self.name, str) or self.name not in _POLICIES:
            raise ValueError(f"Unknown dtype policy {self.name!r}: use one of {sorted(_POLICIES)} "
                             f"(e.g. 'mixed_bfloat16' for bfloat16 compute with float32 variables).")

    @property
    def compute_dtype(self) -> str:
        """The dtype of a layer's computation (its inputs and weights are cast to it)."""
        return _POLICIES[self.name][0]

    @property
    def variable_dtype(self) -> str:
        """The dtype of a layer's parameters (float32 under the mixed policies)."""
        return _POLICIES[self.name][1]

    def __repr__(self) -> str:
        return f'<{type(self).__name__} "{self.name}">'


Policy = DTypePolicy


@dataclasses.dataclass(frozen=True, repr=False)
class InheritedPolicy(DTypePolicy):
    """The global policy a layer made without ``dtype=`` took when it was made.

    A ``Trainer``'s ``dtype_policy=`` or an enclosing layer's policy replaces it (``resolve``);
    a layer's own ``dtype=`` is a plain ``DTypePolicy`` and is never replaced.

    Args:
      name: the global policy's name at the layer's creation.
    """


_GLOBAL = [DTypePolicy("float32")]
_SCOPE: contextvars.ContextVar = contextvars.ContextVar("dlkit_dtype_policy", default=None)


def get(policy: Any) -> DTypePolicy:
    """A policy from a name, a ``DTypePolicy`` or a dtype (``jnp.bfloat16``).

    Args:
      policy: one of those.

    Returns:
      The ``DTypePolicy`` (a given one itself).

    Raises:
      ValueError: an unknown name, listing the valid ones.
    """
    if isinstance(policy, DTypePolicy):
        return policy
    if not isinstance(policy, str):
        try:
            policy = np.dtype(policy).name
        except TypeError:
            raise ValueError(f"dtype must be a dtype policy or its name, one of {sorted(_POLICIES)}; "
                             f"got {policy!r}.") from None
    return DTypePolicy(policy)


def set_global_policy(policy: Any) -> None:
    """Keras' ``set_global_policy`` (also ``set_dtype_policy``): the policy of layers made from now on
    without a ``dtype=`` of their own.

    Args:
      policy: a ``DTypePolicy`` or its name (``"mixed_bfloat16"``); ``None`` restores ``"float32"``.

    Raises:
      ValueError: an unknown name, listing the valid ones.
    """
    _GLOBAL[0] = DTypePolicy("float32") if policy is None else get(policy)


def global_policy() -> DTypePolicy:
    """Keras' ``global_policy`` (also ``dtype_policy``): the policy new layers take.

    Returns:
      The global ``DTypePolicy`` (``"float32"`` unless ``set_global_policy`` changed it).
    """
    return _GLOBAL[0]


set_dtype_policy = set_global_policy
dtype_policy = global_policy


@contextlib.contextmanager
def policy_scope(policy: Any):
    """Within this block, layers without a ``dtype=`` of their own use ``policy`` when they run
    (how ``Trainer(dtype_policy=...)`` applies its policy; Keras has no such scope).

    Args:
      policy: a ``DTypePolicy`` or a name; ``None`` changes nothing.

    Returns:
      A context manager.
    """
    if policy is None:
        yield
        return
    token = _SCOPE.set(get(policy))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def for_new_layer(dtype: Any) -> DTypePolicy:
    """The policy a layer stores when it is made: its own, or the global one, marked inherited.

    Args:
      dtype: the layer's ``dtype=`` argument (``None``: inherit).

    Returns:
      ``get(dtype)``, or an ``InheritedPolicy`` of the global policy for ``None``.
    """
    return InheritedPolicy(global_policy().name) if dtype is None else get(dtype)


def resolve(stored: Optional[DTypePolicy]) -> DTypePolicy:
    """The policy a layer runs with now: its own, else the enclosing scope's, else the inherited one.

    Args:
      stored: what the layer stored when it was made (``for_new_layer``).

    Returns:
      A ``DTypePolicy``.
    """
    if stored is None or isinstance(stored, InheritedPolicy):
        return _SCOPE.get() or stored or global_policy()
    return stored


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Every floating array in ``tree`` cast to ``dtype`` (integer and boolean arrays, and other
    leaves, unchanged). Float64 stays float64 when ``dtype`` is float32: it exists only where
    ``jax_enable_x64`` was turned on on purpose (a gradient check in float64, say).

    Args:
      tree: a pytree of arrays.
      dtype: the floating dtype wanted.

    Returns:
      The tree, floating leaves cast.
    """
    dtype = jnp.dtype(dtype)

    def cast(leaf):
        floating = hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
        if not floating or leaf.dtype == dtype or (leaf.dtype == jnp.float64 and dtype == jnp.float32):
            return leaf
        return leaf.astype(dtype)
    return jax.tree.map(cast, tree)


def float32(tree: Any) -> Any:
    """The floating arrays of ``tree`` in float32: what losses and metrics compute on, as in Keras.

    Args:
      tree: model outputs (a pytree).

    Returns:
      The tree with half-precision leaves cast up (float32 ones are returned as they are).
    """
    return cast_floating(tree, jnp.float32)


# ---------------------------------------------------------------------- loss scaling
def uses_loss_scaling(policies) -> bool:
    """Keras wraps the optimizer in a ``LossScaleOptimizer`` for ``"mixed_float16"`` only (not bf16,
    whose range is float32's).

    Args:
      policies: the policies the model's layers run with.

    Returns:
      Whether any of them is ``"mixed_float16"``.
    """
    return any(get(p).name == "mixed_float16" for p in policies)


def state_fields(model, policy: Optional[DTypePolicy]) -> dict:
    """The ``TrainState.create`` arguments for a model trained under ``policy`` (a ``Trainer``'s).

    Args:
      model: the model (its layer objects are read, as the user made them).
      policy: the ``Trainer``'s ``dtype_policy``, or ``None``.

    Returns:
      ``{"dtype_policy": policy, "loss_scaling": ...}``: loss scaling when a layer of the model runs
      under ``"mixed_float16"`` (Keras wraps the optimizer then).
    """
    with policy_scope(policy):
        policies = [resolve(m.dtype) for _, m in layer_objects.walk(model)
                    if isinstance(getattr(m, "dtype", None), DTypePolicy)]
    return {"dtype_policy": policy, "loss_scaling": uses_loss_scaling(policies)}


def initial_loss_scale(initial_scale: float = INITIAL_SCALE,
                       dynamic_growth_steps: int = DYNAMIC_GROWTH_STEPS) -> dynamic_scale.DynamicScale:
    """The loss-scale state of Keras' ``LossScaleOptimizer``, as Flax's ``DynamicScale`` (a pytree,
    checkpointed with the rest of the state).

    The scale halves at a step with a non-finite gradient (that step's update is skipped) and
    doubles after ``dynamic_growth_steps`` finite steps in a row, as in Keras.

    Args:
      initial_scale: the first scale (Keras' default ``2 ** 15``).
      dynamic_growth_steps: finite steps before the scale doubles (Keras' default 2000).

    Returns:
      A ``flax.training.dynamic_scale.DynamicScale`` with array leaves.
    """
    # Flax grows when the count of earlier finite steps reaches growth_interval; Keras grows at the
    # dynamic_growth_steps-th finite step itself.
    return dynamic_scale.DynamicScale(growth_interval=dynamic_growth_steps - 1,
                                      fin_steps=jnp.zeros((), jnp.int32),
                                      scale=jnp.asarray(initial_scale, jnp.float32))


def value_and_grad(loss_fn, state):
    """``jax.value_and_grad(loss_fn, has_aux=True)(state.params)``, with the loss scaled when the state
    holds a loss scale (``state.loss_scale``, for ``"mixed_float16"``).

    Args:
      loss_fn: ``params -> (loss, aux)``.
      state: the ``TrainState``.

    Returns:
      ``((loss, aux), grads, state, finite)``: the state with its updated loss scale, and whether
      every gradient is finite (``None`` without loss scaling).
    """
    if getattr(state, "loss_scale", None) is None:
        return (*jax.value_and_grad(loss_fn, has_aux=True)(state.params), state, None)
    scale, finite, value, grads = state.loss_scale.value_and_grad(loss_fn, has_aux=True)(state.params)
    return value, grads, state.replace(loss_scale=scale), finite


def apply_gradients(state, grads, finite):
    """``state.apply_gradients(grads)``, skipped (parameters and optimizer state kept) when
    ``finite`` is False, as Keras' ``LossScaleOptimizer`` skips a step with non-finite gradients.

    Args:
      state: the ``TrainState``.
      grads: the (unscaled) gradients.
      finite: ``value_and_grad``'s flag, or ``None`` (always apply).

    Returns:
      The new state.
    """
    new = state.apply_gradients(grads)
    if finite is None:
        return new
    def keep(updated, old):
        return jnp.where(finite, updated, old)
    return new.replace(params=jax.tree.map(keep, new.params, state.params),
                       opt_state=jax.tree.map(keep, new.opt_state, state.opt_state))
