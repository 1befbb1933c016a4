"""The step contract and the helpers a step is written with.

A *train step* is a pure function ``(state, batch) -> (state, logs)``; a *test
step* (Keras' word) is ``(state, batch) -> logs``. ``state`` is a ``TrainState``;
``batch`` is a ``Batch(x, y, sample_weight, mask)``; ``logs`` is a dict whose
values are scalars, each the mean over the batch's real rows, or
``dlkit.metrics.MetricState``s (``metric.measure(y, y_pred, mask=batch.mask)``),
for metrics such as AUC that an epoch mean of batch values cannot give.

``Trainer`` runs any such step in its loop (devices, callbacks, checkpoints,
History): it increments ``state.step`` after each call, takes each scalar log as a
``Mean`` over the batch's real rows and merges every log's state over the epoch,
so an epoch's logs are exact. Pass one as ``Trainer(model, train_step=...,
test_step=...)``, or define ``train_step(self, state, batch)`` / ``test_step`` on
the model's class.

``mask`` is 1 for real rows and 0 for rows that pad a short last batch. A step that
uses it (weights every per-row term by it, as ``masked_mean`` does) may run padded
batches: the supervised step (``supervised.py``) does. Other steps get short
batches of their own size.

Helpers: ``step_rng`` (this step's random key), ``apply`` (the model with mutable
collections, the ``'dropout'`` stream and the added losses), ``masked_mean``, and
``TrainState.apply_gradients`` (the optimizer update, per parameter group when there
are several optimizers).
"""
from __future__ import annotations

import dataclasses
import warnings
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from dlkit import losses as losses_lib
from dlkit import mixed_precision
from dlkit.calling import accepts_training
from dlkit.layers.base import DIAGNOSTICS, LOSSES
from dlkit.metrics import MetricState, Sum, mean_of
from dlkit.training.freezing import inference_where_frozen
from dlkit.training.state import TrainState


class Batch(NamedTuple):
    """One batch as steps see it (a ``NamedTuple``, so a pytree).

    Args:
      x: the inputs (an array, or a tuple/dict of arrays), batch axis first.
      y: the targets, batch axis first.
      sample_weight: one weight per row (ones unless ``sample_weight``/``class_weight`` is given).
      mask: one 0/1 per row, 0 for rows that only pad a short last batch.
    """

    x: Any
    y: Any
    sample_weight: jax.Array
    mask: jax.Array


class Applied(NamedTuple):
    """What ``apply`` returns (a ``NamedTuple``).

    Args:
      outputs: the model's outputs.
      model_state: the updated non-parameter collections (``batch_stats``; empty in inference).
      added_loss: the sum of the ``add_loss`` terms (weight penalties and others).
      losses: the ``'losses'`` collection itself (each ``add_loss`` term by module path and name).
      problems: what layers reported in their inputs (``layers.base.report``): counts by
        ``"<layer path>: <problem>"``; return ``problem_logs(problems)`` among a step's logs and
        the loop raises on any at the epoch's end.
    """

    outputs: Any
    model_state: dict
    added_loss: jax.Array
    losses: dict
    problems: dict = {}


def step_rng(state: TrainState, name: Optional[str] = None) -> jax.Array:
    """This step's random key, ``fold_in(state.rng, state.step)``.

    Args:
      state: the training state.
      name: ``None``, or a name for a second independent stream (folded in as its CRC32).

    Returns:
      A key that is a function of the state alone, so a restored state draws the same numbers.
    """
    key = jax.random.fold_in(state.rng, state.step)
    if name is not None:
        key = jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)
    return key


def apply(state: TrainState, x, params=None, training: bool = True, rng: Optional[jax.Array] = None,
          method: Any = None, **kwargs) -> Applied:
    """Run the model, ``state.apply_fn``, on ``x``.

    In training every non-parameter collection is mutable and returned updated; the
    freezing rules hold (frozen batch normalization runs in inference mode).

    Args:
      state: the training state (its ``apply_fn``, ``model_state`` and freezing rules).
      x: the model's inputs.
      params: the parameters to run with (default ``state.params``; pass the traced ones
        inside a loss function).
      training: Keras' training flag, passed to a model (or ``method``) that accepts it.
      rng: the key of the ``'dropout'`` stream (default ``step_rng(state)``).
      method: ``None`` for ``__call__``, or another method of the model (Flax's ``method=``).
      **kwargs: further arguments of the model's call.

    Returns:
      ``Applied(outputs, model_state, added_loss, losses, problems)``.
    """
    params = state.params if params is None else params
    rng = step_rng(state) if rng is None else rng
    mutable = [LOSSES, DIAGNOSTICS, *(state.model_state.keys() if training else ())]
    if getattr(state.apply_fn, "__self__", None) is not None and accepts_training(state.apply_fn, method):
        kwargs["training"] = training
    with inference_where_frozen(state.frozen), mixed_precision.policy_scope(getattr(state, "dtype_policy", None)):
        outputs, updates = state.apply_fn({"params": params, **state.model_state}, x, rngs={"dropout": rng},
                                          mutable=mutable, method=method, **kwargs)
    updates = dict(updates)
    losses = updates.pop(LOSSES, {})
    total = sum((jnp.sum(v) for v in jax.tree.leaves(losses)), jnp.zeros((), jnp.float32))
    return Applied(outputs, updates, total, losses, reported(updates.pop(DIAGNOSTICS, {})))


def reported(collection: dict) -> dict:
    """The ``'diagnostics'`` collection as counts by ``"<layer path>: <problem>"`` (summed over calls).

    Args:
      collection: the collection as ``apply`` returns it (nested by module, a tuple per sow).

    Returns:
      ``{"<path>: <problem>": count}``.
    """
    counts: dict = {}
    for path, value in jax.tree_util.tree_flatten_with_path(collection, is_leaf=lambda v: isinstance(v, tuple))[0]:
        keys = [str(getattr(k, "key", k)) for k in path]
        name = f"{'/'.join(keys[:-1]) or 'model'}: {keys[-1]}"
        counts[name] = counts.get(name, 0.0) + sum(jnp.sum(v) for v in value)
    return counts


# Log names the loop never shows: it raises on a PROBLEM counted during the epoch, warns once about a
# WARNING counted, and about a WARNING_IF_ALL whose mean over the epoch's rows is 1.
PROBLEM, WARNING, WARNING_IF_ALL = "_problem: ", "_warning: ", "_warning_if_all: "


def problem_logs(problems: dict, prefix: str = PROBLEM) -> dict:
    """Problems as logs: a ``Sum`` state per problem, merged over the epoch like any metric.

    Args:
      problems: counts by description (``Applied.problems``).
      prefix: ``PROBLEM`` (the loop raises a ``ValueError``) or ``WARNING`` (it warns).

    Returns:
      ``{prefix + description: MetricState(Sum(), count)}``.
    """
    return {prefix + name: MetricState(Sum(), jnp.asarray(count, jnp.float32)) for name, count in problems.items()}


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """``sum_i m_i v_i / sum_i m_i``: the mean of per-row ``values`` over the real rows.

    Args:
      values: one value per row.
      mask: the batch's mask (1 for real rows).

    Returns:
      A scalar (0 for a batch without real rows).
    """
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def as_metric_states(logs: dict, mask) -> dict:
    """A step's logs with every scalar (a batch mean over real rows) as a ``Mean`` state
    weighted by the number of real rows, so merged over an epoch it is the mean over rows.

    Args:
      logs: the step's logs: scalars and ``MetricState``s.
      mask: the batch's mask (its sum is the number of real rows).

    Returns:
      The logs, every value a ``MetricState`` (those given are kept as they are).
    """
    count = jnp.sum(mask)
    return {k: v if isinstance(v, MetricState) else mean_of(v, count) for k, v in logs.items()}


def counted(step: Callable, train: bool) -> Callable:
    """The step as the loop runs it, train or test alike.

    Args:
      step: a train step ``(state, batch) -> (state, logs)`` or a test step ``(state, batch) -> logs``.
      train: whether ``step`` is a train step.

    Returns:
      ``(state, batch) -> (state, states)``: ``state.step`` incremented after a train step (a
      test step's state is returned unchanged), the logs as metric states (``as_metric_states``).
    """

    def run(state: TrainState, batch: Batch):
        if not train:
            return state, as_metric_states(step(state, batch), batch.mask)
        state, logs = step(state, batch)
        return state.replace(step=state.step + 1), as_metric_states(logs, batch.mask)

    return run


def log_specs(step: Callable, train: bool, state: TrainState, batch_spec: Batch) -> dict:
    """Trace ``step`` once, abstractly, on a batch of this shape and check it follows the contract.

    Args:
      step: the user's or the supervised train or test step.
      train: whether ``step`` is a train step.
      state: the training state (abstract shapes will do).
      batch_spec: a ``Batch`` of ``jax.ShapeDtypeStruct``s shaped like one batch.

    Returns:
      The abstract metric states of its logs (``jax.eval_shape`` of ``counted(step)``), in the
      order the step returns them.

    Raises:
      TypeError: if the step does not return ``(state, logs)`` (``logs`` for a test step) with
        ``logs`` a dict of scalars or metric states.
    """
    kind, returns = ("train_step", "(state, logs)") if train else ("test_step", "logs")
    order = []  # the step's own key order (jax.eval_shape returns dicts with sorted keys)

    def checked(state, batch):
        result = step(state, batch)
        pair = isinstance(result, tuple) and len(result) == 2
        logs = (result[1] if pair else None) if train else result
        if not isinstance(logs, dict) or not all(isinstance(v, MetricState) or jnp.shape(v) == ()
                                                 for v in logs.values()):
            raise TypeError(f"{kind} must return {returns} with logs a dict of scalars (batch means) or "
                            f"metric states, e.g. {{'loss': loss}}; got {jax.tree.map(jnp.shape, result)!r}.")
        order.extend(logs)
        return result

    _, specs = jax.eval_shape(counted(checked, train), state, batch_spec)
    return {k: specs[k] for k in order}


def empty_logs(specs: dict) -> dict:
    """Each log's metric state before any batch, at the full shape of a batch's state.

    Args:
      specs: a step's logs as metric states (abstract ones, from ``jax.eval_shape``, will do).

    Returns:
      ``metric.init()`` of each, broadcast to the shapes of ``specs`` (a per-class state's
      size is known only from the data), so the epoch's running totals keep one shape.
    """
    def empty(spec: MetricState) -> MetricState:
        state = jax.tree.map(lambda i, s: jnp.broadcast_to(jnp.asarray(i, s.dtype), s.shape),
                             spec.metric.init(), spec.state)
        return MetricState(spec.metric, state)

    return {k: empty(v) for k, v in specs.items()}


def merge_logs(totals: dict, logs: dict) -> dict:
    """Running totals with one more batch's metric states merged in, log by log.

    Args:
      totals: the epoch's metric states so far.
      logs: one batch's metric states, with the same keys.

    Returns:
      ``{k: totals[k].merge(logs[k])}``.
    """
    return {k: totals[k].merge(logs[k]) for k in totals}


def log_values(logs: dict, checks: bool = True) -> dict:
    """Logs as values: each metric state's result; scalars as they are.

    Args:
      logs: scalars and ``MetricState``s.
      checks: keep the loop's own checks (``PROBLEM``/``WARNING`` logs); the steps handed to
        users leave them out.

    Returns:
      The same keys, each ``MetricState`` replaced by its ``result()``.
    """
    return {k: v.result() if isinstance(v, MetricState) else v for k, v in logs.items()
            if checks or not k.startswith("_")}


def as_batch(batch) -> Batch:
    """A ``Batch`` from what a user may call a step with.

    Args:
      batch: a ``Batch``, or ``(x, y)`` / ``(x, y, sample_weight)``.

    Returns:
      The ``Batch`` itself, or one whose rows are all real (mask of ones; weights of ones
      when none are given).
    """
    if isinstance(batch, Batch):
        return batch
    x, y, *weight = tuple(batch)
    ones = jnp.ones(len(jax.tree.leaves(x)[0]), jnp.float32)
    return Batch(x, y, weight[0] if weight else ones, ones)


def batch_spec(x, y) -> Batch:
    """An abstract two-row ``Batch`` shaped like ``(x, y)`` (zeros for missing targets), to trace a
    step on.

    Args:
      x: inputs (arrays, batch axis first).
      y: targets, or ``None``.

    Returns:
      A ``Batch`` of ``jax.ShapeDtypeStruct``.
    """
    rows = jax.tree.leaves(x)[0].shape[0]
    y = jnp.zeros((rows,), jnp.float32) if y is None else y
    batch = Batch(x, y, jnp.ones((1,), jnp.float32), jnp.ones((1,), jnp.float32))
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct((2, *jnp.shape(a)[1:]), jnp.asarray(a).dtype), batch)


def raise_checks(values: dict, what: str) -> None:
    """Act on the loop's checks among an epoch's log values: raise on a ``PROBLEM`` counted, warn
    about a ``WARNING`` counted or a ``WARNING_IF_ALL`` true of every row.

    Args:
      values: log values by name (the other logs are ignored).
      what: ``"fit"``, ``"evaluate"`` or ``"predict"``, for the message.

    Raises:
      ValueError: a layer reported a problem (``layers.base.report``), named with its count.
    """
    for name, value in values.items():
        if name.startswith(PROBLEM) and value > 0:
            raise ValueError(f"{what}: layer {name[len(PROBLEM):]} ({int(value)} times).")
        if (name.startswith(WARNING) and value > 0) or (name.startswith(WARNING_IF_ALL) and value >= 1.0):
            warnings.warn(name.split(": ", 1)[1] + ".", stacklevel=4)


def with_compiled_loss(model, loss, metrics, loss_weights, weighted_metrics, step_name: str):
    """The model a Trainer with the model's own step runs: nothing given to ``Trainer`` is ignored.

    A model class with its own step and a ``loss`` field (``Autoencoder``'s reconstruction loss)
    takes the Trainer's ``loss`` there, as Keras' ``compile(loss=...)`` sets the loss its
    ``train_step`` computes. Other compile arguments the step cannot use are refused.

    Args:
      model: the Linen module.
      loss: the ``loss`` given to ``Trainer``/``compile`` (``None``: not given).
      metrics: the ``metrics`` given (``None``: not given).
      loss_weights: the ``loss_weights`` given.
      weighted_metrics: the ``weighted_metrics`` given.
      step_name: the step, for the message (``"Autoencoder.train_step"``).

    Returns:
      ``model`` itself, or a copy of it with ``loss`` in its ``loss`` field.

    Raises:
      ValueError: an argument the step would ignore, naming it and what to do instead.
    """
    takes_loss = any(f.name == "loss" for f in dataclasses.fields(model)) if dataclasses.is_dataclass(model) \
        else False
    given = {"loss": loss, "metrics": metrics, "loss_weights": loss_weights, "weighted_metrics": weighted_metrics}
    ignored = [name for name, value in given.items() if value is not None and value != [] and not
               (name == "loss" and takes_loss)]
    if ignored:
        fix = (f" {type(model).__name__} takes its loss through its `loss` field: Trainer(..., loss=...) "
               f"sets it." if takes_loss else "")
        raise ValueError(f"{step_name} computes its own loss and logs, so Trainer's {', '.join(ignored)} "
                         f"would be ignored. Remove {'them' if len(ignored) > 1 else 'it'}, log what you need "
                         f"from the step itself (its logs dict), or train with the supervised step "
                         f"(no train_step).{fix}")
    if loss is not None and takes_loss:
        losses_lib.get(loss)  # an unknown name fails here, listing the valid ones
        return model.clone(loss=loss)
    return model
