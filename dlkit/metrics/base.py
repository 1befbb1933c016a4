"""Streaming metrics: a metric is a pure value with a state that merges across batches and devices.

A ``Metric`` holds only its configuration (Keras' constructor arguments) and is
hashable, so it can sit in a jitted pytree as static data. Its state is a pytree
of arrays, and every dlkit metric's state is a set of sums (totals and counts,
confusion counts at thresholds), so states of two batches, or of two devices'
halves of one batch, merge by addition:

    state = metric.init()
    state = metric.update(state, y_true, y_pred, sample_weight, mask)
    state = metric.merge(state_a, state_b)
    value = metric.result(state)

An epoch's value is computed from the merged state of all its batches, never as
a mean of per-batch values, which is what makes precision, recall and AUC exact.
The counts of unweighted metrics are integers held exactly in float32 (up to
2**24 samples per count), so they do not depend on how the data was batched.

``metric.measure(y_true, y_pred, ...)`` is one batch's ``MetricState`` (the
metric and its state together): a custom train step returns it among its logs
and the loop merges it over the epoch. Keras' stateful surface is there for
eager use: ``update_state``, ``result()``, ``reset_state``.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp

from dlkit import mixed_precision
from dlkit.metrics.weighting import add_to_mean, broadcast_rows, row_weights, weighted  # noqa: F401 (re-exported)


def snake_case(name: str) -> str:
    """Keras' ``to_snake_case``: ``'AUC'`` -> ``'auc'``, ``'MeanIoU'`` -> ``'mean_io_u'`` (a metric's
    default name when its constructor's ``name`` is ``None``).

    Args:
      name: a class name.

    Returns:
      The snake_case name.
    """
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


@functools.partial(jax.jit, static_argnums=(0, 1))
def _eager(metric, method: str, *args):
    # Keras' eager update_state / result(), compiled once per metric (metrics are hashable) and shape
    return getattr(metric, method)(*args)


class Metric:
    """Base class of dlkit metrics (Keras' ``keras.metrics.Metric``), as pure functions of a state.

    Subclasses are frozen dataclasses whose fields are Keras' constructor arguments,
    ``name`` among them, and implement ``init``, ``update`` and ``compute``; ``merge``
    adds states, which is right for every state made of sums.

    Args:
      name: (subclass fields) the log name; ``None`` is Keras' default, the class name in
        snake_case. Every subclass takes ``name=``.

    Returns (``result``):
      The metric's value for a state.
    """

    name: str = "metric"

    def __post_init__(self):
        # Keras' default name for ``name=None``: the class name in snake_case.
        if getattr(self, "name", None) is None:
            object.__setattr__(self, "name", snake_case(type(self).__name__))

    def init(self) -> Any:
        """The state before any sample: a pytree of arrays (zeros for sums).

        Returns:
          The initial state.
        """
        raise NotImplementedError

    def init_for(self, y_true, y_pred) -> Any:
        """``init()`` at the state's full shape for batches like ``(y_true, y_pred)``.

        Metrics whose state size depends on the data (per-class ``F1Score``, multi-label ``AUC``
        without ``num_labels``, ``R2Score``) start from size-1 axes that broadcast on the first
        ``update``/``merge``; a fixed carry (``lax.scan``) needs the full shape.

        Args:
          y_true: targets like a batch's (an array or a ``jax.ShapeDtypeStruct``).
          y_pred: outputs like a batch's.

        Returns:
          Zeros with the shapes of ``update(init(), y_true, y_pred)``.
        """
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                            jax.eval_shape(lambda t, p: self.update(self.init(), t, p), y_true, y_pred))

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None) -> Any:
        """Add one batch to ``state``.

        Args:
          state: a state from ``init``, ``update`` or ``merge``.
          y_true: the targets, batch axis first.
          y_pred: the model's outputs, batch axis first.
          sample_weight: ``None`` or one weight per row.
          mask: ``None`` or per-row 1 (real row) / 0 (padding of a short last batch).

        Returns:
          The new state.
        """
        raise NotImplementedError

    def merge(self, a, b) -> Any:
        """Combine the states of two disjoint sets of samples (batches, devices).

        Args:
          a: a state.
          b: another state of the same metric.

        Returns:
          The state of both sets together; for sums, ``a + b``.
        """
        return jax.tree.map(jnp.add, a, b)

    def compute(self, state) -> jax.Array:
        """The metric's value for ``state`` (what ``result`` returns); subclasses implement it.

        Args:
          state: a state from ``init``, ``update`` or ``merge``.

        Returns:
          The value, as the class docstring's ``Returns (result)`` says.
        """
        raise NotImplementedError

    def result(self, state=None) -> jax.Array:
        """The metric's value.

        Args:
          state: a state; ``None`` reads the state that ``update_state`` accumulated
            (Keras' stateful ``result()``).

        Returns:
          A scalar (or, for per-class metrics such as ``F1Score(average=None)``, a vector).
        """
        if state is None:
            state = self.__dict__.get("_eager_state")
            return _eager(self, "compute", self.init() if state is None else state)
        return self.compute(state)

    def measure(self, y_true, y_pred, sample_weight=None, mask=None) -> MetricState:
        """One batch's ``MetricState``; return it from a custom step among the logs.

        Args:
          y_true: the targets.
          y_pred: the model's outputs.
          sample_weight: ``None`` or one weight per row.
          mask: ``None`` or the batch's mask (``batch.mask`` in a step).

        Returns:
          ``MetricState(self, update(init(), ...))``.
        """
        return MetricState(self, self.update(self.init(), y_true, mixed_precision.float32(y_pred), sample_weight, mask))

    # Keras' stateful, eager surface: the state is kept on the object, outside its fields.
    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Keras' ``update_state``: accumulate a batch into the object's own state (eager use).

        Args:
          y_true: the targets.
          y_pred: the model's outputs.
          sample_weight: ``None`` or one weight per row.
        """
        state = self.__dict__.get("_eager_state")
        state = self.init() if state is None else state
        object.__setattr__(self, "_eager_state", _eager(self, "update", state, jnp.asarray(y_true),
                                                        mixed_precision.float32(jnp.asarray(y_pred)), sample_weight))

    def reset_state(self) -> None:
        """Keras' ``reset_state``: forget what ``update_state`` accumulated."""
        object.__setattr__(self, "_eager_state", None)

    def __call__(self, y_true, y_pred, sample_weight=None) -> jax.Array:
        """Keras' ``metric(y_true, y_pred)``: ``update_state`` then ``result()``.

        Args:
          y_true: the targets.
          y_pred: the model's outputs.
          sample_weight: ``None`` or one weight per row.

        Returns:
          The value over every batch accumulated since the last ``reset_state``.
        """
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()


@flax.struct.dataclass
class MetricState:
    """A metric together with a state of it: a pytree whose leaves are the state's arrays (what
    a Keras metric object holds in its variables, as a value).

    The loop merges the ``MetricState`` logs of every batch of an epoch and reads
    ``result()`` once at its end. ``replace(**fields)`` (from ``flax.struct``) returns a copy.

    Args:
      metric: the metric (static: hashable, not a leaf).
      state: its state.

    Returns (``result``):
      ``metric.compute(state)``.
    """

    metric: Metric = flax.struct.field(pytree_node=False)
    state: Any

    def merge(self, other: MetricState) -> MetricState:
        """Both batches' states merged.

        Args:
          other: a state of the same metric.

        Returns:
          ``MetricState(metric, metric.merge(self.state, other.state))``.
        """
        return MetricState(self.metric, self.metric.merge(self.state, other.state))

    def result(self) -> jax.Array:
        """The metric's value for this state.

        Returns:
          ``metric.compute(state)``.
        """
        return self.metric.compute(self.state)

    def empty(self) -> MetricState:
        """The same metric with its initial state.

        Returns:
          ``MetricState(metric, metric.init())``.
        """
        return MetricState(self.metric, self.metric.init())


def _zeros(dtype) -> jax.Array:
    return jnp.zeros((), dtype or jnp.float32)


@dataclasses.dataclass(frozen=True)
class Mean(Metric):
    """Keras' ``Mean``: the weighted mean of the values seen, ``sum(w * v) / sum(w)``.

    ``update(state, values, sample_weight=None, mask=None)`` takes values in place of
    ``(y_true, y_pred)``: one per row, or any shape whose leading axis is the batch.

    Args:
      name: the log name.
      dtype: the dtype of the totals (float32 by default).

    Returns (``result``):
      ``sum(w v) / sum(w)`` (0 before any sample), a scalar.
    """

    name: str = "mean"
    dtype: Any = None

    def init(self):
        return {"total": _zeros(self.dtype), "count": _zeros(self.dtype)}

    def update(self, state, values, sample_weight=None, mask=None, *unused):
        """Add one batch of values to ``state``.

        Args:
          state: a state from ``init``, ``update`` or ``merge``.
          values: one value per row (or per element, batch axis first); a scalar is one row.
          sample_weight: ``None`` or one weight per row.
          mask: ``None`` or per-row 1 (real row) / 0 (padding).
          *unused: further positional arguments, ignored.

        Returns:
          The new state.
        """
        values = jnp.asarray(values, jnp.float32)
        if values.ndim == 0:
            values = values[None]
        return add_to_mean(state, values, row_weights(values.shape[0], sample_weight, mask))

    def compute(self, state):
        return state["total"] / jnp.maximum(state["count"], jnp.finfo(jnp.float32).tiny)

    def update_state(self, values, sample_weight=None) -> None:
        """Keras' ``update_state(values)``: accumulate values into the object's own state (eager use).

        Args:
          values: one value per row, or a scalar.
          sample_weight: ``None`` or one weight per row.
        """
        state = self.__dict__.get("_eager_state")
        state = self.init() if state is None else state
        object.__setattr__(self, "_eager_state", _eager(self, "update", state, jnp.asarray(values), sample_weight))

    def __call__(self, values, sample_weight=None):
        """Keras' ``metric(values)``: ``update_state`` then ``result()``.

        Args:
          values: one value per row, or a scalar.
          sample_weight: ``None`` or one weight per row.

        Returns:
          The value over every batch accumulated since the last ``reset_state``.
        """
        self.update_state(values, sample_weight)
        return self.result()


@dataclasses.dataclass(frozen=True)
class Sum(Metric):
    """Keras' ``Sum``: the weighted sum of the values seen, ``sum(w * v)``.

    Args:
      name: the log name.
      dtype: the dtype of the total (float32 by default).

    Returns (``result``):
      ``sum(w v)``, a scalar.
    """

    name: str = "sum"
    dtype: Any = None

    def init(self):
        return _zeros(self.dtype)

    def update(self, state, values, sample_weight=None, mask=None, *unused):
        """Add one batch of values to ``state``: ``state + sum(w * v)``.

        Args:
          state: the total so far.
          values: one value per row (or per element, batch axis first); a scalar is one row.
          sample_weight: ``None`` or one weight per row.
          mask: ``None`` or per-row 1 (real row) / 0 (padding).
          *unused: further positional arguments, ignored.

        Returns:
          The new total.
        """
        values = jnp.asarray(values, jnp.float32)
        if values.ndim == 0:
            values = values[None]
        return state + jnp.sum(weighted(values, row_weights(values.shape[0], sample_weight, mask)))

    def compute(self, state):
        return state

    update_state = Mean.update_state
    __call__ = Mean.__call__


def mean_of(value, count) -> MetricState:
    """A batch mean ``value`` over ``count`` rows as a (Keras) ``Mean`` state (how the loop
    takes a step's scalar logs, so the epoch's value is the mean over rows).

    Args:
      value: the batch's mean.
      count: the number of (real) rows it is the mean of.

    Returns:
      ``MetricState(Mean(), {"total": value * count, "count": count})``.
    """
    value = jnp.asarray(value, jnp.float32)
    return MetricState(Mean(), {"total": value * count, "count": jnp.asarray(count, jnp.float32)})


def per_row(values: jax.Array) -> jax.Array:
    """Per-sample values averaged over every axis after the batch axis (time steps, pixels), as
    Keras' ``Mean`` reduces a sample's values before weighting it.

    Args:
      values: an array, batch axis first.

    Returns:
      One value per row, shape ``(batch,)`` (a 0-d or 1-d array unchanged).
    """
    return values.reshape(values.shape[0], -1).mean(axis=-1) if values.ndim > 1 else values


class PerSampleMean(Metric):
    """Base of the metrics that are a weighted mean over samples (Keras' ``MeanMetricWrapper``
    subclasses: accuracies, regression errors, cross-entropies, hinges).

    A subclass implements ``values(y_true, y_pred)``, one value per sample or per element
    (batch axis first; every value of a row has the row's weight, so further axes are
    averaged within the row). The state is ``{"total": sum(w * v), "count": sum(w)}`` and

        result = sum_i w_i v_i / sum_i w_i.

    Values that are 0 or 1 (matches) keep both sums integers, exact in float32, so an
    accuracy does not depend on how the epoch was batched.

    Args:
      dtype: (subclass field) the dtype of the totals.

    Returns (``result``):
      ``sum_i w_i v_i / sum_i w_i``, a scalar.
    """

    dtype: Any = None

    def values(self, y_true, y_pred) -> jax.Array:
        """The per-sample (or per-element) values of one batch; subclasses implement it.

        Args:
          y_true: the targets, batch axis first.
          y_pred: the model's outputs, batch axis first.

        Returns:
          The values, batch axis first (the functions in the class's module give them).
        """
        raise NotImplementedError

    def init(self):
        return Mean(dtype=self.dtype).init()

    def update(self, state, y_true, y_pred, sample_weight=None, mask=None):
        values = self.values(jnp.asarray(y_true), jnp.asarray(y_pred))
        values = values[None] if jnp.ndim(values) == 0 else values
        return add_to_mean(state, values, row_weights(values.shape[0], sample_weight, mask))

    def compute(self, state):
        return Mean().compute(state)


@dataclasses.dataclass(frozen=True, init=False)
class MeanMetricWrapper(PerSampleMean):
    """Keras' ``MeanMetricWrapper``: the weighted mean over samples of ``fn(y_true, y_pred, **kwargs)``.

    ``fn`` returns one value per sample (further axes are averaged per sample); the
    epoch's value is ``sum_i w_i fn_i / sum_i w_i`` over every sample of the epoch. A
    ``fn`` that returns one scalar for the batch (a mean) is applied to each sample on
    its own (``jax.vmap``), so it still gives one value per sample.

    Args:
      fn: ``fn(y_true, y_pred, **kwargs)`` returning per-sample values.
      name: the log name (default: ``fn.__name__``).
      dtype: the dtype of the totals.
      kwargs: a tuple of ``(keyword, value)`` pairs passed to ``fn`` (hashable, so the
        metric can be static in a jitted pytree); keyword arguments given to the
        constructor are collected here.

    Returns (``result``):
      The weighted mean of ``fn``'s per-sample values, a scalar.
    """

    fn: Callable = None
    name: Optional[str] = None
    dtype: Any = None
    kwargs: tuple = ()

    def __init__(self, fn: Callable, name: Optional[str] = None, dtype: Any = None, **kwargs):
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "name", name or getattr(fn, "__name__", "metric"))
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "kwargs", tuple(sorted(kwargs.items())))

    def values(self, y_true, y_pred) -> jax.Array:
        """``fn``'s value for every row, shape ``(batch,)``.

        Args:
          y_true: the targets, batch axis first.
          y_pred: the outputs, batch axis first.

        Returns:
          One float32 value per row.
        """
        kwargs = dict(self.kwargs)
        if jax.eval_shape(lambda t, p: self.fn(t, p, **kwargs), y_true, y_pred).ndim == 0:
            return jax.vmap(lambda t, p: jnp.asarray(self.fn(t[None], p[None], **kwargs), jnp.float32))(
                y_true, y_pred)
        return per_row(jnp.asarray(self.fn(y_true, y_pred, **kwargs), jnp.float32))
