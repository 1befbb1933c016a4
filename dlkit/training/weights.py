"""The parts of ``Trainer`` that handle its weights rather than its loop: Keras' weight
accessors and ``summary()``, the learning rate, freezing (``trainable``) with re-``compile``,
and Orbax checkpoints."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import numpy as np

from dlkit import freezing, optimizers
from dlkit.models import summary as summary_lib
from dlkit.training import checkpoints, weights_io
from dlkit.training import devices as devices_lib
from dlkit.training import state as state_lib


class WeightsMixin:
    """Mixed into ``Trainer``; relies on its ``state``, ``model``, ``mesh``, ``tx`` and ``build``."""

    @property
    def learning_rate(self) -> float:
        """The learning rate the optimizer uses now (in its state: setting it recompiles nothing)."""
        self._require_built("learning_rate")
        value = optimizers.learning_rate_of(self.state.opt_state)
        if value is None:
            raise ValueError("This optimizer keeps no learning rate in its state. Use a dlkit.optimizers "
                             "constructor (e.g. dlkit.optimizers.Adam(1e-3)) or wrap your optax optimizer "
                             "in optax.inject_hyperparams.")
        return float(value)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.learning_rate  # noqa: B018 - raises the explanatory error if there is none
        self.state = self.state.replace(opt_state=optimizers.with_learning_rate(self.state.opt_state, value))

    @property
    def optimizer(self):
        """Keras' ``model.optimizer``: ``trainer.optimizer.learning_rate`` reads and sets the rate."""
        return _OptimizerView(self)

    # ------------------------------------------------------------------ weights & summary
    def summary(self, print_fn=print) -> None:
        """Print Keras' table: layer, output shape (batch as None), parameter counts."""
        self._require_built("summary")
        trainable = freezing.labels(self.state.params, self.state.frozen)
        print_fn(summary_lib.render(self.model, self.state.variables, self._sample_shape, trainable))

    def get_weights(self) -> list:
        """Every variable as numpy, in Keras' order (layer by layer; kernel, bias, ...)."""
        self._require_built("get_weights")
        return weights_io.flatten(self.state.variables, self._weight_order)

    def set_weights(self, weights: list) -> None:
        """Set every variable from a list ordered as ``get_weights()`` returns it."""
        self._require_built("set_weights")
        variables = weights_io.unflatten(self.state.variables, self._weight_order, weights)
        params = variables.pop("params")
        self.state = jax.device_put(self.state.replace(params=params, model_state=variables),
                                    devices_lib.replicated(self.mesh))

    def save_weights(self, path: str) -> None:
        """Write the model's variables to ``path`` (atomically)."""
        self._require_built("save_weights")
        weights_io.save(path, self.state.variables)

    def load_weights(self, path: str) -> None:
        """Read variables saved by ``save_weights`` into this (built) model."""
        self._require_built("load_weights")
        self.set_weights(weights_io.flatten(weights_io.load(path, self.state.variables), self._weight_order))

    # ------------------------------------------------------------------ transfer learning
    def freeze(self, *paths: str) -> None:
        """Keras' ``layer.trainable = False`` for the named sub-modules (``"base"``, ``"base/dense_1"``).

        Their parameters stop changing (bitwise) and batch normalization in them runs in
        inference mode. Like a Keras re-``compile``, this starts a fresh optimizer state.
        """
        self._set_rules(paths, False)

    def unfreeze(self, *paths: str) -> None:
        """Keras' ``layer.trainable = True``; a path inside a frozen part unfreezes just that part."""
        self._set_rules(paths, True)

    def compile(self, optimizer: Any = None, loss: Any = None, metrics: Optional[Sequence] = None,
                loss_weights: Any = None) -> None:
        """Keras' re-``compile``: a new optimizer (fresh state), loss, metrics or loss weights; the
        weights are kept."""
        if optimizer is not None:
            self.tx = optimizers.get(optimizer)
        if loss is not None or metrics is not None or loss_weights is not None:
            self.loss = self.loss if loss is None else loss
            self.loss_weights = self.loss_weights if loss_weights is None else loss_weights
            self.metric_ids = self.metric_ids if metrics is None else metrics
            self._objective = None
            self.programs.steps = None
        if self.state is not None:
            self._restart_optimizer(self.state.frozen)

    def _set_rules(self, paths, value: bool) -> None:
        self._require_built("freeze" if not value else "unfreeze")
        known = {"/".join(str(getattr(k, "key", k)) for k in path[:-1])
                 for path, _ in jax.tree_util.tree_flatten_with_path(self.state.params)[0]}
        for path in paths:
            if not any(k == path or k.startswith(path + "/") for k in known):
                raise ValueError(f"No sub-module {path!r} holds parameters. Known: {', '.join(sorted(known))}.")
        rules = tuple((p, v) for p, v in self.state.frozen if p not in paths) + tuple((p, value) for p in paths)
        self._restart_optimizer(rules)

    def _restart_optimizer(self, rules) -> None:
        tx = state_lib.hashable(freezing.masked(self.tx, self.state.params, rules))
        state = self.state.replace(tx=tx, frozen=rules, opt_state=state_lib.init_optimizer(tx, self.state.params))
        self.state = jax.device_put(state, devices_lib.replicated(self.mesh))

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, directory: str, epoch: Optional[int] = None, weights_only: bool = False) -> None:
        """Save the full training state (or the weights only) as an Orbax checkpoint in ``directory``,
        labelled with the number of epochs completed."""
        self._require_built("save_checkpoint")
        epoch = self.epoch if epoch is None else epoch
        meta = {"epoch": epoch, "weights_only": weights_only,
                "sample_shape": checkpoints.encode_shape(self._sample_shape)}
        checkpoints.save(directory, epoch, checkpoints.to_tree(self.state, weights_only), meta)

    def load_checkpoint(self, directory: str, epoch: Optional[int] = None) -> int:
        """Restore the latest (or the given) checkpoint in ``directory``; returns its epoch.

        Works on a fresh Trainer that has seen no data: the model is built from the
        sample shape saved with the checkpoint. Continue with ``fit(..., initial_epoch=epoch)``.
        """
        epoch, meta = checkpoints.read_meta(directory, epoch)
        if self.state is None:
            self.build(jax.tree.map(lambda s: np.zeros((1, *s), np.float32), checkpoints.decode_shape(
                meta["sample_shape"]), is_leaf=is_shape))
        target = checkpoints.to_tree(self.state, meta.get("weights_only", False))
        tree = checkpoints.restore(directory, epoch, target)
        self.state = jax.device_put(checkpoints.from_tree(self.state, tree), devices_lib.replicated(self.mesh))
        if not meta.get("weights_only", False):
            self.epoch = self._restored_epoch = int(meta["epoch"])
        return epoch

    def _require_built(self, what: str) -> None:
        if self.state is None:
            raise ValueError(
                f"{what}() needs a built model: give the first layer input_shape=..., start the Sequential "
                f"with dlkit.Input(shape), pass Trainer(..., input_shape=...), or call fit/predict first.")


def is_shape(s) -> bool:
    return isinstance(s, tuple) and all(isinstance(d, (int, np.integer)) for d in s)


class _OptimizerView:
    def __init__(self, trainer: "WeightsMixin"):
        object.__setattr__(self, "_trainer", trainer)

    @property
    def learning_rate(self) -> float:
        return self._trainer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._trainer.learning_rate = value
