"""How a ``Trainer`` binds its pure steps: the supervised step built from the compiled
loss and metrics, or the model family's own ``train_step``/``test_step`` (the contract is
in ``step.py``), and the jitted pure steps it hands to researchers."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dlkit.training import data as data_lib
from dlkit.training import objective as objective_lib
from dlkit.training.programs import Steps
from dlkit.training.step import Batch, make_test_step, make_train_step
from dlkit.training.weights import is_shape


class StepsMixin:
    """Mixed into ``Trainer``; relies on its ``state``, ``programs``, ``_custom_train``/``_custom_test``,
    the compiled loss and metrics, and ``_apply``."""

    def _resolve_steps(self, x, y) -> None:
        """Bind the steps on first use: a custom step's log names, or the supervised objective."""
        if self._custom_train is not None:
            if self.programs.steps is None:
                self.programs.steps = self._custom_steps(x, y)
            return
        self._resolve_objective(x, y)

    def _custom_steps(self, x, y) -> Steps:
        """Trace the custom steps once on these shapes to learn their log names (in order)."""
        y = np.zeros(data_lib.num_samples(x), np.float32) if y is None else y
        spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct((2, *np.shape(a)[1:]), np.asarray(a).dtype),
                            Batch(x, y, np.ones(1, np.float32), np.ones(1, np.float32)))
        names = {}

        def trace(kind: str, step, returns: str):
            def run(state, batch):
                result = step(state, batch)
                pair = isinstance(result, tuple) and len(result) == 2
                logs = (result[1] if pair else None) if kind == "train_step" else result
                if not isinstance(logs, dict) or any(jnp.shape(v) != () for v in logs.values()):
                    raise TypeError(f"{kind} must return {returns} with logs a dict of scalars (batch means), "
                                    f"e.g. {{'loss': loss}}; got {jax.tree.map(jnp.shape, result)!r}.")
                names[kind] = tuple(logs)
                return result
            jax.eval_shape(run, self.state, spec)

        trace("train_step", self._custom_train, "(state, logs)")
        if self._custom_test is not None:
            trace("test_step", self._custom_test, "logs")
        return Steps(self._custom_train, self._custom_test, names["train_step"], names.get("test_step", ()))

    def _resolve_objective(self, x, y) -> None:
        """Bind losses and metrics ('accuracy' & co.) to the outputs on first use, trace them on these
        shapes (clear shape errors) and check class labels fit the outputs."""
        leaves, structure = jax.tree.flatten(x)
        signature = (structure, tuple((a.shape[1:], a.dtype) for a in leaves))
        if signature not in self._checked:  # trace the model once per input signature
            two = jax.tree.map(lambda a: jax.ShapeDtypeStruct((2, *a.shape[1:]), a.dtype), x)
            self._checked[signature] = jax.eval_shape(lambda v, s: self._apply(v, s, False), self.state.variables, two)
        outputs = self._checked[signature]
        if self._objective is None:
            self._objective = objective_lib.build(outputs, y, self.loss, self.loss_weights, self.metric_ids)
            names = tuple(self._objective.names)
            self.programs.steps = Steps(make_train_step(self._objective), make_test_step(self._objective),
                                        names, names)
        if y is not None:
            objective_lib.check(self._objective, y, outputs)

    def _names(self, train: bool) -> list:
        return self.programs.steps.names(train)

    def _require_test_step(self, what: str) -> None:
        if self.programs.steps.test is None:
            raise ValueError(f"{what}: this model's custom train_step has no test_step, so there is nothing to "
                             f"evaluate with. Pass Trainer(..., test_step=fn) (a pure (state, batch) -> logs), or "
                             f"leave out validation data / evaluate().")

    def _bound_steps(self, what: str) -> Steps:
        self._require_built(what)
        if self.programs.steps is None:
            zeros = jax.tree.map(lambda s: np.zeros((2, *s), np.float32), self._sample_shape, is_leaf=is_shape)
            self._resolve_steps(zeros, None)
        return self.programs.steps

    @property
    def train_step(self):
        """The jitted pure step this Trainer runs, ``(state, batch) -> (state, logs)``; ``batch`` is a
        ``Batch`` or ``(x, y[, sample_weight])``, ``logs`` are batch means."""
        step = self._bound_steps("train_step").train

        def run(state, batch):
            state, logs = step(state, _complete(batch))
            return state.replace(step=state.step + 1), logs

        return jax.jit(run, compiler_options=self.compiler_options or None)

    @property
    def test_step(self):
        """The jitted pure step ``(state, batch) -> logs`` in inference mode (Keras' ``test_step``)."""
        steps = self._bound_steps("test_step")
        self._require_test_step("test_step")
        return jax.jit(lambda state, batch: steps.test(state, _complete(batch)))

    eval_step = test_step


def _complete(batch) -> Batch:
    """``(x, y)`` or ``(x, y, sample_weight)`` -> ``Batch`` with every row real."""
    if isinstance(batch, Batch):
        return batch
    x, y, *weight = tuple(batch)
    ones = jnp.ones(len(jax.tree.leaves(x)[0]), jnp.float32)
    return Batch(x, y, weight[0] if weight else ones, ones)


