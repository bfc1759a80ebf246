"""One process of a two-process run on localhost (tests/test_distributed.py): joins the others
through jax.distributed (2 CPU devices each, set by the test's XLA_FLAGS), runs a tiny
iterative MNIST lottery on synthetic data on all 4 devices (6 trials a level in 3 chunks of 2:
two trained by process 0, one by process 1, every chunk shared with both), and prints the
chunks it trained (``trained N``) and "done".

    python tests/distributed_worker.py ROOT PORT PROCESS_ID [KILL_AFTER_LEVEL | fail_write]

With KILL_AFTER_LEVEL, process 1 dies (os._exit) right after that level is stored: a kill mid-run.
With ``fail_write``, process 0 cannot write round 1 (as on a full disk).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import jax  # noqa: E402
from conftest import synthetic_mnist  # noqa: E402

from lth_jax import programs, runner, store  # noqa: E402
from lth_jax.reproduction import mnist  # noqa: E402

TINY = dict(mode="iterative", hidden=(16, 8), iterations=200, eval_every=50, lr=0.2, seeds=(0, 1), reinit=1,
            shuffle=1, random=0, min_remaining=60.0, average_over=50, stable_for=50)
BUDGET_MB = 4  # 2 trials a chunk (1.6 MB a trial)


def main() -> None:
    root, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    extra = sys.argv[4] if len(sys.argv) > 4 else None
    kill_after = int(extra) if extra and extra.isdigit() else None
    if extra == "fail_write":
        save = store.save_level

        def full_disk(path, name, *args, **kw):
            if name == "r01":
                raise OSError(28, "No space left on device")
            return save(path, name, *args, **kw)

        store.save_level = full_disk
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid,
                               initialization_timeout=60)
    assert jax.device_count() == 4 and jax.local_device_count() == 2

    def after_level(level, metrics):
        if kill_after is not None and pid == 1 and level.order == kill_after:
            os._exit(3)

    trained = []
    train = programs.Program._train

    def counted(self, c, data, steps, how, device=None):
        trained.append(device)
        return train(self, c, data, steps, how, device)

    programs.Program._train = counted
    runner.run(mnist.Settings(**TINY).lottery(), synthetic_mnist(256, 128), root, after_level=after_level,
               memory_budget_mb=BUDGET_MB)
    assert all(d is not None and d.process_index == pid for d in trained)  # its own devices only
    print(f"trained {len(trained)}", flush=True)
    print("done", flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
