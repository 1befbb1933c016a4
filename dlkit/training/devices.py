"""Where the steps run: a data-parallel mesh over all local devices, and the
XLA options dlkit compiles its steps with.

Batches are split along the ``'batch'`` mesh axis; params and optimizer state
are replicated. On one device this is plain single-device execution, and the
same code uses every core of a TPU.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"

# On the CPU, XLA's default YNNPACK fusion runs standalone VALID convolutions
# several times slower than its classic path (measured: ~33 vs ~164 GFLOP/s on
# Zen 4; the MNIST CNN's training epoch 2.1 s -> 0.75 s), while on a CPU with
# AVX-512 its matmuls are faster (Zen 4: an LSTM's training epoch 12% faster than
# with YNNPACK off). So there dlkit keeps YNNPACK for single dots only, where a
# jaxlib lacks that type turns it off, and does so for its training programs only
# (YNNPACK off made the CNN's inference forward pass ~4x slower), per executable,
# never globally. 512-bit vectors for XLA's own loops: the LSTM epoch 8% faster
# again on Zen 4, the CNN unchanged. On a CPU with AVX2 but no AVX-512 (Zen 3)
# YNNPACK's matmuls are the slower ones (the LSTM's 128x156x512 step matmul 268 vs
# 194 us; its training epoch 4% slower, the CNN's the same), so YNNPACK is off.
# ``Trainer(compiler_options={})`` keeps XLA's defaults.
_CPU_OPTIONS = ({"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
                 "xla_cpu_prefer_vector_width": "512"},
                {"xla_cpu_experimental_ynn_fusion_type": ""})
_CPU_OPTIONS_WITHOUT_AVX512 = ({"xla_cpu_experimental_ynn_fusion_type": ""},)


@functools.cache
def _cpu_flags(path: str = "/proc/cpuinfo") -> Optional[frozenset]:
    """The host CPU's feature flags (Linux), or ``None`` where they cannot be read. Read once per path."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _cpu_candidates() -> tuple:
    flags = _cpu_flags()
    if flags is not None and "avx2" in flags and "avx512f" not in flags:
        return _CPU_OPTIONS_WITHOUT_AVX512
    return _CPU_OPTIONS


def make_mesh(devices: Optional[list] = None) -> Mesh:
    """A one-axis data-parallel mesh, the axis named ``'batch'``.

    Args:
      devices: the devices to use; ``None`` for every local device.

    Returns:
      A ``jax.sharding.Mesh`` over ``devices``.
    """
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (BATCH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of params and optimizer state: a full copy on every device.

    Args:
      mesh: the devices.

    Returns:
      ``NamedSharding(mesh, PartitionSpec())``.
    """
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: split along its first axis over the ``'batch'`` mesh axis.

    Args:
      mesh: the devices.

    Returns:
      ``NamedSharding(mesh, PartitionSpec('batch'))``.
    """
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


@functools.cache
def _accepted(backend: str, items: tuple) -> bool:
    """Whether this jaxlib compiles with these options (a newer one may drop a flag)."""
    try:
        fn = jax.jit(lambda v: v + 1, compiler_options=dict(items))
        fn(np.zeros(2, np.float32)).block_until_ready()
        return True
    except Exception:  # noqa: BLE001 - any refusal means "not supported here"
        return False


def default_compiler_options(backend: str) -> dict:
    """dlkit's per-backend XLA options: the first candidate this jaxlib accepts, else none.

    Args:
      backend: the platform the steps run on (``"cpu"``, ``"gpu"``, ``"tpu"``); only the CPU
        has candidates (see the comment above ``_CPU_OPTIONS``).

    Returns:
      The ``compiler_options`` dict for ``jax.jit`` (``{}`` for other backends).
    """
    for options in _cpu_candidates() if backend == "cpu" else ():
        items = tuple(sorted(options.items()))
        if _accepted(backend, items):
            return dict(items)
    return {}


def split(batch, mesh: Mesh):
    """Split a batch across the devices along its batch axis (inside a jitted program).

    A batch whose size does not divide by the number of devices runs on each device whole:
    padding it would change what batch normalization sees.

    Args:
      batch: a pytree of arrays, batch axis first.
      mesh: the devices.

    Returns:
      ``batch`` under a sharding constraint.
    """
    rows = jax.tree.leaves(batch)[0].shape[0]
    return jax.lax.with_sharding_constraint(batch, rows_sharding(mesh, rows))


def rows_sharding(mesh: Mesh, rows: int, leading: int = 0) -> NamedSharding:
    """A batch of ``rows`` rows split along its batch axis over the devices, or whole on each when
    ``rows`` does not divide by their number (see ``split``).

    Args:
      mesh: the devices.
      rows: rows per batch.
      leading: axes before the batch axis (1 for batches stacked ``(steps, rows, ...)``).

    Returns:
      The ``NamedSharding``.
    """
    if rows % mesh.size:
        return replicated(mesh)
    return NamedSharding(mesh, PartitionSpec(*[None] * leading, BATCH_AXIS))


SHARDINGS = ("replicated", "fsdp")


def state_shardings(state, mesh: Mesh, sharding: str):
    """Where each array of a training state lives: a full copy on every device (``"replicated"``,
    data parallelism), or split over them (``"fsdp"``: fully sharded data parallelism, Zhao et al.
    2023, "PyTorch FSDP"; Keras' ``ModelParallel`` with a layout per weight).

    Under ``"fsdp"`` every array of the parameters, the optimizer state and the other collections
    is split along its largest axis that divides by the number of devices (the first such axis on
    a tie); arrays without one (scalars, odd sizes) stay replicated. XLA gathers a weight where
    a step needs it whole and scatters its gradient back, so each device keeps ``1/n`` of the state
    between steps and the computation is that of ``"replicated"``.

    Args:
      state: the ``TrainState`` (or any pytree of arrays or shape structs).
      mesh: the devices.
      sharding: ``"replicated"`` or ``"fsdp"``.

    Returns:
      A pytree of ``NamedSharding`` with ``state``'s structure.
    """
    whole = replicated(mesh)
    if sharding == "replicated":
        return jax.tree.map(lambda _: whole, state)

    def split(leaf):
        shape = getattr(leaf, "shape", ())
        axes = [i for i, size in enumerate(shape) if size % mesh.size == 0 and size >= mesh.size]
        if not axes or mesh.size == 1:
            return whole
        axis = max(axes, key=lambda i: (shape[i], -i))
        return NamedSharding(mesh, PartitionSpec(*[BATCH_AXIS if i == axis else None for i in range(len(shape))]))
    return jax.tree.map(split, state)


def on_first_process(write, what: str) -> None:
    """Run ``write`` on the first process only, the others waiting until it is done (a file all
    processes would otherwise write to the same path).

    Args:
      write: a function of no arguments that writes the file.
      what: names the barrier (and the file) for JAX's error messages.
    """
    if jax.process_count() == 1:
        write()
        return
    from jax.experimental import multihost_utils

    try:
        if jax.process_index() == 0:
            write()
    finally:  # a failed write still releases the others (the first process raises)
        multihost_utils.sync_global_devices(f"dlkit wrote {what}")

