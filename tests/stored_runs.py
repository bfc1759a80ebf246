"""Tiny stored MNIST runs for the specs of the results view, the claims and the report.

Runs are written through the store's API in the runner's format (``lth_jax.reproduction.mnist.Settings``,
its plan and trial layout, the judge's own summary of made-up accuracy curves), so each builds
in milliseconds and the expected numbers are read back from what was stored, never typed in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from lth_jax import runner, store
from lth_jax.reproduction import mnist


def curves(trials: list[runner.Trial], evals: int, eval_every: int, knee: dict[str, int],
           plateau: dict[str, float], diverge: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Per trial, a test-accuracy curve that rises until ``knee[role]`` evaluations (one more for
    odd trials) and then stays at ``plateau[role]``, so footnote 5 finds it converged; a role in
    ``diverge`` turns NaN from that step on."""
    acc, div = [], []
    for i, t in enumerate(trials):
        k = knee[t.role] + i % 2
        a = np.array([plateau[t.role] - 0.05 * max(0.0, 1 - (e + 1) / k) for e in range(evals)])
        d = (diverge or {}).get(t.role, -1)
        if d >= 0:
            a[d // eval_every:] = np.nan
        acc.append(a)
        div.append(d)
    return {"curves/accuracy": np.asarray(acc, np.float32), "curves/loss": np.zeros((len(trials), evals), np.float32),
            "curves/diverged_at": np.asarray(div, np.int32)}


def store_run(root: Path, settings: mnist.Settings, levels: dict[Any, dict[str, Any]]) -> Path:
    """A run as the runner stores it. ``levels`` maps a one-shot percent, or an iterative round
    number, to the :func:`curves` arguments of that level."""
    lt = settings.lottery()
    path = store.open_run(root, lt.hashed(), prefix=settings.mode, extra=lt.unhashed())
    plan = runner.plan(lt)
    totals = plan[0].counts
    for key, spec in levels.items():
        level = next(lv for lv in plan if lv.value == key) if settings.mode == "oneshot" else plan[key]
        trials = runner.layout(lt.procedure, level)
        out = curves(trials, settings.iterations // settings.eval_every, settings.eval_every, **spec)
        hidden = list(totals)[:-1]
        metrics = {"order": level.order, "level_id": level.level_id, "percent_nominal": level.value,
                   "percent_hidden": 100 * sum(level.counts[n] for n in hidden) / sum(totals[n] for n in hidden),
                   "percent_overall": 100 * sum(level.counts.values()) / sum(totals.values()),
                   "weights": level.counts, "weights_total": sum(level.counts.values()),
                   "expected_weights": level.counts, "seconds": 1.0, "device": "cpu",
                   **lt.judge.summarize(out, trials)}
        store.save_level(path, level.name, out, metrics)
    return path


def write_manifest(root: Path, study: str, mode: str, preset: str, groups: list[tuple[str, mnist.Settings]],
                   figures: tuple[int, ...], command: str) -> Path:
    """A study manifest naming one stored run per group, as ``experiments.studies`` writes it."""
    path = root / "manifests" / f"{study}-{mode}-{preset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(path, {"study": study, "mode": mode, "preset": preset, "figures": list(figures),
                            "command": command,
                            "groups": [{"label": label, "run": mnist.run_dir(s, ".").name,
                                        "settings": dataclasses.asdict(s)} for label, s in groups]})
    return path


def converging(roles: tuple[str, ...], knee: int, plateau: float) -> dict[str, Any]:
    """The :func:`curves` arguments of a level where every role in ``roles`` behaves alike."""
    return {"knee": dict.fromkeys(roles, knee), "plateau": dict.fromkeys(roles, plateau)}
