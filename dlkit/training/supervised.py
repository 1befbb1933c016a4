"""The supervised step: losses and metrics per output (Keras' ``compile``), and the train and
test steps that fit ``f(x)`` to ``y`` with them.

One output: ``loss = mean_i(w_i * l(y_i, f(x_i))) + sum(added losses)``, logged as ``loss``
and the metric names. Several outputs (a dict or list from the model): each output
``k`` has its loss ``l_k`` and weight ``c_k`` (Keras' ``loss_weights``), and

    loss = sum_k c_k * mean_i(w_i * l_k(y_ik, f_k(x_i)))  +  sum(added losses)

logged as ``loss``, ``<k>_loss`` and ``<k>_<metric>``, as Keras names them. The mean
runs over the batch's real rows (``mask``); ``w`` is the sample weight
(``sample_weight`` / ``class_weight``). The added losses are the ``'losses'``
collection (weight penalties and other ``add_loss`` terms). Plain ``metrics`` ignore
the sample weight and ``weighted_metrics`` use it, as in Keras; both are streaming
``dlkit.metrics`` whose states the loop merges over the epoch.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dlkit import losses as losses_lib
from dlkit import metrics as metrics_lib
from dlkit import mixed_precision
from dlkit.training import validation
from dlkit.training.state import TrainState
from dlkit.training.step import WARNING, WARNING_IF_ALL, Batch, apply, as_metric_states, problem_logs


@dataclasses.dataclass(frozen=True)
class Head:
    """One output's loss, loss weight and metrics (what Keras' ``compile`` gives each output).

    Args:
      name: the output's name (``None`` for a single-output model), the prefix of its logs.
      key: how to pick this output from the model's outputs and the targets (``None``: whole).
      loss: the output's loss.
      weight: its factor in the total loss (Keras' ``loss_weights``).
      metrics: ``((log name, Metric, weighted), ...)``.
    """

    name: Optional[str]  # None for a single-output model
    key: Any  # how to pick this output from the model's outputs and the targets
    loss: losses_lib.Loss
    weight: float
    metrics: tuple  # ((log name, Metric, weighted), ...)

    def pick(self, tree):
        """This output's part of the outputs or of the targets.

        Args:
          tree: the model's outputs or the targets (a dict or a list for several outputs).

        Returns:
          ``tree[key]``, or ``tree`` itself for a single output.
        """
        return tree if self.key is None else tree[self.key]


@dataclasses.dataclass(frozen=True)
class Objective:
    """The supervised objective: every output's head; calling it gives the loss to differentiate and the logs.

    Args:
      heads: the ``Head`` of each output, in output order.
    """

    heads: tuple

    @property
    def names(self) -> list:
        """The log names, in order: ``loss``, then per output ``<k>_loss`` and its metrics."""
        names = ["loss"]
        for head in self.heads:
            if head.name is not None:
                names.append(f"{head.name}_loss")
            names += [name for name, _, _ in head.metrics]
        return names

    def log_specs(self, y, outputs, problems: Optional[dict] = None) -> dict:
        """The logs' abstract metric states, in log order (``names``, then the checks' logs).

        Args:
          y: targets (their shapes after the batch axis), or ``None``: guessed from the loss
            and the outputs.
          outputs: the model's outputs (abstract shapes will do).
          problems: the problems the model's layers may report (``Applied.problems``; names suffice).

        Returns:
          ``{log name: MetricState of jax.ShapeDtypeStruct}``, as one batch's logs would be.
        """
        def spec(a):
            return jax.ShapeDtypeStruct((2, *np.shape(a)[1:]), np.asarray(a).dtype)

        y_spec = jax.tree.map(spec, y) if y is not None else self._target_guess(outputs)
        o_spec = jax.tree.map(lambda o: jax.ShapeDtypeStruct((2, *o.shape[1:]), o.dtype), outputs)
        row = jax.ShapeDtypeStruct((2,), jnp.float32)
        logs = jax.eval_shape(lambda *args: as_metric_states(self(*args)[1], args[3]), y_spec, o_spec, row, row)
        logs.update(problem_logs(dict.fromkeys(problems or {}, 0.0)))
        order = self.names + sorted(set(logs) - set(self.names))
        return {name: logs[name] if name in logs else metrics_lib.mean_of(0.0, 0.0) for name in order}

    def _target_guess(self, outputs):
        guesses = {}
        for head in self.heads:
            out = head.pick(outputs)
            sparse = isinstance(head.loss, losses_lib.SparseCategoricalCrossentropy)
            guesses[head.key] = jax.ShapeDtypeStruct((2, *out.shape[1:-1]) if sparse else (2, *out.shape[1:]),
                                                     jnp.int32 if sparse else out.dtype)
        if list(guesses) == [None]:
            return guesses[None]
        return [guesses[k] for k in sorted(guesses)] if isinstance(outputs, (list, tuple)) else guesses

    def __call__(self, y, outputs, weight, mask):
        """The loss and logs of one batch (the added losses aside).

        ``loss = sum_k c_k * sum_i m_i w_i l_k(y_ik, f_k(x_i)) / sum_i m_i``.

        Args:
          y: the targets.
          outputs: the model's outputs.
          weight: one sample weight per row.
          mask: the batch's mask (1 for real rows).

        Returns:
          ``(data loss, logs)``: the logs hold each output's loss (several outputs) and each
          metric's batch state.
        """
        count = jnp.sum(mask)
        outputs = mixed_precision.float32(outputs)  # losses and metrics in float32, as Keras computes them
        total, logs = jnp.zeros((), jnp.float32), {}
        for head in self.heads:
            target, predicted = head.pick(y), head.pick(outputs)
            value = jnp.sum(head.loss.per_row(target, predicted) * weight * mask) / jnp.maximum(count, 1.0)
            total = total + head.weight * value
            if head.name is not None:
                logs[f"{head.name}_loss"] = value
            for name, metric, weighted in head.metrics:
                logs[name] = metric.measure(target, predicted, weight if weighted else None, mask)
            logs.update(_output_checks(head, predicted, mask))
        return total, logs


def _output_checks(head: Head, predicted, mask) -> dict:
    """Flags, read at the epoch's end, for outputs that do not fit a cross-entropy's ``from_logits``:
    values outside [0, 1] for a loss that expects probabilities, or every row a probability vector
    for a loss that expects logits (a softmax already applied). Free next to the step."""
    from_logits = getattr(head.loss, "from_logits", None)
    probability_loss = isinstance(head.loss, (losses_lib.BinaryCrossentropy, losses_lib.CategoricalCrossentropy,
                                              losses_lib.SparseCategoricalCrossentropy))
    if not probability_loss or not jnp.issubdtype(predicted.dtype, jnp.floating):
        return {}
    where = "" if head.name is None else f" {head.name!r}"
    rows = predicted.reshape(predicted.shape[0], -1)
    inside = jnp.all((rows >= -1e-6) & (rows <= 1 + 1e-6), axis=-1)
    if not from_logits:
        message = (f"{head.loss.name} expects probabilities (from_logits=False), but the model's outputs{where} "
                   f"went outside [0, 1]; end the model with a softmax or sigmoid, or pass from_logits=True")
        return problem_logs({message: jnp.sum((1.0 - inside) * mask)}, WARNING)
    if predicted.shape[-1] > 1:  # a softmax: every row sums to 1
        inside = inside & (jnp.abs(jnp.sum(predicted, axis=-1).reshape(predicted.shape[0], -1) - 1.0) < 1e-3).all(-1)
    message = (f"{head.loss.name} has from_logits=True, but every output row{where} was a probability vector "
               f"(a softmax or sigmoid already applied); drop that activation, or pass from_logits=False")
    return {WARNING_IF_ALL + message: metrics_lib.MetricState(metrics_lib.Mean(), {
        "total": jnp.sum(inside * mask), "count": jnp.sum(mask)})}


def make_train_step(objective: Objective) -> Callable:
    """The supervised train step: one gradient step on ``objective``'s loss plus the added losses.

    Args:
      objective: the losses and metrics (``build``).

    Returns:
      ``train_step(state, batch) -> (state, logs)``; the logs hold ``loss`` (the total, added
      losses included) and the objective's logs.
    """

    def train_step(state: TrainState, batch: Batch):
        def loss_fn(params):
            out = apply(state, batch.x, params, training=True)
            data_loss, logs = objective(batch.y, out.outputs, batch.sample_weight, batch.mask)
            return data_loss + out.added_loss, ({**logs, **problem_logs(out.problems)}, out.model_state)

        # Under "mixed_float16" the loss is scaled and a step with non-finite gradients skipped.
        (loss, (logs, updates)), grads, state, finite = mixed_precision.value_and_grad(loss_fn, state)
        state = mixed_precision.apply_gradients(state, grads, finite).replace(
            model_state={**state.model_state, **updates})
        return state, {"loss": loss, **logs}

    return train_step


def make_test_step(objective: Objective) -> Callable:
    """The supervised test step (Keras' word): the same loss and metrics in inference mode.

    Args:
      objective: the losses and metrics (``build``).

    Returns:
      ``test_step(state, batch) -> logs``.
    """

    def test_step(state: TrainState, batch: Batch):
        out = apply(state, batch.x, training=False, rng=state.rng)
        data_loss, logs = objective(batch.y, out.outputs, batch.sample_weight, batch.mask)
        return {"loss": data_loss + out.added_loss, **logs, **problem_logs(out.problems)}

    return test_step


def _per_output(value, keys: list, names: list, what: str) -> list:
    """Keras accepts one value for every output, a dict by output name, or a list in output order."""
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{what} names unknown outputs {sorted(unknown)}; the outputs are {names}.")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)) and len(keys) > 1 and what not in ("metrics", "weighted_metrics"):
        if len(value) != len(keys):
            raise ValueError(f"{what} has {len(value)} entries for {len(keys)} outputs {names}.")
        return list(value)
    return [value] * len(keys)


def _metric_lists(metrics, keys: list, names: list, what: str) -> list:
    multi = keys != [None]
    if multi and isinstance(metrics, (list, tuple)) and metrics and isinstance(metrics[0], (list, tuple)):
        metrics = dict(zip(names, metrics))  # Keras: one list of metrics per output, in output order
    lists = _per_output(metrics, keys, names, what) if multi else [metrics]
    return [[m] if isinstance(m, str) or callable(m) else list(m or []) for m in lists]


def build(outputs, y_example, loss, loss_weights, metrics, weighted_metrics=None, output_names=None) -> Objective:
    """The objective for a model whose outputs have the structure and shapes of ``outputs``.

    Args:
      outputs: the model's outputs (abstract shapes are enough).
      y_example: the targets (one batch, or all of them), to resolve ``'accuracy'``.
      loss: a loss identifier, or a list/dict of them per output.
      loss_weights: ``None``, a float, or a list/dict of floats per output.
      metrics: metric identifiers (a list, or a list/dict of lists per output); they
        ignore the sample weight.
      weighted_metrics: as ``metrics``, weighted by the sample weight.
      output_names: the names of a list/tuple of outputs (Keras': the output layers' names);
        ``None``: ``output_0``, ``output_1``…

    Returns:
      The ``Objective``; its log names are unique (Keras' ``_1`` suffixes, ``weighted_``
      for a weighted metric that repeats a plain one).
    """
    if isinstance(outputs, Mapping):
        keys = names = list(outputs)
    elif isinstance(outputs, (list, tuple)):
        keys = list(range(len(outputs)))
        names = list(output_names) if output_names is not None and len(output_names) == len(outputs) \
            else [f"output_{i}" for i in range(len(outputs))]
    else:
        keys, names = [None], [None]
    multi = keys != [None]
    losses = _per_output(loss, keys, names, "loss") if multi else [loss]
    weights = _per_output(loss_weights, keys, names, "loss_weights") if multi else [loss_weights]
    plain = _metric_lists(metrics, keys, names, "metrics")
    weighted = _metric_lists(weighted_metrics, keys, names, "weighted_metrics")
    taken: dict = {}
    heads = []
    for key, name, loss_id, weight, plain_ids, weighted_ids in zip(keys, names, losses, weights, plain, weighted):
        if loss_id is None and not multi:
            raise ValueError("Training and evaluating need a loss: pass Trainer(..., loss=...), e.g. "
                             "loss='sparse_categorical_crossentropy', or the model's own train_step.")
        if loss_id is None:
            raise ValueError(f"No loss for output {name!r}: pass loss={{{name!r}: ...}} for every output.")
        head_loss = losses_lib.get(loss_id)
        out = outputs if key is None else outputs[key]
        target = y_example if key is None or y_example is None else _target(y_example, key, name)
        target_shape = out.shape if target is None else np.shape(target)  # no targets yet: shaped like outputs
        prefix = f"{name}_" if multi else ""
        found = []
        for ids, is_weighted in ((plain_ids, False), (weighted_ids, True)):
            for identifier in ids:
                metric = metrics_lib.get(identifier, head_loss, target_shape, out.shape)
                found.append((_unique(prefix, metric.name, is_weighted, taken), metric, is_weighted))
        heads.append(Head(name if multi else None, key, head_loss, 1.0 if weight is None else float(weight),
                          tuple(found)))
    return Objective(tuple(heads))


def _unique(prefix: str, name: str, weighted: bool, taken: dict) -> str:
    """Keras' log name for a metric: ``prefix + name``, then ``weighted_<name>`` for a weighted
    metric whose name is taken, then a ``_1``, ``_2`` … suffix."""
    full = prefix + name
    if full in taken and weighted:
        full = f"{prefix}weighted_{name}"
    if full in taken:
        taken[full] += 1
        full = f"{full}_{taken[full] - 1}"
    taken.setdefault(full, 1)
    return full


def list_output_names(model) -> Optional[list]:
    """The names of a model's list/tuple of outputs (Keras': its output layers' names), if it has one.

    Args:
      model: the Linen module; a functional ``dlkit.Model`` has ``output_names``.

    Returns:
      The names, or ``None`` for a model with one output, a dict of outputs, or no names.
    """
    if isinstance(getattr(model, "outputs", None), (list, tuple)):
        return list(model.output_names)
    return None


def in_output_order(y, output_names: Optional[list]):
    """Targets keyed by output name, for a model with a list of outputs, as the list in output order
    (Keras takes ``y={"digit": ..., "attrs": ...}`` for ``outputs=[digit, attrs]``).

    Args:
      y: the targets.
      output_names: from ``list_output_names``.

    Returns:
      ``y`` as a tuple in output order if it is a dict keyed by exactly those names, else ``y``.
    """
    if isinstance(y, Mapping) and output_names and set(y) == set(output_names):
        return tuple(y[name] for name in output_names)
    return y


def _target(y, key, name):
    try:
        return y[key]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"The targets y have no entry for output {name!r}: pass y as a dict keyed by output "
                         f"name (or a list in output order).") from None


def check(objective: Objective, y, outputs) -> None:
    """Trace every loss and metric on the shapes (clear shape errors) and check that class
    labels fit the outputs.

    Args:
      objective: the losses and metrics.
      y: the targets (all of them: their labels are checked).
      outputs: the model's outputs (abstract shapes will do).

    Raises:
      ValueError: for sparse labels outside ``[0, classes)`` of the output (a loss or metric
        raises its own error for shapes it rejects).
    """
    for head in objective.heads:
        target, out = head.pick(y), head.pick(outputs)
        spec = jax.ShapeDtypeStruct((2, *np.shape(target)[1:]), np.asarray(target).dtype)
        jax.eval_shape(head.loss.per_sample, spec, out)
        for _, metric, _ in head.metrics:
            jax.eval_shape(lambda t, p, m=metric: m.update(m.init(), t, p), spec, out)
        where = "" if head.name is None else f" of output {head.name!r}"
        validation.labels(head.loss, target, out.shape[-1] if out.ndim else None, where)
