"""Optimizers under Keras' names and defaults, resolved to optax.

Every constructor wraps its optax transformation in ``optax.inject_hyperparams``
so the learning rate lives in the optimizer state: callbacks can change it
without recompiling the step. ``learning_rate`` may be a float or an optax
schedule (a function of the step count). Any ``optax.GradientTransformation``
is accepted as is wherever an optimizer is.

Keras' gradient clipping arguments, applied to the gradients before the update:
``clipvalue=v`` clips each element to ``[-v, v]``; ``clipnorm=c`` rescales each
weight's gradient ``g`` to ``g * min(1, c / ||g||)``; ``global_clipnorm=c`` rescales
all of them together by ``min(1, c / sqrt(sum ||g||^2))``.

Keras' weight averaging: ``use_ema=True`` keeps ``average = ema_momentum * average +
(1 - ema_momentum) * weights`` after every update (``average = weights`` after the first);
``ema_overwrite_frequency=n`` sets the weights to the average every ``n`` updates, and
``Trainer.fit`` sets them to it when training ends (Keras' ``finalize_variable_values``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from dlkit._registry import lookup
from dlkit.saving.recipes import recorded  # trainer.save records each constructor and its arguments


def clip_by_norm(max_norm: float) -> optax.GradientTransformation:
    """Keras' ``clipnorm``: each gradient array ``g`` becomes ``g * min(1, max_norm / ||g||_2)``.

    Args:
        max_norm: The largest L2 norm of each array.

    Returns:
        A stateless ``optax.GradientTransformation``.
    """
    def clip(g):
        norm = jnp.sqrt(jnp.sum(jnp.square(g)))
        return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))

    return optax.stateless(lambda updates, params=None: jax.tree.map(clip, updates))


class EmaState(NamedTuple):
    """The state of ``ema_weights``.

    Args:
        inner: The wrapped transformation's state.
        average: The moving average of the weights (a pytree like ``params``).
        count: The number of updates so far (int32 scalar).
    """

    inner: Any
    average: Any
    count: jax.Array


def ema_weights(inner: optax.GradientTransformation, momentum: float = 0.99,
                overwrite_frequency: Optional[int] = None) -> optax.GradientTransformation:
    """``inner`` plus Keras' ``use_ema``: the state keeps a moving average of the updated weights.

    After each update ``average = momentum * average + (1 - momentum) * weights``
    (``average = weights`` after the first); every ``overwrite_frequency`` updates the
    update is changed so that the weights become ``average``.

    Args:
        inner: The transformation whose updated weights are averaged.
        momentum: Keras' ``ema_momentum``, in ``[0, 1]``.
        overwrite_frequency: Keras' ``ema_overwrite_frequency``, an int ``>= 1``, or ``None`` (never).

    Returns:
        An ``optax.GradientTransformation`` with an ``EmaState``; its ``update`` needs ``params``.

    Raises:
        ValueError: ``momentum`` or ``overwrite_frequency`` is out of range (and, at update time,
            ``params`` is missing).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"ema_momentum must be in [0, 1], got {momentum}.")
    if overwrite_frequency is not None and (not isinstance(overwrite_frequency, int) or overwrite_frequency < 1):
        raise ValueError(f"ema_overwrite_frequency must be an integer >= 1 or None, got {overwrite_frequency!r}.")

    def init(params):
        return EmaState(inner.init(params), jax.tree.map(jnp.copy, params), jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("use_ema needs the weights: call update(grads, state, params).")
        updates, inner_state = inner.update(updates, state.inner, params)
        weights = optax.apply_updates(params, updates)
        average = optax.incremental_update(weights, state.average, jnp.where(state.count == 0, 1.0, 1.0 - momentum))
        count = state.count + 1
        if overwrite_frequency:
            overwrite = count % overwrite_frequency == 0
            updates = jax.tree.map(lambda u, a, p: jnp.where(overwrite, a - p, u), updates, average, params)
        return updates, EmaState(inner_state, average, count)

    return optax.GradientTransformation(init, update)


def averaged_weights(tx, opt_state, params):
    """``params`` with every weight that a ``use_ema`` optimizer averages replaced by its average
    (``params`` itself when there is none): Keras' ``finalize_variable_values``.

    Args:
        tx: The optimizer, or a dict ``{group: optimizer}``.
        opt_state: Its state (a dict of states for a dict of optimizers).
        params: The parameters (a dict of groups for a dict of optimizers).

    Returns:
        The parameters with averaged values where an ``EmaState`` holds them (frozen weights kept).
    """
    if isinstance(tx, Mapping):
        return {part: averaged_weights(tx[part], opt_state[part], params[part]) for part in params}
    found = _find(opt_state, EmaState)
    if found is None:
        return params
    return jax.tree.map(lambda a, p: p if isinstance(a, optax.MaskedNode) else a, found.average,
                        params, is_leaf=lambda a: isinstance(a, optax.MaskedNode))  # MaskedNode: a frozen weight


def _find(opt_state, kind):
    if isinstance(opt_state, kind):
        return opt_state
    parts = opt_state.values() if isinstance(opt_state, dict) else opt_state if isinstance(opt_state, tuple) else ()
    return next((found for part in parts if (found := _find(part, kind)) is not None), None)


_OPTIONS = ("clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum", "ema_overwrite_frequency")


def _build(optimizer, options: dict, **hyperparams) -> optax.GradientTransformation:
    """``optimizer``'s transformation with Keras' ``options`` (named in ``_OPTIONS``) around it."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"Unknown optimizer argument(s) {unknown}; besides its own, an optimizer takes "
                        f"{', '.join(_OPTIONS)}.")
    return _wrap(optax.inject_hyperparams(optimizer)(**hyperparams), **options)


def _wrap(inner, clipnorm: Optional[float] = None, clipvalue: Optional[float] = None,
          global_clipnorm: Optional[float] = None, use_ema: bool = False, ema_momentum: float = 0.99,
          ema_overwrite_frequency: Optional[int] = None) -> optax.GradientTransformation:
    if clipnorm is not None and global_clipnorm is not None:
        raise ValueError("Pass clipnorm (per weight) or global_clipnorm (all weights together), not both.")
    clipping = [t for t in (None if clipvalue is None else optax.clip(clipvalue),
                            None if clipnorm is None else clip_by_norm(clipnorm),
                            None if global_clipnorm is None else optax.clip_by_global_norm(global_clipnorm))
                if t is not None]
    tx = optax.chain(*clipping, inner) if clipping else inner
    return ema_weights(tx, ema_momentum, ema_overwrite_frequency) if use_ema else tx


@recorded
def SGD(learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False, **options):  # noqa: N802
    """Keras' ``SGD``: ``v = momentum * v + g; w -= lr * v`` (Nesterov: ``w -= lr * (g + momentum * v)``).

    With ``momentum == 0`` plain gradient descent, ``w -= lr * g``. Nesterov momentum as in
    Sutskever et al. (2013).

    Args:
        learning_rate: A float or an optax schedule ``step -> lr`` (Keras' default 0.01).
        momentum: Momentum ``>= 0``.
        nesterov: Use Nesterov momentum.
        **options: Keras' ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency`` (module docstring).

    Returns:
        An ``optax.GradientTransformation`` with the learning rate in its state.

    Raises:
        TypeError: An unknown keyword argument.
        ValueError: Both ``clipnorm`` and ``global_clipnorm``, or a bad EMA setting.
    """
    return _build(optax.sgd, options,
                  learning_rate=learning_rate, momentum=momentum or None, nesterov=nesterov)


@recorded
def Adam(learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,  # noqa: N802
         **options):
    """Keras' ``Adam`` (Kingma & Ba, 2015), as ``optax.adam``::

        m = beta_1 * m + (1 - beta_1) * g,    v = beta_2 * v + (1 - beta_2) * g**2
        m_hat = m / (1 - beta_1**t),          v_hat = v / (1 - beta_2**t)
        w -= lr * m_hat / (sqrt(v_hat) + epsilon)

    (Keras adds ``epsilon`` to ``sqrt(v)`` before the bias correction; the two agree up to
    ``epsilon``'s scale.)

    Args:
        learning_rate: A float or an optax schedule ``step -> lr`` (Keras' default 0.001).
        beta_1: Decay of the first-moment estimate ``m``.
        beta_2: Decay of the second-moment estimate ``v``.
        epsilon: Added to the denominator (Keras' default 1e-7).
        **options: Keras' ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency`` (module docstring).

    Returns:
        An ``optax.GradientTransformation`` with the learning rate in its state.

    Raises:
        TypeError: An unknown keyword argument.
        ValueError: Both ``clipnorm`` and ``global_clipnorm``, or a bad EMA setting.
    """
    return _build(optax.adam, options,
                  learning_rate=learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)


@recorded
def AdamW(learning_rate=0.001, weight_decay: float = 0.004, beta_1: float = 0.9, beta_2: float = 0.999,  # noqa: N802
          epsilon: float = 1e-7, **options):
    """Keras' ``AdamW``: Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``optax.adamw``:
    ``w -= lr * (m_hat / (sqrt(v_hat) + epsilon) + weight_decay * w)``, ``m_hat``/``v_hat`` as in ``Adam``.

    Every weight is decayed (biases and normalization scales too).

    Args:
        learning_rate: A float or an optax schedule ``step -> lr`` (Keras' default 0.001).
        weight_decay: The decay coefficient (Keras' default 0.004).
        beta_1: Decay of the first-moment estimate.
        beta_2: Decay of the second-moment estimate.
        epsilon: Added to the denominator (Keras' default 1e-7).
        **options: Keras' ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency`` (module docstring).

    Returns:
        An ``optax.GradientTransformation`` with the learning rate in its state.

    Raises:
        TypeError: An unknown keyword argument.
        ValueError: Both ``clipnorm`` and ``global_clipnorm``, or a bad EMA setting.
    """
    return _build(optax.adamw, options,
                  learning_rate=learning_rate, b1=beta_1, b2=beta_2, eps=epsilon, weight_decay=weight_decay)


@recorded
def RMSprop(learning_rate=0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,  # noqa: N802
            centered: bool = False, **options):
    """Keras' ``RMSprop`` (Tieleman & Hinton, 2012), as ``optax.rmsprop``::

        v = rho * v + (1 - rho) * g**2                     (v starts at 0)
        step = lr * g / sqrt(v + epsilon)                  (centered: sqrt(v - mean_g**2 + epsilon),
                                                            mean_g = rho * mean_g + (1 - rho) * g)
        w -= step, or with momentum: m = momentum * m + step; w -= m

    Args:
        learning_rate: A float or an optax schedule ``step -> lr`` (Keras' default 0.001).
        rho: Decay of the squared-gradient average ``v``.
        momentum: Momentum ``>= 0`` (0: none).
        epsilon: Added under the square root (Keras' default 1e-7).
        centered: Divide by the estimated standard deviation of ``g`` instead of its RMS.
        **options: Keras' ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency`` (module docstring).

    Returns:
        An ``optax.GradientTransformation`` with the learning rate in its state.

    Raises:
        TypeError: An unknown keyword argument.
        ValueError: Both ``clipnorm`` and ``global_clipnorm``, or a bad EMA setting.
    """
    return _build(optax.rmsprop, options,
                  learning_rate=learning_rate, decay=rho, eps=epsilon, momentum=momentum or None, centered=centered)


@recorded
def Adagrad(learning_rate=0.001, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7,  # noqa: N802
            **options):
    """Keras' ``Adagrad`` (Duchi et al., 2011), as ``optax.adagrad``:
    ``a = a + g**2`` (``a`` starts at ``initial_accumulator_value``), ``w -= lr * g / sqrt(a + epsilon)``.

    Args:
        learning_rate: A float or an optax schedule ``step -> lr`` (Keras' default 0.001).
        initial_accumulator_value: The starting value of ``a``.
        epsilon: Added under the square root (Keras' default 1e-7).
        **options: Keras' ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency`` (module docstring).

    Returns:
        An ``optax.GradientTransformation`` with the learning rate in its state.

    Raises:
        TypeError: An unknown keyword argument.
        ValueError: Both ``clipnorm`` and ``global_clipnorm``, or a bad EMA setting.
    """
    return _build(optax.adagrad, options, learning_rate=learning_rate,
                  initial_accumulator_value=initial_accumulator_value, eps=epsilon)


@recorded
def Nadam(learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,  # noqa: N802
          **options):
    """Keras' ``Nadam``: Adam with Nesterov momentum (Dozat, 2016), as ``optax.nadam``.

    ``Adam``'s update with ``m_hat = beta_1 * m / (1 - beta_1**(t+1)) + (1 - beta_1) * g / (1 - beta_1**t)``.
    Keras' Nadam also decays ``beta_1`` by Dozat's schedule ``beta_1 * (1 - 0.5 * 0.96**t)``; this one
    keeps it constant.

    Args:
        learning_rate: A float or an optax schedule ``step -> lr`` (Keras' default 0.001).
        beta_1: Decay of the first-moment estimate.
        beta_2: Decay of the second-moment estimate.
        epsilon: Added to the denominator (Keras' default 1e-7).
        **options: Keras' ``clipnorm``, ``clipvalue``, ``global_clipnorm``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency`` (module docstring).

    Returns:
        An ``optax.GradientTransformation`` with the learning rate in its state.

    Raises:
        TypeError: An unknown keyword argument.
        ValueError: Both ``clipnorm`` and ``global_clipnorm``, or a bad EMA setting.
    """
    return _build(optax.nadam, options,
                  learning_rate=learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)


_OPTIMIZERS = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "nadam": Nadam,
}


def get(identifier):
    """Resolve an optimizer name (Keras defaults) or pass an optax transformation through.

    A dict ``{group: optimizer}`` gives each top-level parameter group (a GAN's
    ``'generator'`` and ``'discriminator'``) its own optimizer and state.

    Args:
        identifier: ``'sgd'``, ``'adam'``, ``'adamw'``, ``'rmsprop'``, ``'adagrad'``, ``'nadam'`` (any
            case), an ``optax.GradientTransformation``, or a dict of these.

    Returns:
        The transformation (a dict of them for a dict).

    Raises:
        ValueError: An unknown name.
        TypeError: Anything else.
    """
    if isinstance(identifier, dict):
        return {part: get(each) for part, each in identifier.items()}
    if isinstance(identifier, optax.GradientTransformation):
        return identifier
    if isinstance(identifier, str):
        return lookup("optimizer", identifier, _OPTIMIZERS)()
    raise TypeError(
        f"optimizer must be a name ({', '.join(sorted(_OPTIMIZERS))}) or an optax.GradientTransformation, "
        f"got {identifier!r}."
    )


def _with_hyperparams(opt_state, replace=None):
    """Find the first ``inject_hyperparams`` state inside chains, masks and multi-transforms;
    return it and ``opt_state`` with it replaced by ``replace(it)`` (if given)."""
    if hasattr(opt_state, "hyperparams"):
        return opt_state, (replace(opt_state) if replace else opt_state)
    if isinstance(opt_state, dict):
        parts = list(opt_state.items())
    elif isinstance(opt_state, tuple):
        parts = list(zip(getattr(opt_state, "_fields", range(len(opt_state))), opt_state))
    else:
        return None, opt_state
    for key, part in parts:
        found, new = _with_hyperparams(part, replace)
        if found is not None:
            if isinstance(opt_state, dict):
                return found, {**opt_state, key: new}
            if hasattr(opt_state, "_fields"):
                return found, opt_state._replace(**{key: new})
            return found, opt_state[:key] + (new,) + opt_state[key + 1:]
    return None, opt_state


def learning_rate_of(opt_state):
    """The current learning rate held in an ``inject_hyperparams`` state, or None.

    Args:
        opt_state: An optimizer state (chains, masks and multi-transforms are searched).

    Returns:
        The first ``learning_rate`` hyperparameter found (an array), or ``None``.
    """
    found, _ = _with_hyperparams(opt_state)
    return None if found is None else found.hyperparams.get("learning_rate")


def with_learning_rate(opt_state, value):
    """``opt_state`` with its learning rate set to ``value`` (same dtype and placement).

    Args:
        opt_state: An optimizer state holding an ``inject_hyperparams`` state.
        value: The new learning rate (a number).

    Returns:
        A new state; ``opt_state`` itself if it holds no learning rate.
    """
    def replace(state):
        hyperparams = dict(state.hyperparams)
        old = hyperparams["learning_rate"]
        hyperparams["learning_rate"] = jax.device_put(jnp.asarray(value, old.dtype), old.sharding)
        return state._replace(hyperparams=hyperparams)

    return _with_hyperparams(opt_state, replace)[1]


class TrainerOptimizer:
    """Keras' ``model.optimizer`` for a ``Trainer``: ``learning_rate`` is read from and written to the
    optimizer state in ``trainer.state``, so changing it recompiles nothing (callbacks use it).

    Args:
        trainer: the ``Trainer`` whose state holds the optimizer state.
    """

    def __init__(self, trainer):
        object.__setattr__(self, "_trainer", trainer)

    @property
    def learning_rate(self) -> float:
        """The learning rate the optimizer uses now.

        Raises:
            ValueError: the model is not built, or the optimizer keeps no learning rate in its state
                (an optax optimizer not wrapped in ``optax.inject_hyperparams``).
        """
        state = self._trainer.state
        if state is None:
            raise ValueError("learning_rate needs a built model: call fit/predict first, or give the model an "
                             "input shape.")
        value = learning_rate_of(state.opt_state)
        if value is None:
            raise ValueError("This optimizer keeps no learning rate in its state. Use a dlkit.optimizers "
                             "constructor (e.g. dlkit.optimizers.Adam(1e-3)) or wrap your optax optimizer "
                             "in optax.inject_hyperparams.")
        return float(value)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.learning_rate  # noqa: B018 - raises the explanatory error if there is none
        state = self._trainer.state
        self._trainer.state = state.replace(opt_state=with_learning_rate(state.opt_state, value))
