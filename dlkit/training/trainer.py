"""``Trainer``: Keras' ``compile``/``fit``/``evaluate``/``predict`` over pure jitted steps.

How an epoch runs: the training data is placed on the devices once; each
epoch's sample order is drawn from the state (its RNG and step count); one
compiled program runs ``steps_per_execution`` batches (gathered on the device
by index, split across devices along the batch axis) and adds their loss and
metric sums into on-device totals. The host syncs once per epoch, to read
those totals. A short last batch is never dropped: it runs masked in the
full-batch program when that is exact, else in its own program, compiled once.
An iterable of batches runs batch by batch through the same steps.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlkit import losses as losses_lib
from dlkit import optimizers
from dlkit.callbacks import CallbackList, History, ProgbarLogger
from dlkit.callbacks.base import LazyLogs
from dlkit.layers.base import LOSSES, accepts_training
from dlkit.training import data as data_lib
from dlkit.training import devices as devices_lib
from dlkit.training import weights_io
from dlkit.training.state import TrainState
from dlkit.training.weights import WeightsMixin
from dlkit.training.binding import StepsMixin
from dlkit.training.programs import Programs
from dlkit.training.step import Batch, means

# Steps per compiled program (Keras' ``steps_per_execution``). On the 2-core CPU,
# 4-8 unrolled steps ran no faster than one (the CNN epoch: 0.86-0.89 s either
# way) but compiled 1.5-2x longer, so the CPU runs one step per dispatch.
# Accelerators, where each dispatch costs more, default to 8 (not measured here).
_STEPS_PER_EXECUTION = {"cpu": 1}
_DEFAULT_STEPS_PER_EXECUTION = 8


class Trainer(StepsMixin, WeightsMixin):
    """Train, evaluate and run a Flax Linen module with Keras' words.

    ``Trainer(model, optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])``
    takes the arguments of Keras' ``compile``. ``trainer.state`` is the explicit
    ``TrainState``; ``trainer.train_step(state, batch)`` the pure step.

    A model family with its own training recipe (a VAE, a GAN) brings its own pure
    steps: ``Trainer(model, train_step=fn, test_step=fn)``, or ``train_step(self, state,
    batch)`` / ``test_step`` defined on the model's class, as Keras users override
    ``train_step`` (the contract is in ``dlkit.training.step``). ``optimizer`` may then
    be a dict giving each top-level parameter group its own optimizer.
    """

    def __init__(self, model, optimizer: Any = "rmsprop", loss: Any = None, metrics: Optional[Sequence] = None,
                 loss_weights: Any = None, seed: int = 0, input_shape: Optional[Sequence[int]] = None,
                 steps_per_execution: Any = "auto", compiler_options: Optional[dict] = None,
                 devices: Optional[list] = None, pad_last_batch: Optional[bool] = None,
                 train_step: Optional[Callable] = None, test_step: Optional[Callable] = None):
        self.model = model
        self._custom_train = train_step or getattr(model, "train_step", None)
        self._custom_test = test_step or getattr(model, "test_step", None)
        if self._custom_test is not None and self._custom_train is None:
            raise ValueError("A test_step needs its train_step: pass train_step= as well (or define both on the "
                             "model's class).")
        self.tx = optimizers.get(optimizer)
        for each in (loss.values() if isinstance(loss, dict) else [loss]):
            if each is not None or self._custom_train is None:
                losses_lib.get(each)  # unknown names fail here, listing the valid ones
        self.loss, self.loss_weights = loss, loss_weights
        self.metric_ids = metrics if isinstance(metrics, dict) else list(metrics or [])
        self.seed = seed
        self.mesh = devices_lib.make_mesh(devices)
        backend = self.mesh.devices.flat[0].platform
        self.steps_per_execution = (_STEPS_PER_EXECUTION.get(backend, _DEFAULT_STEPS_PER_EXECUTION)
                                    if steps_per_execution == "auto" else int(steps_per_execution))
        self.compiler_options = devices_lib.default_compiler_options(backend) if compiler_options is None \
            else dict(compiler_options)
        self.pad_last_batch = pad_last_batch
        self.stop_training = False
        self.epoch = 0  # epochs completed, saved with checkpoints
        self._restored_epoch: Optional[int] = None
        self.state: Optional[TrainState] = None
        self._pass_training = accepts_training(model)
        self._objective = None
        self.programs = Programs(lambda v, x, method: self._apply(v, x, False, method), self.mesh,
                                 self.compiler_options)
        self._sample_shape = None
        self._checked: dict = {}
        shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
        if shape is not None:  # one sample shape, or a tuple/list/dict of them (a multi-input model)
            self.build(jax.tree.map(lambda s: np.zeros((1, *s), np.float32), shape, is_leaf=lambda s: isinstance(
                s, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in s)))

    # ------------------------------------------------------------------ building
    def build(self, sample_x) -> None:
        """Initialise the variables from one sample batch (done by fit/evaluate/predict if needed)."""
        if self.state is not None:
            return
        sample = jax.tree.map(lambda a: np.asarray(a[:1]), sample_x)
        self._sample_shape = jax.tree.map(lambda a: a.shape[1:], sample)
        kwargs = {"training": False} if self._pass_training else {}
        order = []

        def initial_state(seed, sample):
            params_rng, dropout_rng, state_rng = jax.random.split(jax.random.key(seed), 3)
            variables = dict(self.model.init({"params": params_rng, "dropout": dropout_rng}, sample, **kwargs))
            variables.pop(LOSSES, None)
            variables.pop("intermediates", None)
            order.append(weights_io.keras_order(variables))  # creation order, before jit sorts the keys
            return TrainState.create(variables, self.tx, state_rng, apply_fn=self.model.apply)

        # One compiled program: cheaper than running each initializer eagerly.
        init = jax.jit(initial_state, out_shardings=devices_lib.replicated(self.mesh))
        self.state = init(np.uint32(self.seed), sample)
        self._weight_order = order[0]

    def _apply(self, variables, x, training: bool, method=None):
        kwargs = {"training": training} if self._pass_training and method is None else {}
        out, _ = self.model.apply(variables, x, rngs={"dropout": jax.random.key(0)}, mutable=[LOSSES],
                                  method=method, **kwargs)
        return out

    def _on_device(self, x, y, weight):
        n = data_lib.num_samples(x, y)
        weight = np.ones(n, np.float32) if weight is None else np.asarray(weight, np.float32)
        if y is None:
            y = np.zeros(n, np.float32)
        return jax.device_put((x, y, weight), devices_lib.replicated(self.mesh)), n

    # ------------------------------------------------------------------ epochs
    def _train_epoch(self, data, n: int, batch_size: int, shuffle: bool, on_chunk=None):
        perm = _permutation(self.state, n, shuffle, devices_lib.replicated(self.mesh))
        full, tail = divmod(n, batch_size)
        k = self.steps_per_execution
        chunks = [(steps, batch_size) for steps in [k] * (full // k) + ([full % k] if full % k else [])]
        if tail:
            chunks.append((1, batch_size if self._pad_last_batch() else tail))
        programs = {chunk: self.programs.chunk(True, *chunk) for chunk in set(chunks)}
        totals, start = self.programs.zeros_totals(True), 0
        for steps, size in chunks:
            program = programs[steps, size]
            if on_chunk:
                on_chunk("begin", start // batch_size, totals)
            self.state, totals = program(self.state, totals, data, perm, start, min(steps * size, n - start))
            start += steps * size
            if on_chunk:
                on_chunk("end", -(-min(start, n) // batch_size) - 1, totals)
        return totals

    def _pad_last_batch(self) -> bool:
        """Run a short last batch in the full-batch program, its missing rows masked out.

        Exact when no sample can see another: models without state collections
        (batch normalization keeps ``batch_stats``). Otherwise the short batch gets
        its own program, compiled once, so batch statistics see only real rows.
        """
        if self.pad_last_batch is not None:
            return self.pad_last_batch
        return self._custom_train is None and not jax.tree.leaves(self.state.model_state)

    def _evaluator(self, source, batch_size: int, what: str):
        """A function returning inference-mode logs on ``source``: ``(x, y[, w])`` arrays or a batch stream."""
        if data_lib.is_stream(source):
            return lambda: _to_floats(means(self._stream_totals(source, train=False)), self._names(False))
        x, y, weight = (*source, None, None)[:3]
        x, y = data_lib.to_arrays(x, f"{what} x"), data_lib.to_arrays(y, f"{what} y")
        self.build(x)
        self._resolve_steps(x, y)
        self._require_test_step(what)
        data, n = self._on_device(x, y, data_lib.to_arrays(weight, f"{what} sample_weight"))
        return lambda: self._evaluate_on_device(data, n, batch_size)

    def _stream_totals(self, batches, train: bool, on_chunk=None):
        """Run every batch an iterable yields; each new batch shape compiles once."""
        totals, count = None, 0
        for batch in batches:
            x, y, weight = data_lib.unpack_batch(batch)
            self.build(x)
            self._resolve_steps(x, y)
            if not train:
                self._require_test_step("evaluate")
            totals = self.programs.zeros_totals(train) if totals is None else totals
            rows = data_lib.num_samples(x, y)
            weight = np.ones(rows, np.float32) if weight is None else weight
            y = np.zeros(rows, np.float32) if y is None else y
            batch = Batch(x, y, weight, np.ones(rows, np.float32))
            sharding = devices_lib.batch_sharded(self.mesh) if rows % self.mesh.size == 0 \
                else devices_lib.replicated(self.mesh)
            if on_chunk:
                on_chunk("begin", count, totals)
            result = self.programs.batch(train)(self.state, totals, jax.device_put(batch, sharding))
            self.state, totals = result if train else (self.state, result)
            if on_chunk:
                on_chunk("end", count, totals)
            count += 1
        if not count:
            raise ValueError("The batch iterable yielded no batches. A generator is used up after one pass: for "
                             "several epochs pass an object whose __iter__ starts a new pass (e.g. a list of "
                             "batches or a data loader).")
        return totals

    def _evaluate_on_device(self, data, n: int, batch_size: int) -> dict:
        k = max(1, min(self.steps_per_execution, -(-n // batch_size)))
        program = self.programs.chunk(False, k, batch_size)
        totals = self.programs.zeros_totals(False)
        perm = _permutation(self.state, n, False, devices_lib.replicated(self.mesh))
        for start in range(0, n, k * batch_size):
            totals = program(self.state, totals, data, perm, start, n - start)
        return _to_floats(means(totals), self._names(False))

    # ------------------------------------------------------------------ Keras API
    def fit(self, x=None, y=None, batch_size: Optional[int] = None, epochs: int = 1, verbose: Any = "auto",
            callbacks: Optional[list] = None, validation_split: float = 0.0, validation_data=None,
            shuffle: bool = True, class_weight: Optional[dict] = None, sample_weight=None, initial_epoch: int = 0,
            validation_batch_size: Optional[int] = None) -> History:
        """Train for ``epochs`` epochs (Keras' ``fit``); returns the ``History``.

        ``x`` is arrays (with ``y``), or an iterable of ``(x, y)`` / ``(x, y, sample_weight)``
        batches that is iterated anew each epoch.
        """
        batch_size = data_lib.check_batch_size(batch_size)
        self._check_initial_epoch(initial_epoch)
        if data_lib.is_stream(x):
            if y is not None or sample_weight is not None or validation_split:
                raise ValueError("When x yields (x, y) batches, pass y and sample_weight inside the batches, and "
                                 "validation_data instead of validation_split.")
            run_epoch, steps = lambda hook: self._stream_totals(x, train=True, on_chunk=hook), None
        else:
            x, y = data_lib.to_arrays(x, "x"), data_lib.to_arrays(y, "y")
            weight = data_lib.to_arrays(sample_weight, "sample_weight")
            data_lib.num_samples(x, y)
            if class_weight is not None:
                weight = data_lib.class_weights(y, class_weight, weight)
            (x, y, weight), val = data_lib.split_validation(x, y, weight, validation_split)
            validation_data = validation_data if validation_data is not None else val
            self.build(x)
            self._resolve_steps(x, y)
            data, n = self._on_device(x, y, weight)
            run_epoch = lambda hook: self._train_epoch(data, n, batch_size, shuffle, hook)  # noqa: E731
            steps = -(-n // batch_size)
        validate = None
        if validation_data is not None:
            validate = self._evaluator(validation_data, validation_batch_size or batch_size, "validation_data")
        verbose = 1 if verbose == "auto" else int(verbose)

        history = History()
        progress = [ProgbarLogger()] if verbose else []  # after the user's callbacks, as in Keras
        cbs = CallbackList([*(callbacks or []), *progress, history], self, {"epochs": epochs, "verbose": verbose,
                                                                              "steps": steps})
        self.stop_training = False
        def batch_hook(when: str, index: int, totals) -> None:
            if when == "end":  # the next chunk donates ``totals``: keep a copy for a late reader
                totals = jax.tree.map(jnp.copy, totals)
            logs = None if when == "begin" else LazyLogs(lambda: _to_floats(means(totals), self._names(True)))
            getattr(cbs, f"on_train_batch_{when}")(index, logs)

        hook = batch_hook if cbs.wants_batches else None
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            totals = run_epoch(hook)
            logs = _to_floats(means(totals), self._names(True))
            if validate is not None:
                logs.update({f"val_{k}": v for k, v in validate().items()})
            self.epoch = epoch + 1
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        self.state = self.state.replace(params=optimizers.averaged_weights(self.tx, self.state.opt_state,
                                                                            self.state.params))
        cbs.on_train_end()
        return history

    def _check_initial_epoch(self, initial_epoch: int) -> None:
        restored, self._restored_epoch = self._restored_epoch, None
        if restored is not None and initial_epoch != restored:
            raise ValueError(f"The loaded checkpoint was saved after epoch {restored}, but fit() was given "
                             f"initial_epoch={initial_epoch}. Pass initial_epoch={restored} to continue it.")

    def evaluate(self, x=None, y=None, batch_size: Optional[int] = None, verbose: Any = "auto",
                 sample_weight=None, return_dict: bool = False):
        """Loss (and metrics) in inference mode: a float, ``[loss, *metrics]``, or a dict.

        ``x`` is arrays (with ``y``) or an iterable of ``(x, y[, sample_weight])`` batches.
        """
        batch_size = data_lib.check_batch_size(batch_size)
        source = x if data_lib.is_stream(x) else (x, y, sample_weight)
        logs = self._evaluator(source, batch_size, "x")()
        if verbose not in (0, "auto") or verbose is True:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: Optional[int] = None, verbose: Any = 0, method: Any = None):
        """Model outputs in inference mode, as numpy (Keras' ``predict``); ``x`` may be arrays or
        an iterable of batches (``x`` or ``(x, ...)`` each). ``method`` runs another method of the
        model instead of ``__call__`` (a VAE's ``'decode'``, say), as Flax's ``apply`` does."""
        if data_lib.is_stream(x):
            parts = [self.predict(b[0] if isinstance(b, (tuple, list)) else b, batch_size=batch_size, method=method)
                     for b in x]
            return jax.tree.map(lambda *p: np.concatenate(p), *parts)
        batch_size = data_lib.check_batch_size(batch_size)
        x = data_lib.to_arrays(x, "x")
        n = data_lib.num_samples(x)
        if method is None:
            self.build(x)
        else:
            self._require_built(f"predict(method={method!r})")
        program, data = self.programs.predict(batch_size, method), jax.device_put(x, devices_lib.replicated(self.mesh))
        chunks = [program(self.state.variables, data, start) for start in range(0, n, batch_size)]
        outputs = jax.tree.map(lambda *parts: np.concatenate([np.asarray(p)[:batch_size] for p in parts])[:n], *chunks)
        return dict(outputs) if isinstance(outputs, Mapping) else outputs  # Keras returns a plain dict

    @property
    def traces(self) -> int:
        """How many programs have been traced (each trace is one compilation)."""
        return self.programs.traces

def _permutation(state: TrainState, n: int, shuffle: bool, sharding) -> jax.Array:
    """This epoch's sample order, a function of the state alone (its RNG and step count),
    so a restored state shuffles as the original would. Drawn on the host: measured
    cheaper than compiling a device permutation (~0.2 s), and it is ``n`` integers."""
    order = np.arange(n, dtype=np.int32)
    if shuffle:
        seed = [*np.asarray(jax.random.key_data(state.rng)).ravel().tolist(), int(state.step)]
        order = np.random.default_rng(seed).permutation(order)
    return jax.device_put(order, sharding)


def _to_floats(logs: dict, names: list) -> dict:
    """Host floats in ``names`` order (jit returns dicts with sorted keys)."""
    logs = jax.device_get(logs)
    return {k: float(logs[k]) for k in names}
