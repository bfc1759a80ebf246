"""One process of a two-process run on localhost (tests/test_distributed.py): joins the others
through jax.distributed (2 CPU devices each, set by the test's XLA_FLAGS), runs a tiny
iterative MNIST lottery on synthetic data split across all 4 devices, and prints "done".

    python tests/distributed_worker.py ROOT PORT PROCESS_ID [KILL_AFTER_LEVEL]

With KILL_AFTER_LEVEL, process 1 dies (os._exit) right after that level is stored: a kill mid-run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import jax  # noqa: E402
from conftest import synthetic_mnist  # noqa: E402

from lth_jax import mnist, runner  # noqa: E402

TINY = dict(mode="iterative", hidden=(16, 8), iterations=200, eval_every=50, lr=0.2, seeds=(0, 1), reinit=1,
            shuffle=1, random=0, min_remaining=60.0, average_over=50, stable_for=50)


def main() -> None:
    root, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kill_after = int(sys.argv[4]) if len(sys.argv) > 4 else None
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid,
                               initialization_timeout=60)
    assert jax.device_count() == 4 and jax.local_device_count() == 2

    def after_level(level, metrics):
        if kill_after is not None and pid == 1 and level.order == kill_after:
            os._exit(3)

    runner.run(mnist.Settings(**TINY).lottery(), synthetic_mnist(256, 128), root, after_level=after_level)
    print("done", flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
