"""What a run costs: seconds per LeNet-300-100 seed-step, measured from stored runs, and the
work a set of MNIST settings still has to do (for plans, ``--dry_run`` and the report).

A "LeNet seed-step" is one network trained one mini-batch of 100 (test accuracy every 100
steps included), scaled by the network's weights over LeNet-300-100's 266,200.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lth_jax import store
from lth_jax.reproduction import mnist
from lth_jax.store import ondisk

LENET_WEIGHTS = 266_200
# Seconds per LeNet seed-step when nothing is measured yet:
# - cpu: 5 tickets x 1000 iterations in 32.3 s on the 2-core CPU shared with ~5 other jobs
#   (compilation included): 6.5 ms. Quiet machines are faster.
# - gpu: a target for one H100 (35 networks x 50,000 iterations in under 60 s), NOT a measurement.
DEFAULT: dict[str, float] = {"cpu": 32.3 / (5 * 1000), "gpu": 60.0 / (35 * 50_000)}
SOURCE: dict[str, str] = {
    "cpu": "default: 6.5 ms per LeNet seed-step, measured on the shared 2-core CPU",
    "gpu": "default: a target for one H100 (35 networks x 50,000 iterations in 60 s), not measured"}
# Fixed costs the per-step rate does not cover (assumed, not measured): compiling and setting up
# each level's programs, and starting a step (imports, data, first compilation).
LEVEL_SECONDS: dict[str, float] = {"cpu": 3.0, "gpu": 2.0}
STEP_SECONDS: dict[str, float] = {"cpu": 20.0, "gpu": 30.0}
MIN_MEASURED = 2000.0  # LeNet seed-steps a stored level needs before its time counts (compilation dominates below)


def human(seconds: float) -> str:
    """``42 s``, ``17 min``, ``2.5 h`` (``?`` when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _weights(hidden: Sequence[int]) -> int:
    widths = (784, *hidden, 10)
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False))


def _add(out: dict[str, list[float]], device: str, seconds: float, work: float) -> None:
    if work >= MIN_MEASURED and seconds > 0:
        out.setdefault(device, []).append(seconds / work)


def measured(runs_dir: str | Path) -> dict[str, list[float]]:
    """Seconds per LeNet seed-step of every stored MNIST level under ``runs_dir``, per device.
    A level trained in a group counts once, with the group's time over the trials it trained.
    Records that do not verify are skipped (they are recomputed by their run, not trusted)."""
    out: dict[str, list[float]] = {}
    seen = set()
    programs: dict[str, list[Any]] = {}  # a program's levels: their seconds add up to its time
    for settings_file in Path(runs_dir).rglob(ondisk.SETTINGS):
        run = settings_file.parent
        try:
            s = store.load_settings(run)["settings"]
            scale, iterations = _weights(s["hidden"]) / LENET_WEIGHTS, s["iterations"]
        except (KeyError, TypeError, store.StoreError):
            continue
        for name in store.levels(run):
            if name == ondisk.INIT:
                continue
            m = store.load_level(run, name, arrays=False).metrics
            if "seconds" not in m or "roles" not in m or "copied_from" in m:  # a copy is its source's time
                continue
            group, device = m.get("group"), "cpu" if m.get("device", "cpu") == "cpu" else "gpu"
            k = m.get("rewind_step", 0)
            steps = (iterations - k) * scale  # a rewound level trains k..end
            stopped = [r["stop_step"] for r in m.get("trials", []) if "stop_step" in r]
            if stopped:  # trainings stopped at convergence: each trained to its own stop
                work = (sum(stopped) - k * len(stopped)) * scale
                if group and "program" in group:  # the program's work: its levels' work added up
                    entry = programs.setdefault(group["program"], [0.0, 0, group, 0.0, device, True])
                    entry[0], entry[1], entry[3] = entry[0] + m["seconds"], entry[1] + 1, entry[3] + work
                else:
                    _add(out, device, m["seconds"], work)
                continue
            if group and "program" in group:
                entry = programs.setdefault(group["program"], [0.0, 0, group, steps, device, False])
                entry[0], entry[1] = entry[0] + m["seconds"], entry[1] + 1
                continue
            if group:  # stored before levels merged: one group per level, its time on every member
                key = (tuple(group["members"]), name)
                if key in seen:
                    continue
                seen.add(key)
                seconds, trials = group["seconds"], group["trained_trials"]
            else:
                seconds, trials = m["seconds"], sum(r["trials"] for r in m["roles"].values())
            _add(out, device, seconds, trials * steps)
    for seconds, found, group, steps, device, summed in programs.values():
        if found == len(group["members"]):  # a program cut short by a kill is not a whole program's time
            _add(out, device, seconds, steps if summed else group["trained_trials"] * steps)
    return out


def model(runs_dir: str | Path | None) -> dict[str, Any]:
    """Seconds per LeNet seed-step per device: the median of what is stored, else the default;
    ``source`` says which."""
    found = measured(runs_dir) if runs_dir and Path(runs_dir).is_dir() else {}
    out: dict[str, Any] = {"source": {}}
    for device in ("cpu", "gpu"):
        if found.get(device):
            out[device] = statistics.median(found[device])
            out["source"][device] = (f"median of {len(found[device])} stored levels under {runs_dir} "
                                     f"({1000 * out[device]:.3g} ms per LeNet seed-step)")
        else:
            out[device] = DEFAULT[device]
            out["source"][device] = SOURCE[device]
    return out


def seed_steps(settings: Sequence[mnist.Settings], root: str | Path | None = None) -> dict[str, float]:
    """What ``settings`` still need to train, in LeNet seed-steps, counting levels already
    stored under ``root`` as done and the unpruned level shared by settings that differ only in
    their pruning rate once."""
    total, done, seen, levels, levels_left = 0.0, 0.0, set(), 0, 0
    for s in settings:
        scale = sum(mnist.weight_counts(s).values()) / LENET_WEIGHTS
        path = mnist.run_dir(s, root) if root is not None else None
        for level in mnist.plan(s):
            steps = s.iterations - (s.rewind_step if level.order else 0)  # late rewinding trains k..end
            cost = s.trials_per_level() * steps * scale
            key = (s.mode, s.hidden, s.std, s.seeds, s.iterations) if level.order == 0 else None
            if key is not None and key in seen:
                continue
            if key is not None:
                seen.add(key)
            total += cost
            levels += 1
            if path is not None and store.done(path, level.name):
                done += cost
            else:
                levels_left += 1
    return {"total": total, "remaining": total - done, "levels": levels, "levels_remaining": levels_left}


def seconds(need: dict[str, float], costs: dict[str, Any], device: str, remaining: bool = True) -> float:
    """Seconds on ``device`` for :func:`seed_steps`' ``need``."""
    work = need["remaining" if remaining else "total"]
    n = need["levels_remaining" if remaining else "levels"]
    if not n:
        return 0.0
    return work * costs[device] + n * LEVEL_SECONDS[device] + STEP_SECONDS[device]
