"""The drivers' device and host flags: which devices the trial axis is split across, and the
processes of a multi-host run (``jax.distributed``).

    python -m experiments.mnist --devices=4 ...                       # 4 of this machine's devices
    python -m experiments.mnist --coordinator_address=host0:1234 --num_processes=2 --process_id=0 ...

``--coordinator_address``, ``--num_processes`` and ``--process_id`` go to
``jax.distributed.initialize``. Left unset they take ``$JAX_COORDINATOR_ADDRESS``,
``$JAX_NUM_PROCESSES`` and ``$JAX_PROCESS_ID``; with none of those either, a cluster launcher
JAX detects by itself (SLURM with several tasks, Open MPI) starts the processes as JAX
documents, and otherwise the run is one process. Every process runs the same command; the mesh
spans all their devices; only process 0 writes results (:func:`lth_jax.devices.is_writer`).
"""

from __future__ import annotations

import os

import jax

from experiments import cli

ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


def define_flags(budget: bool = True) -> None:
    """The device flags; ``budget``: also ``--memory_budget_mb`` (drivers whose runs it chunks)."""
    cli.define_flag("devices", int | None, None, "Devices the chunks of trials train on, whole chunks a device "
                    "(default: all; results do not depend on it; a program of one chunk uses one device"
                    + (", so lower --memory_budget_mb for more chunks)." if budget else ")."), min=1)
    if budget:
        cli.define_flag("memory_budget_mb", int | None, None, "Device memory a chunk of trials may use (default: "
                        "40 percent of an accelerator's, 2048 on a CPU); it decides the chunks, so changing it can "
                        "change the last bits, like any change of a program's width.", min=1)
    cli.define_flag("coordinator_address", str | None, None, "Multi-host: host:port of process 0 (default: "
                    "$JAX_COORDINATOR_ADDRESS).")
    cli.define_flag("num_processes", int | None, None, "Multi-host: number of processes (default: "
                    "$JAX_NUM_PROCESSES).", min=1)
    cli.define_flag("process_id", int | None, None, "Multi-host: this process's index (default: $JAX_PROCESS_ID).",
                    min=0)


def _given(name: str, kind: type) -> object | None:
    value = getattr(cli.FLAGS, name)
    if value is None and os.environ.get(ENV[name]):
        try:
            value = kind(os.environ[ENV[name]])
        except ValueError:
            raise cli.UsageError(f"--{name}: ${ENV[name]}={os.environ[ENV[name]]!r} is not a {kind.__name__}") from None
    return value


def _launched_by_a_cluster() -> bool:
    """A launcher JAX detects by itself started several tasks (SLURM, Open MPI)."""
    return int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 or "OMPI_COMM_WORLD_SIZE" in os.environ


def start() -> int | None:
    """Join the other processes when asked to, then check ``--devices`` against the devices all
    processes have together; returns the device count for the library call (None: all)."""
    given = {name: _given(name, kind) for name, kind in
             (("coordinator_address", str), ("num_processes", int), ("process_id", int))}
    if any(v is not None for v in given.values()):
        missing = [f"--{k}" for k, v in given.items() if v is None]
        cli.check(not missing, "coordinator_address", f"a multi-host run needs all three flags; missing "
                  f"{', '.join(missing)}")
        cli.check(given["process_id"] < given["num_processes"], "process_id",
                  f"must be below --num_processes={given['num_processes']}, not {given['process_id']}")
        jax.distributed.initialize(**given)
    elif _launched_by_a_cluster():
        jax.distributed.initialize()
    devices = cli.FLAGS.devices
    cli.check(devices is None or devices <= jax.device_count(), "devices",
              f"this run sees {jax.device_count()} device(s), not {devices}")
    return devices
