"""Feeding the steps: where the data lives, and how each compiled program gets its batches.

Arrays take one of two places, chosen per ``fit``/``evaluate`` call (``place``):

- **Resident**: on one device with room to spare, the whole data set is copied to the
  device once and each program gathers its batches there by index: no transfer per
  step.
- **Host**: on several devices (or processes), or for data too large to copy, the data
  stays in host memory and each program gets its batches stacked, ``(steps, batch, ...)``,
  every device receiving only its own rows of each batch (``jax.make_array_from_callback``).
  No device ever holds a copy of the data set, so data larger than device memory trains.

Either way the epoch's order is one global permutation drawn from the state, so the
batches are the same rows on 1 or 8 devices and a restored run shuffles as the original.
Transfers overlap compute: JAX dispatches programs asynchronously, so the next batches
are gathered and sent while the devices run the current ones; ``InFlight`` bounds how
far the host runs ahead, so at most ``depth`` programs' batches wait on the devices.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dlkit.training import devices, validation
from dlkit.training.step import Batch

# Data on one CPU device is copied once more into the device's buffers (host RAM again),
# so above this size host feeding, which copies only batches, is the better trade.
_CPU_RESIDENT_BYTES = 256 << 20
# On an accelerator, a resident data set may take this share of the device's memory;
# the rest is the model's, the optimizer's and the activations'.
_DEVICE_SHARE = 0.25
_UNKNOWN_DEVICE_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class Placed:
    """A data set placed for the steps (``place``).

    Args:
      data: ``(x, y, sample_weight)``: device arrays when ``resident``, else numpy arrays.
      n: the number of samples.
      resident: copied to the one device (programs gather their batches there), or kept on the host.
    """

    data: Any
    n: int
    resident: bool


def nbytes(tree) -> int:
    """The bytes of every array in a pytree.

    Args:
      tree: a pytree of numpy or jax arrays.

    Returns:
      The sum of their ``nbytes``.
    """
    return sum(int(a.nbytes) for a in jax.tree.leaves(tree))


def fits_on_device(mesh, size: int) -> bool:
    """Whether a data set of ``size`` bytes is kept resident on the device.

    Only on a single device of a single process: on several, a resident copy would be one
    full copy per device.

    Args:
      mesh: the devices the steps run on.
      size: the data set's bytes.

    Returns:
      True to copy the data to the device once, False to feed it from host memory.
    """
    if mesh.size > 1 or jax.process_count() > 1:
        return False
    device = mesh.devices.flat[0]
    if device.platform == "cpu":
        return size <= _CPU_RESIDENT_BYTES
    stats = getattr(device, "memory_stats", lambda: None)() or {}
    return size <= _DEVICE_SHARE * stats.get("bytes_limit", _UNKNOWN_DEVICE_BYTES)


def place(x, y, weight, mesh):
    """The data set placed for the steps: resident on the device, or kept on the host.

    Args:
      x: the inputs (numpy arrays).
      y: the targets, or ``None`` (zeros: a custom step may ignore them).
      weight: the sample weights, or ``None`` (ones).
      mesh: the devices.

    Returns:
      The ``Placed`` data set: ``(x, y, weight)``, resident on the device or kept on the host.
    """
    n = len(jax.tree.leaves(x)[0])
    weight = np.ones(n, np.float32) if weight is None else np.asarray(weight, np.float32)
    y = np.zeros(n, np.float32) if y is None else y
    data = (x, y, weight)
    if fits_on_device(mesh, nbytes(data)):
        return Placed(jax.device_put(data, devices.replicated(mesh)), n, True)
    return Placed(data, n, False)


def permutation(rng: jax.Array, step, n: int, shuffle: bool) -> np.ndarray:
    """An epoch's sample order, a function of the state's RNG and step count alone, so a
    restored state shuffles as the original would.

    Drawn on the host: it is ``n`` integers, and a device permutation would be one more
    program to compile.

    Args:
      rng: the state's key.
      step: the state's step count (batches trained on).
      n: the number of samples.
      shuffle: ``False`` gives ``0 .. n-1``.

    Returns:
      The ``n`` sample indices, int32.
    """
    order = np.arange(n, dtype=np.int32)
    if shuffle:
        seed = [*np.asarray(jax.random.key_data(rng)).ravel().tolist(), int(step)]
        order = np.random.default_rng(seed).permutation(order)
    return order


def chunk_args(placed, order: np.ndarray, start: int, steps: int, rows: int, valid: int, mesh) -> tuple:
    """The arguments a program of ``steps`` batches of ``rows`` rows takes after ``(state, totals)``.

    Args:
      placed: the ``Placed`` data set.
      order: the epoch's sample order (``permutation``).
      start: the first batch's first position in ``order``.
      steps: batches in the program.
      rows: rows per batch.
      valid: how many of the program's ``steps * rows`` rows are real (the rest are masked).
      mesh: the devices.

    Returns:
      Resident: ``(data, order, start, valid)``, the program gathers its batches on the device.
      Host: ``(batches,)``, a ``Batch`` stacked ``(steps, rows, ...)``, each device holding its rows.
    """
    if placed.resident:
        return placed.data, order, start, valid
    positions = start + np.arange(steps * rows).reshape(steps, rows)
    mask = (positions - start < valid).astype(np.float32)
    index = order[np.minimum(positions, placed.n - 1)]  # past the end: the last row, masked out
    sharding = devices.rows_sharding(mesh, rows, leading=1)
    return (Batch(*rows_of(placed.data, index, sharding), _put(mask, sharding)),)


def rows_of(tree, index: np.ndarray, sharding) -> Any:
    """``a[index]`` of every host array in ``tree`` as device arrays, each device gathering only
    the rows it holds (so no device, and no process, receives another's rows).

    Args:
      tree: a pytree of numpy arrays, samples first.
      index: sample indices, any shape (the leading axes of the result).
      sharding: the result's sharding.

    Returns:
      The pytree of device arrays, each ``(*index.shape, *a.shape[1:])``.
    """
    def put(array):
        shape = (*index.shape, *array.shape[1:])
        return jax.make_array_from_callback(shape, sharding, lambda where: array[index[where[:index.ndim]]])
    return jax.tree.map(put, tree)


def _put(host: np.ndarray, sharding) -> jax.Array:
    return jax.make_array_from_callback(host.shape, sharding, lambda where: host[where])


def batch_in_program(feed: tuple, i: int, rows: int) -> Batch:
    """Batch ``i`` of a program's feed (inside the jitted program).

    Args:
      feed: what ``chunk_args`` gave after ``(state, totals)``.
      i: the batch's index in the program.
      rows: rows per batch.

    Returns:
      The ``Batch``: gathered by index from resident data, or sliced from the stacked batches.
    """
    if len(feed) == 1:
        return jax.tree.map(lambda a: a[i], feed[0])
    data, order, start, valid = feed
    return gather(data, order, start + i * rows, rows, valid - i * rows)


def gather(data, perm, start, rows: int, valid) -> Batch:
    """One batch gathered on the device (inside a jitted program) from device-resident data.

    Args:
      data: ``(x, y, sample_weight)``, all the samples.
      perm: the epoch's sample order.
      start: the batch's first position in ``perm``.
      rows: the batch size.
      valid: how many of the rows are real; the rest (past the data's end) are masked.

    Returns:
      ``Batch(x, y, sample_weight, mask)`` of rows ``perm[start:start + rows]``, the mask 0 from
      row ``valid`` on.
    """
    offsets = jnp.arange(rows)
    index = jnp.take(perm, start + offsets, mode="clip")
    x, y, w = jax.tree.map(lambda a: jnp.take(a, index, axis=0, mode="clip"), data)  # in range: no fill
    return Batch(x, y, w, (offsets < valid).astype(jnp.float32))


def stream_batch(x, y, weight, mesh) -> Batch:
    """One batch of a stream, checked and placed on the devices: split along the batch axis when
    its size divides by the number of devices, else whole on each.

    With several processes, each gives its own part of the global batch (its rows, as a
    sharded input pipeline yields them) and the global batch is their concatenation.

    Args:
      x: the batch's inputs (numpy).
      y: its targets, or ``None`` (zeros: a custom step may ignore them).
      weight: its sample weights, or ``None`` (ones).
      mesh: the devices.

    Returns:
      A ``Batch`` of device arrays, every row real.

    Raises:
      ValueError: for arrays of different lengths, or sample weights that do not fit the batch.
    """
    from dlkit.training.data import num_samples  # data imports nothing from here

    rows = num_samples(x, y)
    weight = validation.sample_weight(weight, rows)
    weight = np.ones(rows, np.float32) if weight is None else weight
    y = np.zeros(rows, np.float32) if y is None else y
    batch = Batch(x, y, weight, np.ones(rows, np.float32))
    if jax.process_count() > 1:
        sharding = devices.batch_sharded(mesh)
        return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, a), batch)
    return jax.device_put(batch, devices.rows_sharding(mesh, rows))


def in_flight(placed) -> InFlight:
    """The bound on programs in flight for a placed data set: 2 when fed from the host, none when resident.

    Args:
      placed: the ``Placed`` data set.

    Returns:
      An ``InFlight``.
    """
    return InFlight(None if placed.resident else 2)


class InFlight:
    """At most ``depth`` dispatched programs not yet finished: the host gathers and sends the next
    batches while the devices run, but never runs ahead by more (each program's batches wait
    in device memory until it runs).

    Args:
      depth: programs allowed in flight; ``None`` for no bound (resident data: a program waiting
        holds no batch of its own).
    """

    def __init__(self, depth: Optional[int] = 2):
        self.depth, self.pending = depth, collections.deque()

    def add(self, done: jax.Array) -> None:
        """Record a dispatched program by its ``done`` output; wait for the oldest beyond ``depth``.

        Args:
          done: a small output of the program, ready when the program has run.
        """
        if self.depth is None:
            return
        self.pending.append(done)
        while len(self.pending) > self.depth:
            self.pending.popleft().block_until_ready()
