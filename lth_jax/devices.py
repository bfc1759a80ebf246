"""Where the trials train: the devices a run uses, and the processes of a multi-host run.

Every training program of the runner is a vmap over a leading *trial* axis whose rows never
interact. A :class:`Placement` names the devices a run uses. The runner cuts a program's trials
into the chunks a one-device run cuts (:class:`lth_jax.programs.Program`) and every device
trains whole chunks, each the one-device program of that chunk (chunk ``j`` on device ``j mod
d``): one Python thread a device, the chunk's inputs committed there (:func:`on_device`;
jitted calls run where their inputs are, and JAX releases the GIL while a program runs, so the
devices work at once).

Why whole chunks rather than the trial axis split across the devices: XLA's kernels sum in an
order that can depend on the vmap width (measured on a CPU: vmapped MLP gradients at some widths
differ in the last bits from the same rows at others, and for tiny layers even a row's position
inside a width matters), so a trial's bits would depend on how many devices share its program.
Trained whole, every chunk is the same program whatever the device count, and a run on 1, 2, 3
or 4 devices stores the same bits (tests/test_devices.py). The trade-off: a program of one
chunk trains on one device; several devices help only when there are several chunks (a smaller
``memory_budget_mb`` makes more).

Several processes (``jax.distributed``): the placement holds every process's devices; inputs
are built on every process (they are a deterministic function of the settings); the chunks go
out in rounds of one a device (chunk ``i`` of a round to the process of the placement's
``i``-th device), each process trains its own on its devices with threads, and :func:`share`
gives every process every chunk of the round, so all of them store (process 0) and continue
with the same numbers. :func:`host` brings arrays back to every process (``process_allgather``
where an array spans processes, ``device_get`` otherwise).

"The same bits" holds within one XLA configuration: on a CPU the flag that makes the devices,
``--xla_force_host_platform_device_count``, by itself changes the bits of a one-device program
(measured on 2 cores with LeNet-300-100: 1 to 3 forced devices give one set of bits, 4 another,
5 and 8 a third), so a one-device reference for a forced-device run is made under the same flag.

:meth:`Placement.shard` and :meth:`Placement.replicate` split one program's trial axis across
the devices (SPMD, ``NamedSharding(mesh, P("trials"))``) for a trainer called with a
``placement`` of its own (benchmarks/scaling.py); the runner trains no program that way (its
bits would depend on the device count) and only replicates the data sets, once, so that every
device reads its own copy.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import pickle
import threading
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
    """The devices a run trains on, in order (the mesh order where a trainer splits one program
    across them: :meth:`shard`)."""

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


def padded(n: int, placement: Placement | None) -> int:
    """``n`` trials rounded up to whole shards of ``placement`` (``n`` itself on one device)."""
    return n if placement is None else placement.padded(n)


def split(devices: int | Sequence[Any] | Placement | None = None) -> Placement | None:
    """The devices a run's chunks train on, or None for one device (the chunks one after another
    in this thread, on the default device)."""
    chosen = devices if isinstance(devices, Placement) else placement(devices)
    return None if chosen.count == 1 else chosen


_COPIES: collections.OrderedDict = collections.OrderedDict()  # (id(array), device id) -> (array, copy)
_COPIES_LOCK = threading.Lock()
_KEEP = 16  # leaves of data sets kept on devices (a run reads one or two data sets)


def on_device(tree: PyTree, device: Any) -> PyTree:
    """``tree`` (the data sets a program reads) on ``device`` alone: an array already whole there
    (a replicated array's copy on it: :meth:`Placement.replicate`) as it is, without a copy;
    any other array put there once and kept for the next call (the last few)."""
    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array):
            if x.sharding.device_set == {device}:
                return x
            for s in x.addressable_shards:
                if s.device == device and s.data.shape == x.shape:
                    return s.data
        elif not isinstance(x, np.ndarray):
            return x
        key = (id(x), device.id)
        with _COPIES_LOCK:
            if key in _COPIES and _COPIES[key][0] is x:
                _COPIES.move_to_end(key)
                return _COPIES[key][1]
        copy = jax.device_put(x, device)
        with _COPIES_LOCK:
            _COPIES[key] = (x, copy)  # the original is held too, so its id is not reused
            while len(_COPIES) > _KEEP:
                _COPIES.popitem(last=False)
        return copy

    return jax.tree.map(leaf, tree)


def share(mine: dict[int, Any]) -> dict[int, Any]:
    """Every process's ``mine`` (picklable values by distinct keys, e.g. the chunks it trained),
    merged on every process (every process must call this together; one process: ``mine``)."""
    if jax.process_count() == 1:
        return dict(mine)
    data = np.frombuffer(pickle.dumps(mine, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int64(data.size))).reshape(-1)
    buffer = np.zeros(int(sizes.max()), np.uint8)
    buffer[:data.size] = data
    every = np.asarray(multihost_utils.process_allgather(buffer))  # (processes, longest)
    out: dict[int, Any] = {}
    for row, size in zip(every, sizes, strict=True):
        out.update(pickle.loads(row[:int(size)].tobytes()))  # our own processes' results
    return out


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
