"""Assertions for your own pytest files (chex-based): the checks a deep-learning model should pass
before it is trusted with a long run.

``examples/test_my_model.py`` is a test file to copy. Each assertion raises ``AssertionError`` with
what it measured, so pytest reports it as a failed check::

    from dlkit.testing import assert_overfits_one_batch, assert_output_shape

    def test_my_model_can_overfit_one_batch():
        assert_overfits_one_batch(build(), (x[:32], y[:32]), steps=100, max_loss=0.05)

"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional

import chex
import flax.linen as nn
import jax
import numpy as np

from dlkit.inspection import check_gradients

# JAX records this event each time ``jit`` traces a Python function into a program (its ``fun_name``
# is the function's name); a trace is followed by a compilation unless the program is cached.
_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


class TraceCount:
    """What ``assert_max_traces`` counted, readable inside and after its ``with`` block.

    Attributes:
        count: The traces so far.
        names: The traced functions' names, in order (empty when counting a ``Trainer``'s own programs).
    """

    def __init__(self):
        self.count = 0
        self.names: list = []


@contextlib.contextmanager
def assert_max_traces(n: int, trainer=None) -> Iterator[TraceCount]:
    """A ``with`` block in which at most ``n`` programs are traced (each trace is one compilation).

    A program traced again on every call (a Python value where an array should be, a shape that
    changes each step) makes training slow; this catches it. With ``trainer``, the trainer's own
    programs are counted (``trainer.traces``); without, every ``jax.jit`` trace in the block, the
    one-operation programs of eager ``jax.numpy`` calls met for the first time included.

    Args:
        n: The most traces allowed.
        trainer: A ``Trainer`` whose programs alone are counted; ``None``: every trace.

    Yields:
        A ``TraceCount`` (``count``, ``names``), complete when the block ends.

    Raises:
        AssertionError: More than ``n`` traces happened in the block.
    """
    counter = TraceCount()
    start = trainer.traces if trainer is not None else 0

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == _TRACE_EVENT:
            counter.count += 1
            counter.names.append(kwargs.get("fun_name", "?"))

    if trainer is None:
        jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counter
    finally:
        if trainer is None:
            jax.monitoring.unregister_event_duration_listener(listener)
        else:
            counter.count = trainer.traces - start
    if counter.count > n:
        traced = f": {', '.join(counter.names)}" if counter.names else " by the trainer"
        raise AssertionError(f"{counter.count} programs were traced, at most {n} expected{traced}. A function "
                             f"traced on every call gets a Python value or a new shape each time.")


def _copy(tree):
    """Fresh buffers for every array of ``tree`` (a call that donates its arguments deletes them)."""
    return jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, tree)


def assert_compiles_once(fn: Callable, *args, **kwargs):
    """``fn`` compiles on its first call only: a second call on arguments of the same shapes traces nothing.

    The classic miss is a function that builds a new ``jax.jit`` (or a new ``lambda`` handed to one) at
    every call, which compiles every time. ``fn`` is called twice, the second time on copies of ``args``
    (so a function that donates its arguments can be checked); every trace of the second call counts,
    ``fn``'s own and those of any program it calls. ``assert_compiles_once(trainer.train_step,
    trainer.state, (x, y))`` checks a trainer's step.

    Args:
        fn: The function (jitted or not).
        *args: Its arguments.
        **kwargs: Its keyword arguments.

    Returns:
        The first call's outputs.

    Raises:
        AssertionError: The second call traced again.
    """
    again = _copy(args)
    out = jax.block_until_ready(fn(*args, **kwargs))
    with assert_max_traces(0):
        jax.block_until_ready(fn(*again, **kwargs))
    return out


def assert_overfits_one_batch(trainer, batch: Sequence, steps: int = 200, max_loss: float = 0.05) -> list:
    """The first check of a new model (Karpathy's "overfit one batch"): trained on one small batch only,
    its loss must fall below ``max_loss``.

    A model that cannot memorise 16-32 samples has a bug, not a capacity problem: labels not matching
    the inputs, a loss that does not fit the outputs (``from_logits``), frozen weights, a learning rate
    far too low. The trainer is trained in place (``steps`` epochs of this one batch, not shuffled).

    Args:
        trainer: A compiled ``Trainer``.
        batch: ``(x, y)`` or ``(x, y, sample_weight)``.
        steps: Training steps on the batch.
        max_loss: The training loss the last step must be under.

    Returns:
        The loss of each step (before its update, in training mode).

    Raises:
        AssertionError: The last step's loss is ``max_loss`` or more.
    """
    x, y, *weight = batch
    history = trainer.fit(x, y, batch_size=len(jax.tree.leaves(x)[0]), epochs=steps, shuffle=False, verbose=0,
                          sample_weight=weight[0] if weight else None)
    losses = history.history["loss"]
    if not losses[-1] < max_loss:
        raise AssertionError(f"The model did not overfit one batch: its loss went from {losses[0]:.4g} to "
                             f"{losses[-1]:.4g} in {steps} steps (wanted < {max_loss}). Check that the labels match "
                             f"the inputs, that the loss fits the outputs (from_logits), the learning rate.")
    return losses


def assert_deterministic(build: Callable, x, y=None, epochs: int = 1, **fit_kwargs) -> list:
    """Two trainings from the same seed end with bitwise equal weights and equal histories.

    dlkit derives every random draw (initial weights, shuffling, dropout) from the trainer's seed, so
    a training repeated on the same machine repeats exactly; this checks that your model and data do
    not bring their own randomness (NumPy's global generator, an unseeded ``jax.random.key``).

    Args:
        build: ``build()`` returns a fresh compiled ``Trainer`` (its seed fixed).
        x: The training inputs.
        y: The targets.
        epochs: Epochs of each training.
        **fit_kwargs: More ``fit`` arguments (``batch_size``, ``validation_split`` ...).

    Returns:
        The weights both trainings ended with (``get_weights()``).

    Raises:
        AssertionError: Some weight or logged value differs between the two runs.
    """
    runs = []
    for _ in range(2):
        trainer = build()
        history = trainer.fit(x, y, epochs=epochs, verbose=0, **fit_kwargs)
        runs.append((trainer.get_weights(), history.history))
    (first, first_logs), (second, second_logs) = runs
    chex.assert_trees_all_equal(first, second, strict=True)
    chex.assert_trees_all_equal(first_logs, second_logs)
    return first


def assert_gradients_match_finite_differences(layer_or_fn, *args, **kwargs) -> None:
    """The autodiff gradients of a layer (w.r.t. its weights and inputs) or of a function agree with
    finite differences in float64: ``dlkit.inspection.check_gradients``, which states the math.

    Args:
        layer_or_fn: A layer (any Linen module) or a function.
        *args: The inputs at which to check.
        **kwargs: ``check_gradients``' options (``order``, ``modes``, ``eps``, ``rtol``, ``atol``, ``seed``),
            the rest passed on to the function or layer.

    Raises:
        AssertionError: A derivative differs from its finite difference by more than the tolerance.
    """
    check_gradients(layer_or_fn, *args, **kwargs)


def _shapes(tree) -> list:
    return [tuple(leaf.shape) for leaf in jax.tree.leaves(tree)]


def assert_output_shape(trainer_or_layer, x, expected: Any, **kwargs) -> list:
    """The outputs on ``x`` have the ``expected`` shape(s); ``None`` in a shape matches any size.

    A ``Trainer`` runs ``predict(x)``; a layer (any Linen module) is only traced (``jax.eval_shape`` of
    its ``init``), so nothing is computed.

    Args:
        trainer_or_layer: A ``Trainer`` or a layer.
        x: A batch of inputs.
        expected: One shape (``(None, 10)``), or a list of shapes for several outputs, in
            ``jax.tree.leaves`` order.
        **kwargs: Call arguments for a layer (``training=False``).

    Returns:
        The output shapes, in ``jax.tree.leaves`` order.

    Raises:
        AssertionError: An output's shape differs, or the number of outputs does.
    """
    if isinstance(trainer_or_layer, nn.Module):
        key = jax.random.key(0)
        outputs = jax.eval_shape(lambda x: trainer_or_layer.init_with_output(key, x, **kwargs)[0], x)
    else:
        outputs = trainer_or_layer.predict(x)
    leaves = jax.tree.leaves(outputs)
    one = isinstance(expected, tuple) and all(d is None or isinstance(d, (int, np.integer)) for d in expected)
    wanted = [expected] if one else list(expected)
    if len(wanted) != len(leaves):
        raise AssertionError(f"{len(leaves)} outputs of shapes {_shapes(outputs)}; expected {len(wanted)}: {wanted}.")
    chex.assert_shape(leaves, wanted)
    return _shapes(outputs)


def _sharding_of(value) -> Optional[jax.sharding.Sharding]:
    return value if isinstance(value, jax.sharding.Sharding) else getattr(value, "sharding", None)


def assert_sharded_like(state, sharding) -> None:
    """Every array of ``state`` is laid out over the devices as ``sharding`` says.

    ``assert_sharded_like(trainer.state, NamedSharding(trainer.mesh, PartitionSpec()))`` checks that the
    state is replicated on every device of the trainer's mesh (dlkit's data parallelism). Two shardings
    match when they place every index of the array on the same devices (``Sharding.is_equivalent_to``).

    Args:
        state: A pytree of arrays (``trainer.state``, its ``params`` ...).
        sharding: One ``jax.sharding.Sharding`` for every array, or a pytree of them (a prefix of ``state``'s
            structure), or a pytree of arrays laid out the wanted way.

    Raises:
        AssertionError: Some array is laid out otherwise (each is named, with both shardings).
    """
    wrong = []

    def check(path, want, value):
        want = _sharding_of(want)
        for sub, leaf in jax.tree_util.tree_leaves_with_path(value):
            if isinstance(leaf, jax.Array) and not leaf.sharding.is_equivalent_to(want, leaf.ndim):
                wrong.append(f"{jax.tree_util.keystr((*path, *sub))}: {leaf.sharding}, expected {want}")

    is_leaf = lambda v: _sharding_of(v) is not None
    jax.tree_util.tree_map_with_path(check, sharding, state, is_leaf=is_leaf)
    if wrong:
        raise AssertionError(f"{len(wrong)} arrays are not sharded as expected:\n  " + "\n  ".join(wrong))
