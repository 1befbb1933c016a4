"""Several trainers of one model trained together: one after another with ``fit``, or side by side,
vmapped in one compiled program (``dlkit.evaluation``'s K-fold folds, seed ensembles).

Side by side, the ``M`` initial ``TrainState``s are stacked along a new leading axis and
``jax.vmap`` runs the first trainer's pure ``train_step`` on all of them at once, one
``lax.scan`` over an epoch's batches per compiled program. Each member's training rows are an
index set padded to the longest member's; the padding rows have ``mask`` 0, which the supervised
step's masked mean ignores, and a batch with no real row leaves its member's state as it was,
so each member takes the same steps, in the same order (the same epoch permutations), as
``fit`` would, and reaches the same state to float rounding.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dlkit import layer_objects, optimizers
from dlkit.layers.normalization_preprocessing import Normalization
from dlkit.training import data as data_lib
from dlkit.training import devices as devices_lib
from dlkit.training import feeding
from dlkit.training.step import Batch

# fit's arguments the side-by-side loop handles (verbose: it prints nothing); with any other, parallel="auto"
# trains one after another.
PARALLEL_FIT_ARGS = {"epochs", "batch_size", "shuffle", "verbose", "sample_weight", "class_weight",
                     "validation_batch_size"}
# parallel="auto" where the backend is a CPU: measured with scripts/bench_folds.py (docs/benchmarks.md).
AUTO_PARALLEL_ON_CPU = True


def fit_members(trainers: list, train: list, validation: Optional[list] = None, parallel: Any = "auto",
                **fit_kwargs) -> tuple:
    """Train trainer ``m`` on its rows of its data, one after another (``fit``) or side by side.

    Side by side, ``M`` states stacked, one program per epoch runs ``vmap(scan(train_step))`` over
    index sets padded to the largest member's, the padding masked (module docstring). Each epoch's
    training log is ``sum_b n_b v_b / sum_b n_b`` over the batches' values ``v_b`` and real rows
    ``n_b``: ``fit``'s exact epoch mean for the loss and mean metrics; a metric that no batch mean
    gives (AUC, say) is the row-weighted mean of its batch values. Scores from ``evaluate`` after
    training are exact either way.

    Args:
      trainers: built trainers of one model (the first one's steps run every member side by side).
      train: per member ``(x, y, rows)``: its data and the rows it trains on.
      validation: ``None``, or per member ``(x, y, rows)`` to validate on after every epoch.
      parallel: ``True``, ``False`` or ``"auto"``: side by side where it can (on a CPU only if
        ``AUTO_PARALLEL_ON_CPU``), else one after another.
      **fit_kwargs: ``fit``'s arguments; ``sample_weight`` has one weight per row of the data.

    Returns:
      ``(histories, parallel)``: ``{name: [value per epoch]}`` per member, and whether side by side.

    Raises:
      ValueError: ``parallel=True`` for members that cannot run side by side (the reason is named).
    """
    reason = _why_not_parallel(trainers, train, fit_kwargs)
    if parallel == "auto":
        parallel = reason is None and (AUTO_PARALLEL_ON_CPU or jax.default_backend() != "cpu")
    elif parallel and reason:
        raise ValueError(f"parallel=True cannot train these side by side: {reason}. Pass parallel=False.")
    if parallel:
        return _side_by_side(trainers, train, validation, **fit_kwargs), True
    weight = fit_kwargs.pop("sample_weight", None)
    histories = []
    for m, (trainer, (x, y, rows)) in enumerate(zip(trainers, train)):
        held_out = None if validation is None else validation[m]
        val = None if held_out is None else (data_lib.take(held_out[0], held_out[2]),
                                             data_lib.take(held_out[1], held_out[2]))
        histories.append(trainer.fit(data_lib.take(x, rows), data_lib.take(y, rows), validation_data=val,
                                     sample_weight=None if weight is None else np.asarray(weight)[rows],
                                     **{"verbose": 0, **fit_kwargs}).history)
    return histories, False


def _why_not_parallel(trainers: list, train: list, fit_kwargs: dict) -> Optional[str]:
    """Why these members cannot train side by side, or ``None``."""
    first = trainers[0]
    shapes = {str(jax.tree.map(jnp.shape, jax.tree.leaves(t.state))) for t in trainers}
    normalizing = [p for p, layer in layer_objects.walk(first.model) if isinstance(layer, Normalization)]
    stateful = [p for p, _ in jax.tree_util.tree_leaves_with_path(first.state.model_state)
                if not any(tuple(getattr(k, "key", k) for k in p[1:1 + len(n)]) == n for n in normalizing)]
    checks = [(len(trainers) < 2, "one member"),
              (set(fit_kwargs) - PARALLEL_FIT_ARGS, f"fit arguments {sorted(set(fit_kwargs) - PARALLEL_FIT_ARGS)}"),
              (len(shapes) > 1, "members of different shapes"),
              (getattr(first, "_custom_train", None) is not None, "a custom train_step (it may not mask padding)"),
              (stateful, "batch statistics, which padded batches would change"),
              (not all(hasattr(y, "shape") for _, y, _ in train), "targets that are not one array")]
    return next((why for bad, why in checks if bad), None)


def _side_by_side(trainers: list, train: list, validation: Optional[list], epochs: int = 1, batch_size=None,
                  shuffle: bool = True, verbose: Any = 0, sample_weight=None, class_weight=None,
                  validation_batch_size=None) -> list:
    """``fit_members`` with the members vmapped; writes each member's trained state back."""
    batch_size = data_lib.check_batch_size(batch_size)
    first = trainers[0]
    first._bind(data_lib.take(train[0][0], slice(0, 2)), train[0][1][:2])  # 'accuracy' resolved on the targets
    tree = jax.tree.structure(first.state)
    where = devices_lib.replicated(first.mesh)
    states = jax.device_put(jax.tree.unflatten(tree, [_stack(a) for a in zip(*(jax.tree.leaves(t.state)
                                                                                for t in trainers))]), where)
    keys, steps = [t.state.rng for t in trainers], [int(t.state.step) for t in trainers]

    def weights(y):
        w = np.ones(len(y), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        return w if class_weight is None else data_lib.class_weights(y, class_weight, w)

    data, data_axis = _stacked([(x, y, weights(y)) for x, y, _ in train], where)
    options = first.compiler_options or None
    fit_epoch = _program(first.train_step, True, data_axis, options)
    rows = [r for _, _, r in train]
    if validation is not None:
        val_data, val_axis = _stacked([(x, y, np.ones(len(y), np.float32)) for x, y, _ in validation], where)
        val_index, val_mask = _padded([r for _, _, r in validation], validation_batch_size or batch_size)
        validate = _program(first.test_step, False, val_axis, None)
    histories = [{} for _ in trainers]
    for _ in range(epochs):
        orders = [r[feeding.permutation(k, s, len(r), shuffle)]
                  for r, k, s in zip(rows, keys, steps)]
        index, mask = _padded(orders, batch_size)
        states, sums = fit_epoch(states, data, index, mask)
        logs = _means(sums, mask)
        if validation is not None:
            val_sums = validate(states, val_data, val_index, val_mask)
            logs = [{**a, **{f"val_{k}": v for k, v in b.items()}} for a, b in zip(logs, _means(val_sums, val_mask))]
        for history, epoch_logs in zip(histories, logs):
            for k, v in epoch_logs.items():
                history.setdefault(k, []).append(v)
        steps = [s + -(-len(r) // batch_size) for s, r in zip(steps, rows)]
    leaves = [_unstack(a) for a in jax.tree.leaves(states)]
    for m, trainer in enumerate(trainers):
        state = jax.device_put(jax.tree.unflatten(jax.tree.structure(trainer.state), [a[m] for a in leaves]),
                               devices_lib.replicated(trainer.mesh))
        trainer.state = state.replace(params=optimizers.averaged_weights(state.tx, state.opt_state, state.params))
        trainer.epoch += epochs
    return histories


def _stack(arrays) -> Any:
    """Members' values of one state leaf stacked on the host (no program to compile); keys as keys."""
    if jax.dtypes.issubdtype(arrays[0].dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(np.stack([jax.random.key_data(a) for a in arrays]),
                                        impl=jax.random.key_impl(arrays[0]))
    return np.stack([np.asarray(a) for a in arrays])


def _unstack(array) -> list:
    """A stacked leaf as its members' values, on the host (keys as keys)."""
    if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(array))
        return [jax.random.wrap_key_data(d, impl=jax.random.key_impl(array)) for d in data]
    return list(np.asarray(array))


def _stacked(parts: list, where) -> tuple:
    """Members' ``(x, y, w)`` placed ``where``: shared (``vmap`` axis ``None``) when every member has the
    same arrays, else stacked (axis 0)."""
    if all(p[0] is parts[0][0] and p[1] is parts[0][1] for p in parts):
        return jax.device_put(parts[0], where), None
    return jax.device_put(jax.tree.map(lambda *a: np.stack(a), *parts), where), 0


def _padded(orders: list, batch_size: int) -> tuple:
    """Members' row orders as ``(M, steps, batch)`` indices and 0/1 masks, padded to the longest."""
    steps = max(-(-len(o) // batch_size) for o in orders)
    index = np.zeros((len(orders), steps * batch_size), np.int32)
    mask = np.zeros(index.shape, np.float32)
    for m, order in enumerate(orders):
        index[m, :len(order)], mask[m, :len(order)] = order, 1.0
    return index.reshape(len(orders), steps, batch_size), mask.reshape(len(orders), steps, batch_size)


def _means(sums: dict, mask: np.ndarray) -> list:
    """Per member, each log's ``sum_b n_b v_b / sum_b n_b`` (floats, or arrays for per-class logs)."""
    rows, sums = mask.sum(axis=(1, 2)), jax.device_get(sums)
    order = sorted(sums, key=lambda k: k != "loss")  # loss first, as fit logs it
    return [{k: (lambda v: float(v) if np.ndim(v) == 0 else v)(sums[k][m] / rows[m]) for k in order}
            for m in range(len(rows))]


def _program(step: Callable, train: bool, data_axis: Optional[int], options: Optional[dict]) -> Callable:
    """``run(states, data, index, mask) -> (states, sums)`` (``sums`` alone for a test step): every
    member's pass over its batches (``lax.scan``), members vmapped; ``sums`` are each log's
    ``sum_b n_b v_b``."""
    def member(state, data, index, mask):
        def one(carry, batch_rows):
            state, sums = carry
            i, m = batch_rows
            x, y, w = jax.tree.map(lambda a: jnp.take(a, i, axis=0, mode="clip"), data)
            rows = jnp.sum(m)
            if train:
                new, logs = step(state, Batch(x, y, w, m))
                state = jax.tree.map(lambda a, b: jnp.where(rows > 0, a, b), new, state)  # an all-padding batch
            else:
                logs = step(state, Batch(x, y, w, m))
            sums = {k: sums[k] + jnp.where(rows > 0, v * rows, 0.0) for k, v in logs.items()}
            return (state, sums), None

        first = jax.tree.map(lambda a: a[0], (index, mask))
        batch = Batch(*jax.tree.map(lambda a: jnp.take(a, first[0], axis=0), data), first[1])
        spec = jax.eval_shape(step, state, batch)
        zeros = {k: jnp.zeros(v.shape, jnp.float32) for k, v in (spec[1] if train else spec).items()}
        (state, sums), _ = jax.lax.scan(one, (state, zeros), (index, mask))
        return (state, sums) if train else sums

    run = jax.vmap(member, in_axes=(0, data_axis, 0, 0))
    return jax.jit(run, donate_argnums=(0,) if train else (), compiler_options=options if train else None)
