"""Confusion counts at thresholds, as Keras' ``metrics_utils.update_confusion_matrix_variables``.

A prediction ``p`` is positive at threshold ``t`` when ``p > t``; for a batch,

    TP(t) = sum_i w_i [y_i != 0] [p_i > t]      FP(t) = sum_i w_i [y_i == 0] [p_i > t]
    FN(t) = sum_i w_i [y_i != 0] [p_i <= t]     TN(t) = sum_i w_i [y_i == 0] [p_i <= t]

Computed without comparing every prediction with every threshold (Keras' bucketing
trick): each prediction gets a *level* ``L``, the number of (ascending) thresholds
that it exceeds; a segment sum gives the weight at every level, and a reversed
cumulative sum gives ``TP(t_j) = sum_{L > j} weight(L)`` (a forward one
``FN(t_j) = sum_{L <= j} weight(L)``). The cost is
``O(predictions + thresholds)``, not ``O(predictions x thresholds)``.

For evenly spaced thresholds ``t_j = j / (T - 1)`` the level is Keras' bucket formula
``ceil(p (T - 1))`` on ``p`` clipped to ``[0, 1]`` (so unweighted counts equal Keras' to the bit),
and for any other thresholds it is ``searchsorted(sorted_thresholds, p)``, which makes
the same comparisons ``p > t`` as Keras' direct method.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from dlkit import losses
from dlkit.metrics.weighting import broadcast_rows

EPSILON = 1e-7  # Keras' backend.epsilon()
NEG_INF = -1e10  # Keras' metrics_utils.NEG_INF: the threshold of a top_k metric
COUNTS = ("tp", "fp", "tn", "fn")


def parse_thresholds(thresholds, default: float = 0.5) -> tuple:
    """Keras' ``parse_init_thresholds``: a float, a sequence or ``None`` (``default``) as a tuple.

    Args:
      thresholds: ``None``, one float, or a sequence of floats in ``[0, 1]``.
      default: the threshold when ``thresholds`` is ``None``.

    Returns:
      A tuple of floats.

    Raises:
      ValueError: if a given threshold is outside ``[0, 1]``.
    """
    if thresholds is None:
        return (float(default),)
    values = tuple(float(t) for t in np.atleast_1d(np.asarray(thresholds, np.float64)))
    invalid = [t for t in values if not 0.0 <= t <= 1.0]
    if invalid:
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {invalid}")
    return values


def as_tuple(value):
    """A list or array argument (Keras' ``thresholds``, ``label_weights``) as a hashable tuple.

    Args:
      value: ``None``, a scalar, or a sequence / array of numbers.

    Returns:
      ``value`` unchanged if ``None`` or a scalar, else a tuple of floats.
    """
    if value is None or np.ndim(value) == 0:
        return value
    return tuple(float(v) for v in np.asarray(value, np.float64).reshape(-1))


def evenly_spaced(thresholds: Sequence[float]) -> bool:
    """Keras' ``is_evenly_distributed_thresholds``: at least 3 thresholds, equal to
    ``arange(T) / (T - 1)`` within ``1e-7`` (then the fast bucket formula applies).

    Args:
      thresholds: the thresholds.

    Returns:
      Whether they are evenly spaced over ``[0, 1]``.
    """
    count = len(thresholds)
    if count < 3:
        return False
    even = np.arange(count, dtype=np.float32) / (count - 1)
    return bool(np.allclose(np.asarray(thresholds), even, atol=EPSILON))


def evenly_spaced_with_epsilon(num_thresholds: int) -> tuple:
    """Keras' ``AUC`` thresholds: ``-eps, 1/(T-1), ..., (T-2)/(T-1), 1 + eps`` (endpoints below 0
    and above 1, so that predictions of exactly 0 and 1 are counted).

    Args:
      num_thresholds: ``T``, at least 2.

    Returns:
      The ``T`` thresholds, a tuple.
    """
    inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    return tuple([0.0 - EPSILON] + inner + [1.0 + EPSILON])


def filter_top_k(y_pred: jax.Array, k: int) -> jax.Array:
    """Keras' ``_filter_top_k``: keep the ``k`` largest values of the last axis, set the rest to -1e10.

    Args:
      y_pred: scores, classes on the last axis.
      k: how many to keep per row (ties: the lower index first, as ``jax.lax.top_k``).

    Returns:
      ``y_pred`` with all but each row's ``k`` largest scores replaced by -1e10.
    """
    _, index = jax.lax.top_k(y_pred, k)
    keep = jnp.sum(jax.nn.one_hot(index, y_pred.shape[-1], dtype=y_pred.dtype), axis=-2)
    return y_pred * keep + NEG_INF * (1 - keep)


def _levels(y_pred: jax.Array, thresholds: tuple, evenly: bool) -> jax.Array:
    """For every prediction the number of thresholds (in ascending order) that it exceeds."""
    count = len(thresholds)
    if evenly:
        level = jnp.ceil(jnp.clip(y_pred, 0.0, 1.0) * (count - 1)).astype(jnp.int32)
        if thresholds[0] < 0.0 or thresholds[-1] > 1.0:  # Keras' "thresholds_with_epsilon"
            level = jnp.maximum(level, 1)
        return level
    ascending = jnp.asarray(np.sort(np.asarray(thresholds, np.float32)))
    return jnp.searchsorted(ascending, y_pred, side="left").astype(jnp.int32)


def _split(weight: jax.Array, level: jax.Array, count: int, groups: int):
    """``(above, below)`` with ``above[g, j]`` the sum of ``weight[level > j]`` and ``below[g, j]`` that of
    ``weight[level <= j]`` within each group (label) ``g``: a segment sum over the levels, then
    cumulative sums both ways (no difference of two large sums, so weighted counts stay accurate).
    ``weight`` and ``level``: ``(n, groups)``."""
    segment = level + (count + 1) * jnp.arange(groups, dtype=jnp.int32)
    per_level = jax.ops.segment_sum(weight.reshape(-1), segment.reshape(-1), num_segments=groups * (count + 1))
    per_level = per_level.reshape(groups, count + 1)
    above = jnp.cumsum(per_level[:, ::-1], axis=-1)[:, ::-1][:, 1:]
    below = jnp.cumsum(per_level, axis=-1)[:, :-1]
    return above.T, below.T  # (T, groups)


def confusion_at_thresholds(y_true, y_pred, weight, thresholds: tuple, evenly: Optional[bool] = None, *,
                            top_k: Optional[int] = None, class_id: Optional[int] = None,
                            multi_label: bool = False, label_weights: Optional[tuple] = None,
                            name: str = "metric") -> dict:
    """One batch's weighted TP, FP, TN and FN at each threshold.

    Args:
      y_true: the targets; nonzero is positive. Shape of ``y_pred`` (or one axis fewer,
        Keras' rank rule).
      y_pred: scores, batch axis first.
      weight: per-row weights, shape ``(batch,)`` (``sample_weight * mask``).
      thresholds: the thresholds, a tuple (any order; the counts follow it).
      evenly: whether they are evenly spaced (Keras' fast path); ``None`` checks.
      top_k: keep only each row's ``top_k`` scores as candidates (the others never positive).
      class_id: count only this column of the last axis.
      multi_label: count each column of a ``(batch, labels)`` output on its own.
      label_weights: per-column weights (not with ``multi_label``, which weights the per-label
        results instead).
      name: the metric's name, for error messages.

    Returns:
      ``{"tp", "fp", "tn", "fn"}``, each of shape ``(T,)``, or ``(T, labels)`` with ``multi_label``.
    """
    y_pred = jnp.asarray(y_pred, jnp.float32)
    y_true, y_pred = losses.match_ranks(jnp.asarray(y_true), y_pred, name)
    if top_k is not None:
        y_pred = filter_top_k(y_pred, top_k)
    if class_id is not None:
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    weight = broadcast_rows(weight, y_pred.shape)
    if label_weights is not None:
        weight = weight * jnp.asarray(label_weights, jnp.float32)
    if multi_label:
        if y_pred.ndim != 2:
            raise ValueError(f"`y_pred` must have rank 2 when `multi_label=True`; got shape {y_pred.shape}.")
        groups = y_pred.shape[1]
    else:
        y_true, y_pred, weight, groups = y_true.reshape(-1, 1), y_pred.reshape(-1, 1), weight.reshape(-1, 1), 1
    positive = y_true != 0
    weight_pos = jnp.where(positive & (weight != 0), weight, 0.0)
    weight_neg = jnp.where(~positive & (weight != 0), weight, 0.0)
    count = len(thresholds)
    evenly = evenly_spaced(thresholds) if evenly is None else evenly
    level = _levels(y_pred, thresholds, evenly)
    tp, fn = _split(weight_pos, level, count, groups)
    fp, tn = _split(weight_neg, level, count, groups)
    counts = {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    if not evenly:  # back from ascending order to the order given
        order = np.argsort(np.argsort(np.asarray(thresholds, np.float32), kind="stable"), kind="stable")
        counts = {k: v[order] for k, v in counts.items()}
    return counts if multi_label else {k: v[:, 0] for k, v in counts.items()}


def divide_no_nan(a, b):
    """Keras' ``ops.divide_no_nan``: ``a / b``, 0 where ``b`` is 0.

    Args:
      a: numerators.
      b: denominators.

    Returns:
      The quotients.
    """
    safe = jnp.where(b == 0, 1.0, b)
    return jnp.where(b == 0, 0.0, a / safe)
