"""Presets of ``python -m experiments.xor_sweep`` (fields of :class:`lth_jax.reproduction.xor.Settings`).

``paper`` is the paper's section 2 (1000 networks per setting, 10,000 iterations) with the
calibrated choices the paper leaves open (the field defaults; see benchmarks/xor_calibration.md).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "smoke": {"trials": 50, "iterations": 1000},  # a pipeline check in seconds, not a reproduction
}
