"""Where the trial axis lives: a one-axis mesh of devices, the trials split across it.

Every training program of the runner is a vmap over a leading *trial* axis whose rows never
interact, so spreading the trials over devices needs no collective: a :class:`Placement` puts
the trial axis of the inputs on the mesh axis ``"trials"`` (``NamedSharding(mesh,
P("trials"))``) and everything else (the data sets) replicated (``P()``), and ``jax.jit``
partitions the program from those input shardings. The trial count of a program is padded to a
multiple of the device count by repeating a row (trials are independent, so a copy changes no
other row) and the padding is dropped from the results (:func:`lth_jax.programs.chunks`).

The same code serves several processes (``jax.distributed``): the mesh holds every process's
devices, inputs are built on every process (they are a deterministic function of the
settings) and each process fills only its own shards (``jax.make_array_from_callback``);
:func:`host` brings results back to every process (``process_allgather`` where an array spans
processes, ``device_get`` otherwise).

Numbers: a program split over d devices runs, on each, the same vmapped computation over
``n / d`` trials. XLA's CPU kernels sum in an order that can depend on that width, so for some
networks the last bits differ from a one-device run over ``n`` trials; LeNet-300-100's weights
do not (tests/test_devices.py measures both).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PyTree = Any
AXIS = "trials"


@dataclasses.dataclass(frozen=True)
class Placement:
    """The devices the trial axis is split across (in mesh order)."""

    devices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("a placement needs at least one device")

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def mesh(self) -> Mesh:
        return Mesh(np.asarray(self.devices, dtype=object), (AXIS,))

    def padded(self, n: int) -> int:
        """``n`` rounded up to a multiple of the device count."""
        return self.count * math.ceil(n / self.count)

    def shard(self, tree: PyTree) -> PyTree:
        """``tree`` (leading axis: the trials, a multiple of :attr:`count`) split across the devices.
        PRNG key arrays keep their type."""
        return _place(tree, NamedSharding(self.mesh, P(AXIS)), self.count)

    def replicate(self, tree: PyTree) -> PyTree:
        """``tree`` whole on every device (the data sets every trial reads)."""
        return _place(tree, NamedSharding(self.mesh, P()), 1)

    def signature(self) -> tuple:
        """What a compiled program depends on: the devices, by id."""
        return tuple(d.id for d in self.devices)


def placement(devices: int | Sequence[Any] | None = None) -> Placement:
    """The first ``devices`` devices of ``jax.devices()`` (every process's, in order), those
    devices, or all of them (None). Raises ``ValueError`` for a count this machine does not have."""
    every = jax.devices()
    if devices is None:
        return Placement(tuple(every))
    if isinstance(devices, int):
        if not 1 <= devices <= len(every):
            raise ValueError(f"devices must be between 1 and the {len(every)} this run sees, not {devices}")
        return Placement(tuple(every[:devices]))
    return Placement(tuple(devices))


def split(devices: int | Sequence[Any] | Placement | None = None) -> Placement | None:
    """The placement a program's trials are split across, or None for one device (the programs
    as they were before there were placements)."""
    chosen = devices if isinstance(devices, Placement) else placement(devices)
    return None if chosen.count == 1 else chosen


def _place(tree: PyTree, sharding: NamedSharding, multiple: int) -> PyTree:
    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array) and x.sharding == sharding:  # already there: no round trip
            return x
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(leaf(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        a = np.asarray(host(x))
        if multiple > 1 and a.shape[0] % multiple:
            raise ValueError(f"a leading axis of {a.shape[0]} trials does not split over {multiple} devices "
                             "(pad it first: Placement.padded)")
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(leaf, tree)


def host(tree: PyTree) -> PyTree:
    """``tree`` as numpy arrays on this host, whole: arrays spread over several processes are
    gathered from all of them (every process must call this together), others fetched."""
    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return x

    return jax.device_get(jax.tree.map(leaf, tree))


def is_writer() -> bool:
    """Whether this process writes results: process 0 (the only one without jax.distributed)."""
    return jax.process_index() == 0


class WriterFailed(RuntimeError):
    """Raised on the other processes of a multi-host run when process 0 could not write."""


def written(tag: str, write: Callable[[], Any]) -> None:
    """``write()`` (a store write) on the writing process only; the other processes of a
    multi-host run wait until it is done, so what they read next is on disk, and stop with
    :class:`WriterFailed` if it failed (process 0 raises its own error) instead of waiting for a
    write that will never come. One process: just ``write()``."""
    if jax.process_count() == 1:
        write()
        return
    error = None
    if is_writer():
        try:
            write()
        except Exception as e:  # every process must reach the collective below, the writer too
            error = e
    failed = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if error is not None:
        raise error
    if failed:
        raise WriterFailed(f"process 0 could not write {tag}; see its output")
