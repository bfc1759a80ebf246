"""Process-level XLA settings for the drivers (never set by the library itself)."""

from __future__ import annotations

import os

import jaxlib

NO_YNN = "--xla_cpu_experimental_ynn_fusion_type="


def speed_up_xla_cpu() -> bool:
    """Switch off XLA's YNN fusions on the CPU. Call before the first jax computation
    (importing jax does not start its backend; running anything does).

    On jaxlib 0.10 they turn the XOR net's many tiny reductions into library calls
    that cost 3-4x the plain loops (benchmarks/xor_throughput.py), and make vmapped
    LeNet matmuls ~20% slower (benchmarks/mnist_throughput.py). The flag is added only
    on jaxlib versions known to have it, because an unknown XLA flag aborts the process,
    and it changes nothing on a GPU. Returns whether it was added.
    """
    current = os.environ.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in current or not jaxlib.__version__.startswith("0.10."):
        return False
    os.environ["XLA_FLAGS"] = f"{current} {NO_YNN}".strip()
    return True
