"""``Trainer``: Keras' ``compile``/``fit``/``evaluate``/``predict`` over pure jitted steps.

Follow one batch through ``fit``, top to bottom in this file:

1. ``fit`` turns ``x, y`` into checked numpy arrays (``data.py``), builds the
   ``TrainState`` from one sample (``build``), binds the pure steps (``_bind``: the
   supervised step of ``supervised.py``, or the model's own ``train_step``) and places
   the data on the devices once (``_on_device``).
2. Each epoch (``_run_arrays``) draws its sample order from the state (its RNG and
   step count, so a restored state shuffles as the original would) and runs compiled
   programs (``_chunk_program``) of ``steps_per_execution`` batches each. A program
   gathers every batch on the devices by index, splits it across them along the
   batch axis, calls the step ``(state, batch) -> (state, logs)`` and merges the
   logs, which are metric states (``dlkit.metrics``), into on-device running totals.
3. The host syncs once per epoch: ``_read`` computes every metric's result on the
   device and fetches them. Validation runs the test step the same way.

A short last batch is never dropped: it runs masked in the full-batch program when
that is exact, else in its own program, compiled once. An iterable of batches
(``_run_stream``) runs batch by batch through the same steps. Programs are cached
by kind and shape, so an epoch after the first compiles nothing.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np

from dlkit import checkpoints, layer_objects, mixed_precision, optimizers, summary
from dlkit import losses as losses_lib
from dlkit.callbacks import CallbackList, History, ProgbarLogger
from dlkit.callbacks.base import LazyLogs
from dlkit.calling import accepts_training
from dlkit.layers.base import DIAGNOSTICS, LOSSES
from dlkit.saving import model_file
from dlkit.training import data as data_lib
from dlkit.training import devices as devices_lib
from dlkit.training import feeding, freezing, interrupts, pipelines, supervised, validation, weights
from dlkit.training import step as step_lib
from dlkit.training.state import TrainState, hashable, init_optimizer

# Steps per compiled program for ``steps_per_execution="auto"`` (Keras' word). Each program
# call costs a fixed dispatch: Python, argument handling, launching the executable, and on
# an accelerator the host's round trip to the device. On a CPU the step runs on the same
# cores that dispatch it, and several unrolled steps per program run no faster than one but
# compile longer (docs/benchmarks.md), so one. On a GPU or TPU a small model's step lasts
# about as long as a dispatch, so the device idles between programs unless several steps
# share one: eight cut the dispatches per epoch eightfold while the compile (the steps are
# unrolled) and the batch hooks' granularity stay modest. Keras' TPU examples go to 32 and
# more for tiny models; pass a number to choose. Unmeasured on accelerators until
# ``scripts/gpu_check.py`` runs on one (it times 1 against 8).
_STEPS_PER_EXECUTION = {"cpu": 1}
_DEFAULT_STEPS_PER_EXECUTION = 8


@dataclasses.dataclass(frozen=True, eq=False)
class _Steps:
    """The pure steps a Trainer runs and the empty metric state of each log, in log order."""

    train: Callable
    test: Optional[Callable]
    train_logs: dict
    test_logs: dict


class Trainer:
    """Keras' ``compile`` + ``fit``/``evaluate``/``predict`` for a Flax Linen module.

    ``Trainer(model, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])``
    takes the arguments of Keras' ``compile``. ``trainer.state`` is the explicit
    ``TrainState`` (params, other collections, optimizer state, step, RNG);
    ``trainer.train_step(state, batch)`` is the jitted pure step the loop runs.

    A model family with its own training recipe (a VAE, a GAN) brings its own pure steps,
    ``train_step(self, state, batch)`` / ``test_step`` on the model's class as Keras users
    override them, or ``Trainer(model, train_step=fn, test_step=fn)``; the contract is in
    ``dlkit.training.step``.

    Args:
      model: any Flax Linen module (``dlkit.Sequential``, ``dlkit.Model``, your own).
      optimizer: a name (``"adam"``, ``"sgd"``, ``"rmsprop"`` …), a ``dlkit.optimizers``
        constructor's result or any optax ``GradientTransformation``; with a custom step,
        also a dict giving each top-level parameter group its own optimizer. Default
        ``"rmsprop"``, as Keras.
      loss: a loss name, ``dlkit.losses`` object or function ``(y_true, y_pred)``; for several
        outputs, a list or a dict keyed by output name. Not needed with a custom step.
      metrics: metric names, ``dlkit.metrics`` objects or functions; for several outputs, a
        list of lists or a dict keyed by output name. They ignore sample weights, as in Keras.
      loss_weights: for several outputs, a list or dict of the factors of each output's loss.
      weighted_metrics: as ``metrics``, weighted by ``sample_weight`` / ``class_weight``.
      seed: the seed of every random draw (initial weights, dropout, shuffling); by default 0,
        or the seed given to ``dlkit.utils.set_random_seed``; ``None`` draws one.
      input_shape: the shape of one sample (or a tuple/dict of them), to build the model
        before it sees data; taken from the model (``Input``, ``input_shape=``) by default.
      steps_per_execution: batches per compiled program (Keras' word); ``"auto"`` is 1 on
        CPU and 8 on accelerators.
      compiler_options: XLA options for the training programs; ``None`` takes dlkit's
        per-backend defaults (``dlkit.training.devices``), ``{}`` XLA's own.
      devices: the devices to split batches over (default: every local device).
      pad_last_batch: run a short last batch padded and masked in the full-batch program
        (``True``), or in its own program (``False``); ``None`` chooses: padded unless the
        model keeps batch statistics, which would see the padding rows.
      train_step: a pure ``(state, batch) -> (state, logs)`` replacing the supervised step.
      test_step: a pure ``(state, batch) -> logs`` for ``evaluate`` and validation.
      sharding: ``"replicated"`` (a full copy of the state on every device, data parallelism) or
        ``"fsdp"`` (params and optimizer state split over the devices, gathered where a step needs
        them: ``dlkit.training.devices.state_shardings``); batches are split over the devices either way.
      dtype_policy: a ``dlkit.mixed_precision`` policy (or its name, ``"mixed_bfloat16"``) for every
        layer of the model without a ``dtype=`` of its own (not a Keras argument); ``None``: the layers'.

    Raises:
      ValueError: for an unknown loss name or ``sharding``, or a ``test_step`` without a ``train_step``.
    """

    def __init__(self, model, optimizer: Any = "rmsprop", loss: Any = None, metrics: Optional[Sequence] = None,
                 loss_weights: Any = None, weighted_metrics: Optional[Sequence] = None,
                 seed: Any = validation.DEFAULT_SEED,
                 input_shape: Optional[Sequence[int]] = None, steps_per_execution: Any = "auto",
                 compiler_options: Optional[dict] = None, devices: Optional[list] = None,
                 pad_last_batch: Optional[bool] = None, train_step: Optional[Callable] = None,
                 test_step: Optional[Callable] = None, sharding: str = "replicated", dtype_policy: Any = None):
        self.model = model
        self.dtype_policy = None if dtype_policy is None else mixed_precision.get(dtype_policy)
        self._given = model  # the user's object: its layer objects carry weights and trainable flags
        self._step_args = (train_step, test_step)
        self._custom_train = train_step or getattr(model, "train_step", None)
        self._custom_test = test_step or getattr(model, "test_step", None)
        if self._custom_test is not None and self._custom_train is None:
            raise ValueError("A test_step needs its train_step: pass train_step= as well (or define both on the "
                             "model's class).")
        self.seed = validation.seed(seed)
        self.sharding = validation.choice(sharding, devices_lib.SHARDINGS, "sharding")
        self._shardings = None  # the state's shardings (``_place``)
        self.mesh = devices_lib.make_mesh(devices)
        backend = self.mesh.devices.flat[0].platform
        self.steps_per_execution = (_STEPS_PER_EXECUTION.get(backend, _DEFAULT_STEPS_PER_EXECUTION)
                                    if steps_per_execution == "auto"
                                    else validation.whole_number(steps_per_execution, "steps_per_execution", 1))
        self.compiler_options = devices_lib.default_compiler_options(backend) if compiler_options is None \
            else dict(compiler_options)
        self.pad_last_batch = pad_last_batch
        self.stop_training = False  # a callback sets it to end fit after this epoch
        self.epoch = 0  # epochs completed, saved with checkpoints
        self.state: Optional[TrainState] = None
        self.traces = 0  # programs traced so far; each trace is one compilation
        self.tx, self.loss, self.loss_weights, self.metric_ids, self.weighted_metric_ids = None, None, None, [], []
        self._steps: Optional[_Steps] = None  # bound on first use (``_bind``)
        self._objective: Optional[supervised.Objective] = None  # the supervised step's losses and metrics
        self._programs: dict = {}  # compiled programs by kind and shape
        self._public: dict = {}  # the jitted ``train_step`` / ``test_step`` handed to users
        self._outputs: dict = {}  # the model's abstract outputs per input signature
        self._sample_shape = None
        self._weight_order: list = []
        self._restored_epoch: Optional[int] = None
        self._interrupt = interrupts.NONE
        self._input: Optional[pipelines.GrainInput] = None  # the last fit's Grain input (its position is saved)
        self._saved_input = None  # a loaded checkpoint's input position, for the next fit's Grain input
        self.compile(optimizer, loss, metrics, loss_weights, weighted_metrics)
        shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
        if shape is not None:  # one sample shape, or a tuple/list/dict of them (a multi-input model)
            self.build(weights.zeros_batch(shape))

    # ------------------------------------------------------------------ compile, build, bind
    def compile(self, optimizer: Any = None, loss: Any = None, metrics: Optional[Sequence] = None,
                loss_weights: Any = None, weighted_metrics: Optional[Sequence] = None) -> None:
        """Keras' (re-)``compile``: a new optimizer (with a fresh state), loss or metrics; weights kept.

        Args:
          optimizer: as in ``Trainer``; ``None`` keeps the current one (its state restarts).
          loss: as in ``Trainer``; ``None`` keeps the current one.
          metrics: as in ``Trainer``; ``None`` keeps the current ones.
          loss_weights: as in ``Trainer``; ``None`` keeps the current ones.
          weighted_metrics: as in ``Trainer``; ``None`` keeps the current ones.
        """
        if optimizer is not None:
            self.tx = optimizers.get(optimizer)
        if self._custom_train is not None:  # the model's own step: a loss it cannot use is refused
            self._own_step(loss, metrics, loss_weights, weighted_metrics)
            loss = metrics = loss_weights = weighted_metrics = None
        for each in (loss.values() if isinstance(loss, dict) else [loss]):
            if each is not None:
                losses_lib.get(each)  # unknown names fail here, listing the valid ones
        if any(v is not None for v in (loss, metrics, loss_weights, weighted_metrics)) or self._steps is None:
            self.loss = self.loss if loss is None else loss
            self.loss_weights = self.loss_weights if loss_weights is None else loss_weights
            self.metric_ids = self.metric_ids if metrics is None else _as_list(metrics)
            self.weighted_metric_ids = self.weighted_metric_ids if weighted_metrics is None \
                else _as_list(weighted_metrics)
            self._steps, self._programs = None, {}
        self._public = {}
        if self.state is not None:  # Keras: trainable flags set since take effect at compile
            self._restart_optimizer(freezing.merged(self.state.frozen, layer_objects.trainable_rules(self._given)))

    def _own_step(self, loss, metrics, loss_weights, weighted_metrics) -> None:
        """Hand ``loss`` to a model whose own step takes one (``Autoencoder``), refuse what it cannot use."""
        train, test = self._step_args
        name = "The train_step given" if train else f"{type(self.model).__name__}.train_step"
        model = step_lib.with_compiled_loss(self.model, loss, metrics, loss_weights, weighted_metrics, name)
        if model is self.model:
            return
        self.model = model
        self._custom_train = train or self.model.train_step
        self._custom_test = test or getattr(self.model, "test_step", None)
        self._steps, self._programs = None, {}
        if self.state is not None:
            self.state = self.state.replace(apply_fn=self.model.apply)

    def build(self, sample_x) -> None:
        """Create the variables from one sample batch (``fit``/``evaluate``/``predict`` do it if needed).

        Args:
          sample_x: inputs with a batch axis (only the first row is used).
        """
        if self.state is not None:
            return
        sample = jax.tree.map(lambda a: np.asarray(a[:1]), sample_x)
        self._sample_shape = jax.tree.map(lambda a: a.shape[1:], sample)
        kwargs = {"training": False} if accepts_training(self.model) else {}
        order = []
        plan = layer_objects.carried(self, self._given)  # trained weights the layer objects bring

        def initial_state(seed, sample, carried):
            params_rng, dropout_rng, state_rng = jax.random.split(jax.random.key(seed), 3)
            with mixed_precision.policy_scope(self.dtype_policy):
                variables = dict(self.model.init({"params": params_rng, "dropout": dropout_rng}, sample, **kwargs))
            for collection in (LOSSES, DIAGNOSTICS, "intermediates"):
                variables.pop(collection, None)
            order.append(weights.keras_order(variables))  # creation order, before jit sorts the keys
            variables = layer_objects.place(variables, [(p, k, c) for (p, k, _), c in zip(plan, carried)])
            return TrainState.create(variables, self.tx, state_rng, apply_fn=self.model.apply,
                                     **mixed_precision.state_fields(self.model, self.dtype_policy))

        # One compiled program: cheaper than running each initializer eagerly. Each array is made
        # where it lives (split over the devices under "fsdp": never a whole copy on each).
        args = (np.uint32(self.seed), sample, [tree for _, _, tree in plan])
        self._shardings = devices_lib.state_shardings(jax.eval_shape(initial_state, *args), self.mesh, self.sharding)
        self.state = jax.jit(initial_state, out_shardings=self._shardings)(*args)
        self._weight_order = order[0]
        flags = layer_objects.trainable_rules(self._given)
        if flags:
            self._restart_optimizer(flags)
        self._claim()

    def _bind(self, x, y, what: str = "x") -> _Steps:
        """The steps this trainer runs, bound on first use: the model's own steps, or the supervised
        step for the compiled loss and metrics on the model's outputs. Checks ``y`` fits the outputs."""
        if self._steps is None:
            if self._custom_train is not None:
                spec = step_lib.batch_spec(x, y)
                train, test = self._custom_train, self._custom_test
                train_logs = step_lib.empty_logs(step_lib.log_specs(train, True, self.state, spec))
                test_logs = step_lib.empty_logs(step_lib.log_specs(test, False, self.state, spec)) if test else {}
            else:
                outputs, problems = self._model_outputs(x, what)
                objective = supervised.build(outputs, y, self.loss, self.loss_weights, self.metric_ids,
                                             self.weighted_metric_ids, supervised.list_output_names(self.model))
                train, test = supervised.make_train_step(objective), supervised.make_test_step(objective)
                train_logs = test_logs = step_lib.empty_logs(objective.log_specs(y, outputs, problems))
                self._objective = objective
            self._steps = _Steps(train, test, _on_host(train_logs), _on_host(test_logs))
        if self._custom_train is None and y is not None:
            supervised.check(self._objective, y, self._model_outputs(x, what)[0])
        return self._steps

    def _model_outputs(self, x, what: str = "x"):
        """The model's abstract outputs, and the problems its layers may report, for inputs shaped like
        ``x`` (traced once per signature). Inputs the model was not built for get a clear error."""
        leaves, structure = jax.tree.flatten(x)
        signature = (structure, tuple((a.shape[1:], a.dtype) for a in leaves))
        if signature not in self._outputs:
            validation.same_structure(x, self._sample_shape, what)
            two = jax.tree.map(lambda a: jax.ShapeDtypeStruct((2, *a.shape[1:]), a.dtype), x)
            try:
                self._outputs[signature] = jax.eval_shape(self._forward, self.state.variables, two)
            except flax.errors.ScopeParamShapeError as error:
                raise validation.shape_mismatch(x, self._sample_shape, what) from error
        return self._outputs[signature]

    def _forward(self, variables, x, method=None):
        """The model in inference mode (``predict``): its outputs and the problems its layers report."""
        kwargs = {"training": False} if method is None and accepts_training(self.model) else {}
        with mixed_precision.policy_scope(self.dtype_policy):
            out, updates = self.model.apply(variables, x, rngs={"dropout": jax.random.key(0)},
                                            mutable=[LOSSES, DIAGNOSTICS], method=method, **kwargs)
        return out, step_lib.reported(updates.get(DIAGNOSTICS, {}))

    # ------------------------------------------------------------------ fit
    def fit(self, x=None, y=None, batch_size: Optional[int] = None, epochs: int = 1, verbose: Any = "auto",
            callbacks: Optional[list] = None, validation_split: float = 0.0, validation_data=None,
            shuffle: bool = True, class_weight: Optional[dict] = None, sample_weight=None, initial_epoch: int = 0,
            validation_batch_size: Optional[int] = None, steps_per_epoch: Optional[int] = None,
            validation_steps: Optional[int] = None) -> History:
        """Train for ``epochs`` epochs (Keras' ``fit``).

        Args:
          x: the inputs: an array, a tuple/list/dict of arrays (several inputs), or an iterable
            of ``(x, y)`` / ``(x, y, sample_weight)`` batches, iterated anew each epoch; a Grain
            dataset or loader of such batches keeps one iterator across epochs, its position saved
            in checkpoints (``dlkit.training.pipelines``); a tfds data source is batched by
            ``batch_size`` and shuffled by ``shuffle``, as arrays are.
          y: the targets, arrays like ``x`` (not with an iterable ``x``).
          batch_size: rows per step (default 32).
          epochs: the epoch to stop after (counted from 0, as ``initial_epoch``).
          verbose: 0 silent, 1 a progress bar, 2 one line per epoch; ``"auto"`` is 1 (on the first
            process only, when several train together).
          callbacks: ``dlkit.callbacks`` objects (their hooks run in this order, then the
            progress bar, then the ``History``).
          validation_split: the fraction of the samples, taken from the end before shuffling,
            held out for validation.
          validation_data: ``(x, y)`` or ``(x, y, sample_weight)`` arrays, or an iterable of batches.
          shuffle: draw a new sample order each epoch (from the state's RNG).
          class_weight: ``{class: weight}``; each sample's weight is its class's (times
            ``sample_weight``).
          sample_weight: one weight per sample, for the loss and ``weighted_metrics``.
          initial_epoch: the epoch to start at (resuming; must match a loaded checkpoint).
          validation_batch_size: rows per validation step (default ``batch_size``).
          steps_per_epoch: with a stream of batches, the batches per epoch, taken from one iterator
            kept across epochs (Keras' word; a re-iterable source starts a new pass when it runs out).
          validation_steps: with a stream as ``validation_data``, the batches of each validation.

        Returns:
          A ``History``: ``history.history[name]`` lists each epoch's value of every log
          (``loss``, the metrics, ``val_``-prefixed ones when validating).
        """
        batch_size = data_lib.check_batch_size(batch_size)
        epochs = validation.whole_number(epochs, "epochs")
        self._check_initial_epoch(validation.whole_number(initial_epoch, "initial_epoch"))
        callbacks = validation.callbacks(callbacks)
        self._input, saved_input, self._saved_input = None, self._saved_input, None
        if pipelines.is_data_source(x):  # examples by index, batched and shuffled here as arrays are
            x = pipelines.from_data_source(x, batch_size, shuffle, self.seed)
        if data_lib.is_stream(x):
            if y is not None or sample_weight is not None or validation_split:
                raise ValueError("When x yields (x, y) batches, pass y and sample_weight inside the batches, and "
                                 "validation_data instead of validation_split.")
            steps = None if steps_per_epoch is None else validation.whole_number(steps_per_epoch,
                                                                                  "steps_per_epoch", 1)
            if pipelines.is_grain(x):  # one iterator for the run, its position saved in checkpoints
                x = self._input = pipelines.wrap(x, steps, saved_input)
                steps = steps or x.length
            elif steps is not None:
                x = data_lib.StepsPerEpoch(x, steps, "steps_per_epoch")
            run_epoch = lambda hook: self._run_stream(x, True, hook)  # noqa: E731
        else:
            validation.stream_only(steps_per_epoch, "steps_per_epoch")
            x, y, weight = self._arrays(x, y, sample_weight, class_weight)
            (x, y, weight), held_out = data_lib.split_validation(x, y, weight, validation_split)
            validation_data = validation_data if validation_data is not None else held_out
            placed = self._on_device(x, y, weight, "fit")
            run_epoch = lambda hook: self._run_arrays(placed, batch_size, shuffle, hook)  # noqa: E731
            steps = -(-placed.n // batch_size)
        validate = None
        if validation_data is not None:
            if validation_steps is not None:
                if not data_lib.is_stream(validation_data):
                    validation.stream_only(validation_steps, "validation_steps")
                validation_data = data_lib.StepsPerEpoch(validation_data, validation.whole_number(
                    validation_steps, "validation_steps", 1), "validation_steps", restart=True)
            validate = self._evaluator(validation_data, validation_batch_size or batch_size, "validation_data")
        verbose = int(jax.process_index() == 0) if verbose == "auto" else int(verbose)  # one progress bar per run

        history = History()
        progress = [ProgbarLogger()] if verbose else []  # after the user's callbacks, as in Keras
        cbs = CallbackList([*callbacks, *progress, history], self,
                           {"epochs": epochs, "verbose": verbose, "steps": steps})
        hook = self._batch_hook(cbs) if cbs.wants_batches else None
        self.stop_training, finished, logs = False, False, None
        self._start_epoch = None  # a callback's on_train_begin may set it (BackupAndRestore resuming a run)
        cbs.on_train_begin()
        initial_epoch = initial_epoch if self._start_epoch is None else self._start_epoch
        try:
            with interrupts.deferred() as self._interrupt:
                for epoch in range(initial_epoch, epochs):
                    cbs.on_epoch_begin(epoch)
                    logs = self._read(run_epoch(hook), train=True)
                    if validate is not None:
                        logs.update({f"val_{k}": v for k, v in validate().items()})
                    self.epoch = epoch + 1
                    cbs.on_epoch_end(epoch, logs)
                    if self.stop_training:
                        break
            finished = True
        finally:
            self._interrupt = interrupts.NONE
            if finished:  # Keras' use_ema: the weights become their moving average at the end
                params = optimizers.averaged_weights(self.tx, self.state.opt_state, self.state.params)
                self.state = self.state.replace(params=params)
            self._claim()
            cbs.on_train_end(logs)  # the last epoch's logs, as Keras passes them
        return history

    def _run_arrays(self, placed, batch_size: int, shuffle: bool, hook=None):
        """One training epoch over arrays (``feeding``: resident on the device or fed from the host);
        returns the running totals."""
        n = placed.n
        order = feeding.permutation(self.state.rng, self.state.step, n, shuffle)
        full, tail = divmod(n, batch_size)
        k = self.steps_per_execution
        chunks = [(steps, batch_size) for steps in [k] * (full // k) + ([full % k] if full % k else [])]
        if tail:
            chunks.append((1, batch_size if self._pad_last_batch() else tail))
        totals, start, in_flight = self._empty_totals(True), 0, feeding.in_flight(placed)
        for steps, size in chunks:
            program = self._chunk_program(True, steps, size, placed)
            if hook:
                hook("begin", start // batch_size, totals)
            feed = feeding.chunk_args(placed, order, start, steps, size, min(steps * size, n - start), self.mesh)
            self.state, totals, done = program(self.state, totals, *feed)
            in_flight.add(done)
            start += steps * size
            if hook:
                hook("end", -(-min(start, n) // batch_size) - 1, totals)
            self._interrupt.check()
        return totals

    def _run_stream(self, batches, train: bool, hook=None):
        """One pass over an iterable of batches, each checked and sent to the devices while the
        previous ones run (``feeding.InFlight`` bounds how far ahead)."""
        totals, count, in_flight = None, 0, feeding.InFlight()
        for batch in batches:
            x, y, weight = data_lib.unpack_batch(batch)
            self.build(x)
            self._bind(x, y)
            validation.targets_given(y, self._custom_train is None, "fit" if train else "evaluate")
            if not train:
                validation.has_test_step(self._steps.test, "evaluate")
            totals = self._empty_totals(train) if totals is None else totals
            batch = feeding.stream_batch(x, y, weight, self.mesh)
            if hook:
                hook("begin", count, totals)
            if train:
                self.state, totals, done = self._batch_program(True)(self.state, totals, batch)
            else:
                totals, done = self._batch_program(False)(self.state, totals, batch)
            in_flight.add(done)
            if hook:
                hook("end", count, totals)
            self._interrupt.check()
            count += 1
        if not count:
            raise ValueError("The batch iterable yielded no batches. A generator is used up after one pass: for "
                             "several epochs pass an object whose __iter__ starts a new pass (e.g. a list of "
                             "batches or a data loader).")
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

    def _batch_hook(self, cbs: CallbackList) -> Callable:
        """Run the callbacks' batch hooks, with the epoch's running logs read only if looked at."""
        def hook(when: str, index: int, totals) -> None:
            if when == "end":  # the next program donates ``totals``: keep a copy for a late reader
                totals = jax.tree.map(jnp.copy, totals)
            logs = None if when == "begin" else LazyLogs(lambda: self._read(totals, train=True))
            getattr(cbs, f"on_train_batch_{when}")(index, logs)
        return hook

    def _check_initial_epoch(self, initial_epoch: int) -> None:
        restored, self._restored_epoch = self._restored_epoch, None
        if restored is not None and initial_epoch != restored:
            raise ValueError(f"The loaded checkpoint was saved after epoch {restored}, but fit() was given "
                             f"initial_epoch={initial_epoch}. Pass initial_epoch={restored} to continue it.")

    # ------------------------------------------------------------------ evaluate, predict
    def evaluate(self, x=None, y=None, batch_size: Optional[int] = None, verbose: Any = "auto",
                 sample_weight=None, return_dict: bool = False):
        """The loss and metrics in inference mode (Keras' ``evaluate``).

        Args:
          x: the inputs (arrays), or an iterable of ``(x, y[, sample_weight])`` batches.
          y: the targets (with array ``x``).
          batch_size: rows per step (default 32); the result does not depend on it.
          verbose: print the values (1) or not (0, ``"auto"``).
          sample_weight: one weight per sample, for the loss and ``weighted_metrics``.
          return_dict: return ``{name: value}`` instead of a list.

        Returns:
          The loss as a float if there are no metrics, else ``[loss, *metrics]`` in log order,
          or the dict.
        """
        batch_size = data_lib.check_batch_size(batch_size)
        x = pipelines.from_data_source(x, batch_size, False, 0) if pipelines.is_data_source(x) else x
        source = x if data_lib.is_stream(x) else (x, y, sample_weight)
        logs = self._evaluator(source, batch_size, "evaluate")()
        if verbose not in (0, "auto") or verbose is True:
            print(" - ".join(f"{k}: {v:.4f}" if np.ndim(v) == 0 else f"{k}: {v}" for k, v in logs.items()))
        return _as_result(logs, return_dict)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight: Optional[dict] = None,
                       return_dict: bool = False):
        """Keras' ``train_on_batch``: one training step on this one batch.

        Args:
          x: the batch's inputs.
          y: its targets.
          sample_weight: one weight per row.
          class_weight: ``{class: weight}``, multiplied into the sample weights.
          return_dict: return ``{name: value}`` instead of a list.

        Returns:
          The batch's loss (a float without metrics, else ``[loss, *metrics]``), or the dict.
        """
        x, y, weight = self._arrays(x, y, sample_weight, class_weight)
        batch = (x, y) if weight is None else (x, y, weight)
        logs = self._read(self._run_stream([batch], train=True), train=True)
        self._claim()
        return _as_result(logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict: bool = False):
        """Keras' ``test_on_batch``: the loss and metrics of this one batch, in inference mode.

        Args:
          x: the batch's inputs.
          y: its targets.
          sample_weight: one weight per row.
          return_dict: return ``{name: value}`` instead of a list.

        Returns:
          As ``evaluate`` on the batch.
        """
        rows = data_lib.num_samples(data_lib.to_arrays(x, "x"), None)
        return self.evaluate(x, y, batch_size=rows, verbose=0, sample_weight=sample_weight, return_dict=return_dict)

    def predict_on_batch(self, x):
        """Keras' ``predict_on_batch``: the model's outputs for this one batch, as numpy.

        Args:
          x: the batch's inputs.

        Returns:
          As ``predict``.
        """
        return self.predict(x, batch_size=data_lib.num_samples(data_lib.to_arrays(x, "x"), None))

    def _evaluator(self, source, batch_size: int, what: str) -> Callable[[], dict]:
        """A function returning inference-mode logs on ``source``: ``(x, y[, w])`` arrays or a batch stream."""
        if data_lib.is_stream(source):
            return lambda: self._read(self._run_stream(source, train=False), train=False)
        x, y, weight = self._arrays(*(*source, None, None)[:3], what=f"{what} ")
        placed = self._on_device(x, y, weight, what)
        validation.has_test_step(self._steps.test, what)
        return lambda: self._read(self._evaluate_arrays(placed, batch_size), train=False)

    def _evaluate_arrays(self, placed, batch_size: int):
        """The test step over arrays, in order; the last batch runs padded and masked (exact:
        inference sees no batch statistics)."""
        n = placed.n
        k = max(1, min(self.steps_per_execution, -(-n // batch_size)))
        program = self._chunk_program(False, k, batch_size, placed)
        totals, order, in_flight = self._empty_totals(False), np.arange(n, dtype=np.int32), feeding.in_flight(placed)
        for start in range(0, n, k * batch_size):
            totals, done = program(self.state, totals, *feeding.chunk_args(placed, order, start, k, batch_size,
                                                                            n - start, self.mesh))
            in_flight.add(done)
        return totals

    def predict(self, x, batch_size: Optional[int] = None, verbose: Any = 0, method: Any = None):
        """The model's outputs in inference mode, as numpy (Keras' ``predict``).

        Args:
          x: the inputs: arrays, or an iterable of batches (each ``x`` or ``(x, ...)``).
          batch_size: rows per program call (default 32).
          verbose: accepted for Keras compatibility; predict prints nothing.
          method: ``None`` for ``__call__``, or another method of the model to run (a VAE's
            ``"decode"``), as Flax's ``apply(..., method=...)``.

        Returns:
          The outputs, batch axis first; several outputs as a list/tuple/dict as the model returns them.
        """
        if pipelines.is_data_source(x):
            x = pipelines.from_data_source(x, data_lib.check_batch_size(batch_size), False, 0)
        if data_lib.is_stream(x):
            parts = [self.predict(b[0] if isinstance(b, (tuple, list)) else b, batch_size=batch_size, method=method)
                     for b in x]
            return jax.tree.map(lambda *p: np.concatenate(p), *parts)
        batch_size = data_lib.check_batch_size(batch_size)
        x = data_lib.to_arrays(x, "x")
        n = data_lib.num_samples(x)
        if method is None:
            self.build(x)
            self._model_outputs(x, "predict x")  # inputs the model was not built for: a clear error
        else:
            self._require_built(f"predict(method={method!r})")
        resident = feeding.fits_on_device(self.mesh, feeding.nbytes(x))
        program = self._predict_program(batch_size, method, resident)
        if resident:
            data = jax.device_put(x, devices_lib.replicated(self.mesh))
            chunks, problems = zip(*[program(self.state.variables, data, start) for start in range(0, n, batch_size)])
        else:  # each batch's rows sent as it runs, split over the devices
            sharding = devices_lib.rows_sharding(self.mesh, batch_size)
            chunks, problems = zip(*[program(self.state.variables, feeding.rows_of(
                x, np.minimum(start + np.arange(batch_size), n - 1), sharding)) for start in range(0, n, batch_size)])
        outputs = jax.tree.map(lambda *parts: np.concatenate([np.asarray(p)[:batch_size] for p in parts])[:n], *chunks)
        counts = jax.tree.map(lambda *counts: sum(counts), *jax.device_get(problems))
        step_lib.raise_checks({step_lib.PROBLEM + k: v for k, v in counts.items()}, "predict")
        return dict(outputs) if isinstance(outputs, Mapping) else outputs  # Keras returns a plain dict

    def _on_device(self, x, y, weight, what: str):
        """Build and bind on ``x, y``, then place ``(x, y, weight)`` for the steps (``feeding.place``)."""
        data_lib.num_samples(x, y)
        self.build(x)
        self._bind(x, y, what)
        validation.targets_given(y, self._custom_train is None, what)
        return feeding.place(x, y, weight, self.mesh)

    # ------------------------------------------------------------------ the compiled programs
    def _chunk_program(self, train: bool, steps: int, size: int, placed):
        """``run(state, totals, *feed) -> (state, totals, done)`` (train) or ``(totals, done)``:
        ``steps`` batches of ``size`` rows, gathered from resident data or sliced from the host's
        stacked batches (``feeding.chunk_args``); masked rows (a short last batch) count for nothing.
        ``done`` is ready when the program has run (``feeding.InFlight``)."""
        def make():
            step = step_lib.counted(self._steps.train if train else self._steps.test, train)

            def run(state, totals, *feed):
                for i in range(steps):
                    batch = devices_lib.split(feeding.batch_in_program(feed, i, size), self.mesh)
                    state, logs = step(state, batch)
                    state = self._keep_placed(state)
                    totals = step_lib.merge_logs(totals, logs)
                return (state, totals, state.step) if train else (totals, _done(totals))
            return self._jit(run, train)
        return self._program(("chunk", train, steps, size, placed.resident), make)

    def _batch_program(self, train: bool):
        """``run(state, totals, batch)``: one batch handed in from a stream (outputs as ``_chunk_program``)."""
        def make():
            step = step_lib.counted(self._steps.train if train else self._steps.test, train)

            def run(state, totals, batch):
                state, logs = step(state, batch)
                state = self._keep_placed(state)
                totals = step_lib.merge_logs(totals, logs)
                return (state, totals, state.step) if train else (totals, _done(totals))
            return self._jit(run, train)
        return self._program(("batch", train), make)

    def _predict_program(self, size: int, method=None, resident: bool = True):
        """``run(variables, data, start)``: outputs for rows ``start .. start + size`` (clipped) of
        resident data, or ``run(variables, x)`` for one batch sent from the host. With several
        processes the outputs are gathered onto every device, so each process can read them all."""
        def make():
            def run(variables, data, start=None):
                if resident:
                    index = start + jnp.arange(size)  # past the end: mode="clip" repeats the last row
                    data = jax.tree.map(lambda a: jnp.take(a, index, axis=0, mode="clip"), data)
                out = self._forward(variables, devices_lib.split(data, self.mesh), method)
                return jax.lax.with_sharding_constraint(out, devices_lib.replicated(self.mesh)) \
                    if jax.process_count() > 1 else out
            return self._jit(run, None)
        return self._program(("predict", size, method, resident), make)

    def _empty_totals(self, train: bool) -> dict:
        return jax.device_put(self._steps.train_logs if train else self._steps.test_logs,
                              devices_lib.replicated(self.mesh))

    def _read(self, totals: dict, train: bool) -> dict:
        """Every log's result, computed on the devices, fetched in one sync, in the step's log order."""
        results = self._program(("results",), lambda: self._jit(step_lib.log_values, None))
        values = jax.device_get(results(totals))
        names = self._steps.train_logs if train else self._steps.test_logs
        step_lib.raise_checks({k: values[k] for k in names}, "fit" if train else "evaluate")
        return {k: float(values[k]) if np.ndim(values[k]) == 0 else np.asarray(values[k]) for k in names
                if not k.startswith("_")}

    def _program(self, key: tuple, make: Callable):
        if key not in self._programs:
            self._programs[key] = make()
        return self._programs[key]

    def _jit(self, fn: Callable, train: Optional[bool]):
        """``jax.jit`` that counts traces. Training programs donate the state and the totals and get
        the training XLA options (they speed the training step and slow inference); test programs
        donate the totals."""
        def traced(*args):
            self.traces += 1
            return fn(*args)

        donate = (0, 1) if train else (1,) if train is False else ()
        return jax.jit(traced, donate_argnums=donate, compiler_options=(self.compiler_options or None)
                       if train else None)

    # ------------------------------------------------------------------ the pure steps, for researchers
    @property
    def train_step(self) -> Callable:
        """The jitted pure step this Trainer runs, ``(state, batch) -> (state, logs)``.

        ``batch`` is a ``Batch`` or ``(x, y[, sample_weight])``; ``logs`` are the batch's values.
        Compiled once and kept: the same object at every access until ``compile()``, ``freeze()``
        or ``unfreeze()`` replaces it.
        """
        if "train" not in self._public:
            step = self._bound("train_step").train

            def run(state, batch):
                state, logs = step(state, step_lib.as_batch(batch))
                return state.replace(step=state.step + 1), step_lib.log_values(logs, checks=False)
            self._public["train"] = self._jit(run, None)
        return self._public["train"]

    @property
    def test_step(self) -> Callable:
        """The jitted pure step ``(state, batch) -> logs`` in inference mode (Keras' ``test_step``);
        kept like ``train_step``."""
        if "test" not in self._public:
            step = self._bound("test_step").test
            validation.has_test_step(self._steps.test, "test_step")
            self._public["test"] = self._jit(
                lambda state, batch: step_lib.log_values(step(state, step_lib.as_batch(batch)), checks=False), None)
        return self._public["test"]

    eval_step = test_step

    def _bound(self, what: str) -> _Steps:
        self._require_built(what)
        return self._steps or self._bind(weights.zeros_batch(self._sample_shape, 2), None)

    # ------------------------------------------------------------------ weights, freezing, checkpoints
    def summary(self, print_fn: Callable = print) -> None:
        """Print Keras' ``summary()`` table: each layer, its output shape (batch as None), its
        parameter count, and the trainable / non-trainable totals.

        Args:
          print_fn: called with the table's text.
        """
        self._require_built("summary")
        trainable = freezing.labels(self.state.params, self.state.frozen)
        print_fn(summary.render(self.model, self.state.variables, self._sample_shape, trainable))

    def get_weights(self) -> list:
        """Keras' ``get_weights``.

        Returns:
          Every variable as numpy, layer by layer (kernel, bias, …, then moving statistics).
        """
        self._require_built("get_weights")
        return weights.flatten(self.state.variables, self._weight_order)

    def set_weights(self, values: list) -> None:
        """Keras' ``set_weights``.

        Args:
          values: every variable, in the order ``get_weights()`` returns them.

        Raises:
          ValueError: for a wrong number of arrays, or an array of the wrong shape (named).
        """
        self._require_built("set_weights")
        variables = weights.unflatten(self.state.variables, self._weight_order, values)
        params = variables.pop("params")
        self.state = self._place(self.state.replace(params=params, model_state=variables))
        self._claim()

    def get_layer(self, name: str):
        """Keras' ``model.get_layer(name)``: the layer object, to read or set its weights and ``trainable``.

        Args:
          name: a layer's name in the model (``"dense_1"``), or a path into a sub-model (``"base/conv2d"``).

        Returns:
          The layer object the model was built from (``get_weights``/``set_weights`` in Keras' order).

        Raises:
          ValueError: no layer has that name (the names are listed).
        """
        return layer_objects.find(self._given, name)

    def _layer_variables(self, path: tuple) -> dict:
        """The variables of the sub-module at ``path``, per collection (``dlkit.layer_objects``' owner protocol)."""
        return layer_objects.subtree(self.state.variables, path)

    def _layer_weights(self, path: tuple) -> list:
        """The weights of the sub-module at ``path`` in Keras' order (``layer.get_weights()``)."""
        order = self._weight_order
        return weights.flatten(self.state.variables, [order[i] for i in weights.under(order, path)])

    def _set_layer_weights(self, path: tuple, values: list) -> None:
        """Set the weights of the sub-module at ``path`` (``layer.set_weights()``), in Keras' order."""
        self.set_weights(weights.replaced(self.get_weights(), weights.under(self._weight_order, path), values))

    def save_weights(self, path: str) -> None:
        """Keras' ``save_weights``.

        Args:
          path: the file to write the model's variables to, atomically: ``*.weights.h5`` in Keras 3's
            HDF5 layout (``dlkit.saving.keras_h5``), any other name as Flax msgpack. With several
            processes the first writes it while the others wait.
        """
        self._require_built("save_weights")
        if model_file.handles(path):
            devices_lib.on_first_process(lambda: model_file.save_weights(self, path), f"save_weights {path}")
        else:
            variables = jax.device_get(self.state.variables)  # every process takes part in reading split arrays
            devices_lib.on_first_process(lambda: weights.save(path, variables), f"save_weights {path}")

    def load_weights(self, path: str) -> None:
        """Keras' ``load_weights`` into this built model.

        Args:
          path: a file written by ``save_weights`` (a ``.weights.h5`` also by Keras), or a ``.keras`` archive.
        """
        self._require_built("load_weights")
        if model_file.handles(path, reading=True):
            model_file.load_weights(self, path)
        else:
            self.set_weights(weights.flatten(weights.load(path, self.state.variables), self._weight_order))

    def save(self, filepath: str, overwrite: bool = True) -> None:
        """Keras' ``model.save("model.keras")``: architecture, compile arguments, weights and optimizer state in
        one archive (``dlkit.saving.model_file``), for ``dlkit.load_model``.

        Args:
          filepath: the file, ending in ``.keras``; written atomically.
          overwrite: replace an existing file (``False``: raise ``FileExistsError``).
        """
        devices_lib.on_first_process(lambda: model_file.save_model(self, filepath, overwrite), f"save {filepath}")

    def freeze(self, *paths: str) -> None:
        """Keras' ``layer.trainable = False``, with a fresh optimizer state as after a Keras re-``compile``.

        Args:
          *paths: sub-modules (``"base"``, ``"base/dense_1"``); their parameters stop changing (bitwise)
            and batch normalization in them runs in inference mode.

        Raises:
          ValueError: for a path that holds no parameters (the known ones are listed).
        """
        self._set_trainable(paths, False)

    def unfreeze(self, *paths: str) -> None:
        """Keras' ``layer.trainable = True`` (a fresh optimizer state, as ``freeze``).

        Args:
          *paths: sub-module paths; one inside a frozen part unfreezes just that part.
        """
        self._set_trainable(paths, True)

    def _set_trainable(self, paths, value: bool) -> None:
        self._require_built("freeze" if not value else "unfreeze")
        self._public = {}
        self._restart_optimizer(freezing.with_rule(self.state.params, self.state.frozen, paths, value))

    def _restart_optimizer(self, rules) -> None:
        tx = hashable(freezing.masked(self.tx, self.state.params, rules))
        opt_state = init_optimizer(tx, self.state.params)
        self.state = self._place(self.state.replace(tx=tx, frozen=rules, opt_state=opt_state))

    def _place(self, state: TrainState) -> TrainState:
        """``state`` on the devices as ``sharding`` says (``devices.state_shardings``), the shardings
        kept: every program keeps the state it returns there."""
        self._shardings = devices_lib.state_shardings(state, self.mesh, self.sharding)
        return jax.device_put(state, self._shardings)

    def _keep_placed(self, state: TrainState) -> TrainState:
        """Inside a program: the new state where the old one lived (under ``"fsdp"``, still split)."""
        return state if self.sharding == "replicated" else jax.lax.with_sharding_constraint(state, self._shardings)

    @property
    def optimizer(self) -> optimizers.TrainerOptimizer:
        """Keras' ``model.optimizer``: ``trainer.optimizer.learning_rate`` reads and sets the rate."""
        return optimizers.TrainerOptimizer(self)

    learning_rate = property(lambda self: self.optimizer.learning_rate,
                             lambda self, value: setattr(self.optimizer, "learning_rate", value),
                             doc="The learning rate the optimizer uses now (``trainer.optimizer.learning_rate``).")

    def save_checkpoint(self, directory: str, epoch: Optional[int] = None, weights_only: bool = False,
                        allow_nonfinite: bool = False) -> None:
        """Save the full training state (or the weights only) as an Orbax checkpoint, with the shape,
        dtype and SHA-256 of every array and the position of the last ``fit``'s Grain pipeline
        (``dlkit.training.pipelines``); a checkpoint of the same epoch is replaced.

        Args:
          directory: the checkpoint directory (one sub-directory per saved epoch).
          epoch: the label, epochs completed (default ``self.epoch``).
          weights_only: save params and other collections only, no optimizer state.
          allow_nonfinite: save NaN or inf weights too (refused by default: no state to resume from).

        Raises:
          dlkit.checkpoints.CheckpointError: NaN or inf weights (``NonFiniteCheckpointError``), or a
            ``directory`` that cannot be written (both ``ValueError``s).
        """
        self._require_built("save_checkpoint")
        checkpoints.save_state(directory, self.state, self.epoch if epoch is None else epoch, self._sample_shape,
                               weights_only, allow_nonfinite=allow_nonfinite,
                               input_state=None if self._input is None else self._input.state())

    def load_checkpoint(self, directory: str, epoch: Optional[int] = None, fallback: bool = True) -> int:
        """Restore the latest (or the given) checkpoint in ``directory``, every array checked against
        its saved SHA-256. A fresh Trainer is built from the sample shape saved with it; continue
        with ``fit(..., initial_epoch=epoch)``.

        Args:
          directory: a directory written by ``save_checkpoint`` / ``ModelCheckpoint``.
          epoch: the epoch to restore (default: the latest intact one).
          fallback: with ``epoch=None``, skip a damaged latest checkpoint, with a warning naming it,
            for the latest intact one (``False``: raise).

        Returns:
          The restored checkpoint's epoch.

        Raises:
          FileNotFoundError: ``directory`` holds no checkpoint (or none for ``epoch``).
          dlkit.checkpoints.CheckpointError: the checkpoint is damaged, none is intact, or it holds
            other shapes than the model (the first differing parameter is named).
        """
        def template(meta: dict):
            if self.state is None:
                self.build(weights.zeros_batch(checkpoints.decode_shape(meta["sample_shape"])))
            return self.state

        epoch, meta, state = checkpoints.load_state(directory, epoch, template, fallback)
        self.state = self._place(state)
        self._claim()
        if not meta.get("weights_only", False):
            self.epoch = self._restored_epoch = int(meta["epoch"])
            self._saved_input = meta.get("input_state")
        return epoch

    def _arrays(self, x, y, sample_weight, class_weight=None, what: str = ""):
        """In-memory ``x, y, sample_weight`` as checked arrays: targets keyed by output name put in output
        order (Keras takes both), one weight per sample, ``class_weight`` multiplied in."""
        x, y = data_lib.to_arrays(x, f"{what}x"), data_lib.to_arrays(y, f"{what}y")
        y = supervised.in_output_order(y, supervised.list_output_names(self.model))
        weight = validation.sample_weight(data_lib.to_arrays(sample_weight, f"{what}sample_weight"),
                                          data_lib.num_samples(x, y), f"{what}sample_weight")
        if class_weight is not None:
            weight = data_lib.class_weights(y, class_weight, weight)
        return x, y, weight

    def _claim(self) -> None:
        """This trainer's variables become the ones its model's layer objects carry (``dlkit.layer_objects``)."""
        if self.state is not None:  # a fit that failed before building has nothing to claim
            layer_objects.claim(self, self._given, self.state.variables)

    def _require_built(self, what: str) -> None:
        if self.state is None:
            raise ValueError(
                f"{what}() needs a built model: give the first layer input_shape=..., start the Sequential "
                f"with dlkit.Input(shape), pass Trainer(..., input_shape=...), or call fit/predict first.")


def _as_result(logs: dict, return_dict: bool):
    """Keras' return value of ``evaluate``: the dict, the loss alone, or ``[loss, *metrics]``."""
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def _done(totals: dict) -> jax.Array:
    """A scalar computed from a test program's totals: ready when the program has run."""
    return jnp.sum(jax.tree.leaves(totals)[0])


def _as_list(metrics) -> Any:
    """Keras takes one metric, a list, or a dict / list of lists per output."""
    if metrics is None or isinstance(metrics, (list, tuple, dict)):
        return metrics if isinstance(metrics, dict) else list(metrics or [])
    return [metrics]


def _on_host(logs: dict) -> dict:
    """Host copies in log order (``device_get`` sorts dict keys): each epoch's totals are then new
    device buffers, as the programs donate them."""
    host = jax.device_get(logs)
    return {k: host[k] for k in logs}

