"""The compiled programs behind ``Trainer``, each traced once per input shape.

* ``chunk(train, steps, size)``: ``steps`` batches of ``size`` rows gathered on the
  device from device-resident data by a permutation; rows past ``valid`` are
  masked out (a short last batch).
* ``batch(train)``: one batch handed in from a stream.
* ``predict(size)``: model outputs for ``size`` rows.

Train programs donate the state and the running totals, and add each step's
loss and metric sums into those on-device totals, so the host need not sync
until it reads them. Batches are split across devices along the mesh's batch
axis; params stay replicated.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from dlkit.training import devices
from dlkit.training.step import COUNT, Batch, counted_test, counted_train


@dataclasses.dataclass(frozen=True, eq=False)
class Steps:
    """The pure steps a Trainer runs (see ``step.py``) and the names of the logs they return."""

    train: Callable
    test: Optional[Callable]
    train_names: tuple
    test_names: tuple

    def names(self, train: bool) -> list:
        return list(self.train_names if train else self.test_names)


class Programs:
    def __init__(self, forward: Callable, mesh: Mesh, train_options: dict):
        self.forward, self.mesh, self.train_options = forward, mesh, train_options
        self.steps: Optional[Steps] = None  # bound by the Trainer once it has seen data
        self.traces = 0  # every trace is one compilation
        self._cache: dict = {}

    def zeros_totals(self, train: bool):
        names = [*self.steps.names(train), COUNT]
        return jax.device_put({k: jnp.zeros((), jnp.float32) for k in names}, devices.replicated(self.mesh))

    def chunk(self, train: bool, steps: int, size: int):
        """``run(state, totals, data, perm, start, valid) -> (state, totals)`` (train) or ``totals``."""
        def make(step):
            def run(state, totals, data, perm, start, valid):
                for i in range(steps):
                    batch = self._gather(data, perm, start + i * size, size, valid - i * size)
                    state, totals = self._accumulate(step, state, totals, batch)
                return (state, totals) if train else totals
            return run

        return self._cached(("chunk", train, steps, size), make, train)

    def batch(self, train: bool):
        """``run(state, totals, Batch)``, for batches handed in one at a time."""
        def make(step):
            def run(state, totals, batch):
                state, totals = self._accumulate(step, state, totals, batch)
                return (state, totals) if train else totals
            return run

        return self._cached(("batch", train), make, train)

    def predict(self, size: int, method=None):
        """``run(variables, data, start)``: outputs (of the model, or its ``method``) for rows
        ``start .. start + size`` (clipped)."""
        def run(variables, data, start):
            index = start + jnp.arange(size)  # past the end: mode="clip" repeats the last row
            x = jax.tree.map(lambda a: jnp.take(a, index, axis=0, mode="clip"), data)
            return self.forward(variables, self.split(x, size), method)

        key = ("predict", size, method)
        if key not in self._cache:
            self._cache[key] = self._jit(run, (), None)
        return self._cache[key]

    def split(self, batch, rows: int):
        """Split a batch across the devices; a batch that does not divide evenly runs on each
        device whole (padding it would change what batch normalization sees)."""
        divides = rows % self.mesh.size == 0
        sharding = devices.batch_sharded(self.mesh) if divides else devices.replicated(self.mesh)
        return jax.lax.with_sharding_constraint(batch, sharding)

    def _gather(self, data, perm, start, rows: int, valid):
        """Rows ``perm[start:start+rows]`` of each array and a mask that is 0 from row ``valid`` on."""
        offsets = jnp.arange(rows)
        index = jnp.take(perm, start + offsets, mode="clip")
        x, y, w = jax.tree.map(lambda a: jnp.take(a, index, axis=0, mode="clip"), data)  # in range: no fill
        mask = (offsets < valid).astype(jnp.float32)
        return self.split(Batch(x, y, w, mask), rows)

    @staticmethod
    def _accumulate(step, state, totals, batch):
        state, batch_totals = step(state, batch)
        return state, jax.tree.map(jnp.add, totals, batch_totals)

    def _cached(self, key: tuple, make_run: Callable, train: bool):
        """The program for ``key``; on a miss, ``make_run(step)`` builds it around the pure step."""
        key = (*key, self.steps)
        if key not in self._cache:
            step = counted_train(self.steps.train) if train else counted_test(self.steps.test)
            # The XLA options speed the training step and slow inference (measured), so
            # only training programs get them.
            self._cache[key] = self._jit(make_run(step), (0, 1) if train else (1,),
                                         self.train_options if train else None)
        return self._cache[key]

    def _jit(self, fn: Callable, donate: tuple, options: Optional[dict]):
        def traced(*args):
            self.traces += 1
            return fn(*args)

        return jax.jit(traced, donate_argnums=donate, compiler_options=options or None)
