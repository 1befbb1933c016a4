"""What a model is trained for: a loss (and metrics) per output, their weighted sum.

One output: ``loss = l(y, f(x))``, logged as ``loss`` and the metric names.
Several outputs (a dict or list from the model): each output ``k`` has its loss
``l_k`` and weight ``w_k`` (Keras' ``loss_weights``), and

    loss = sum_k w_k * l_k(y_k, f_k(x))

logged as ``loss``, ``<k>_loss`` and ``<k>_<metric>``, as Keras names them.
Every loss and metric is a per-sample mean over real rows (``mask``), weighted
by ``weight`` (``sample_weight`` / ``class_weight``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dlkit import losses as losses_lib
from dlkit import metrics as metrics_lib


@dataclasses.dataclass(frozen=True)
class Head:
    name: Optional[str]  # None for a single-output model
    key: Any  # how to pick this output from the model's outputs and the targets
    loss: losses_lib.Loss
    weight: float
    metrics: tuple

    def pick(self, tree):
        return tree if self.key is None else tree[self.key]

    def prefix(self) -> str:
        return "" if self.name is None else f"{self.name}_"


@dataclasses.dataclass(frozen=True)
class Objective:
    heads: tuple

    @property
    def names(self) -> list:
        names = ["loss"]
        for head in self.heads:
            if head.name is not None:
                names.append(f"{head.name}_loss")
            names += [head.prefix() + m.name for m in head.metrics]
        return names

    def __call__(self, y, outputs, weight, mask):
        """``(loss to differentiate, per-name sums over real samples)``; ``'loss'`` is left to the step."""
        count = jnp.sum(mask)
        total, sums = jnp.zeros((), jnp.float32), {}
        for head in self.heads:
            target, predicted = head.pick(y), head.pick(outputs)
            value = jnp.sum(head.loss.per_row(target, predicted) * weight * mask) / jnp.maximum(count, 1.0)
            total = total + head.weight * value
            if head.name is not None:
                sums[f"{head.name}_loss"] = value * count
            for metric in head.metrics:
                sums[head.prefix() + metric.name] = jnp.sum(metric(target, predicted) * mask)
        return total, sums


def _per_output(value, keys: list, names: list, what: str) -> list:
    """Keras accepts one value for every output, a dict by output name, or a list in output order."""
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{what} names unknown outputs {sorted(unknown)}; the outputs are {names}.")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)) and len(keys) > 1 and what != "metrics":
        if len(value) != len(keys):
            raise ValueError(f"{what} has {len(value)} entries for {len(keys)} outputs {names}.")
        return list(value)
    return [value] * len(keys)


def build(outputs, y_example, loss, loss_weights, metrics) -> Objective:
    """The objective for a model whose outputs have the structure of ``outputs`` (shapes)."""
    if isinstance(outputs, Mapping):
        keys = names = list(outputs)
    elif isinstance(outputs, (list, tuple)):
        keys, names = list(range(len(outputs))), [f"output_{i}" for i in range(len(outputs))]
    else:
        keys, names = [None], [None]
    multi = keys != [None]
    if multi and isinstance(metrics, (list, tuple)) and metrics and isinstance(metrics[0], (list, tuple)):
        metrics = dict(zip(names, metrics))
    losses = _per_output(loss, keys, names, "loss") if multi else [loss]
    weights = _per_output(loss_weights, keys, names, "loss_weights") if multi else [loss_weights]
    metric_lists = _per_output(metrics, keys, names, "metrics") if multi else [metrics]
    heads = []
    for key, name, loss_id, weight, metric_ids in zip(keys, names, losses, weights, metric_lists):
        if loss_id is None:
            raise ValueError(f"No loss for output {name!r}: pass loss={{{name!r}: ...}} for every output.")
        head_loss = losses_lib.get(loss_id)
        out = outputs if key is None else outputs[key]
        target = y_example if key is None else _target(y_example, key, name)
        if isinstance(metric_ids, (str,)) or callable(metric_ids):
            metric_ids = [metric_ids]
        found = tuple(metrics_lib.get(m, head_loss, np.shape(target), out.shape) for m in (metric_ids or []))
        heads.append(Head(name if multi else None, key, head_loss, 1.0 if weight is None else float(weight), found))
    return Objective(tuple(heads))


def _target(y, key, name):
    try:
        return y[key]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"The targets y have no entry for output {name!r}: pass y as a dict keyed by output "
                         f"name (or a list in output order).") from None


def check(objective: Objective, y, outputs) -> None:
    """Trace every loss on the shapes (clear shape errors) and check class labels fit the outputs."""
    for head in objective.heads:
        target, out = head.pick(y), head.pick(outputs)
        spec = jax.ShapeDtypeStruct((2, *np.shape(target)[1:]), np.asarray(target).dtype)
        jax.eval_shape(head.loss.per_sample, spec, out)
        if isinstance(head.loss, losses_lib.SparseCategoricalCrossentropy) and np.size(target):
            low, high, classes = int(np.min(target)), int(np.max(target)), out.shape[-1]
            if low < 0 or high >= classes:
                where = "" if head.name is None else f" of output {head.name!r}"
                raise ValueError(
                    f"Labels{where} range from {low} to {high}, but the model outputs {classes} class scores. "
                    f"Make the last layer output {high + 1} units (e.g. Dense({high + 1})), or fix the labels.")
