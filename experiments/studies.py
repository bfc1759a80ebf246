"""Section 6 of the paper, the parameter studies (Figures 11-15), as settings of the MNIST driver.

    python -m experiments.studies --study=all --preset=paper         # every figure of section 6 (a GPU job)
    python -m experiments.studies --study=init_std                    # Figures 11-12, one-shot
    python -m experiments.studies --study=init_std --mode=iterative   # the iterative variant ("similar")
    python -m experiments.studies --study=sizes                       # Figures 13 (one-shot) and 14 (iterative)
    python -m experiments.studies --study=rates                       # Figure 15
    python -m experiments.studies --study=all --preset=cpu --dry_run  # the plan and its estimated cost

Every group of five winning tickets (``--seeds``; no controls: Figures 11-15 show tickets only)
is one :class:`lth_jax.experiment.Settings` stored exactly like ``experiments.mnist`` stores it
(``<out_dir>/<mode>-<hash>/``, one record per level, resumable; the same settings run from
either entry point land in the same directory). Groups that share a network shape and a
training schedule train together: at each level, the trials of every group of the study
form ONE vmapped program (identical trials, e.g. the unpruned round shared by every rate of
Figure 15, are trained once), split into chunks of at most ``--memory_budget_mb`` of
estimated device memory when they do not fit.

A trial whose loss turns NaN/inf stops updating from that step (``lth_jax.train``), is
stored with that step (``curves/diverged_at``) and has no accuracy from then on; the other
trials of the same program are unaffected (tests/test_studies.py checks both). Tables
and plots show such trials as diverged.

Decisions (see also the report):

- Sizes (Figures 13-14): "networks whose sizes were multiples of the original network
  size", legend "300-100 means hidden layers of 300 and 100 units": k x (300-100) for
  k = 1..5, i.e. 300-100, 600-200, 900-300, 1200-400, 1500-500. The text's one
  mention of "LeNet-600-300" is not a multiple of 300-100; we read it as 600-200
  (``--sizes=600-300`` runs it anyway). All at std 0.05 (the captions).
- Rates (Figure 15): 10%..70% of each hidden layer's remaining weights a round (output
  layer at half the rate, as everywhere). Each chain runs until the first level with
  under 5.5% of all weights (the paper's "about 5%", its 5.50% level); the number of
  trainings that extracts that ticket is the level's round number, computed from the
  exact survivor counts (:func:`trainings_to_about_5`): 20% -> 14 and 10% -> 28, the
  two numbers the paper states.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from experiments import cli

_fail = cli.failer("studies")
_parse = cli.flags_parser("studies")

STUDIES: tuple[str, ...] = ("init_std", "sizes", "rates")
STDS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
SIZES: tuple[tuple[int, int], ...] = tuple((300 * k, 100 * k) for k in range(1, 6))
RATES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SIZES_STD = 0.05           # Figures 13-14's captions
ABOUT_5_PERCENT = 5.5      # Figure 15's chains stop at the first level under this percent of all weights
LENET_WEIGHTS = 266_200    # weights of LeNet-300-100: the unit of the cost model

# Which paper figure each (study, mode) draws.
FIGURES: dict[tuple[str, str], tuple[int, ...]] = {
    ("init_std", "oneshot"): (11, 12), ("init_std", "iterative"): (11, 12),
    ("sizes", "oneshot"): (13,), ("sizes", "iterative"): (14,), ("rates", "iterative"): (15,),
}
# The paper's variants (issue 4): one-shot for the stds (iterative behind --mode), both for sizes.
PAPER_MODES: dict[str, tuple[str, ...]] = {"init_std": ("oneshot",), "sizes": ("oneshot", "iterative"),
                                           "rates": ("iterative",)}

_PAPER_LEVELS = (100, 90, 75, 55, 40, 35, 25, 15, 10, 7.5, 5, 3.5, 2)

# Each preset: training and analysis settings shared by every group, plus the study axes.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's settings (sections 3.1, 4.1, 6; footnote 5): five tickets a group, 50,000 iterations.
    "paper": {"iterations": 50_000, "eval_every": 100, "seeds": 5, "average_over": 1000, "stable_for": 1000,
              "levels": _PAPER_LEVELS, "min_remaining": 1.0, "stds": STDS, "sizes": SIZES, "rates": RATES,
              "rates_iterations": 50_000, "base_hidden": (300, 100)},
    # What fits a few minutes of 2 shared CPU cores per study: 2 tickets a group, 1000 iterations
    # (500 for the rate chains), footnote 5's windows scaled to 300 iterations (as experiments.mnist's
    # smoke preset), four one-shot levels, iterative sizes down to ~41%, three rates, two sizes.
    "cpu": {"iterations": 1000, "eval_every": 100, "seeds": 2, "average_over": 300, "stable_for": 300,
            "levels": (100, 50, 20, 8), "min_remaining": 45.0, "stds": STDS, "sizes": SIZES[:2],
            "rates": (0.2, 0.5, 0.7), "rates_iterations": 500, "base_hidden": (300, 100)},
    # A pipeline check in seconds: narrow networks (multiples of 30-10), 200 iterations.
    "smoke": {"iterations": 200, "eval_every": 50, "seeds": 2, "average_over": 100, "stable_for": 100,
              "levels": (100, 50, 20), "min_remaining": 45.0, "stds": (0.1, 0.8), "sizes": ((30, 10), (60, 20)),
              "rates": (0.2, 0.7), "rates_iterations": 200, "base_hidden": (30, 10)},
}


# ---------------------------------------------------------------- the groups of a study


class Group(NamedTuple):
    """One line of a study's figure: a label and the settings of its winning tickets."""

    label: str
    settings: Any  # lth_jax.experiment.Settings


def _common(preset: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    cfg = {**preset, **{k: v for k, v in overrides.items() if v is not None}}
    return {"iterations": cfg["iterations"], "eval_every": cfg["eval_every"],
            "seeds": tuple(range(cfg.get("first_seed", 0), cfg.get("first_seed", 0) + cfg["seeds"])),
            "reinit": cfg.get("reinit", 0), "shuffle": cfg.get("shuffle", 0),
            "average_over": cfg["average_over"], "stable_for": cfg["stable_for"], "lr": cfg.get("lr", 0.05),
            "optimizer": cfg.get("optimizer", "sgd"), "batch_size": cfg.get("batch_size", 100)}


def study_groups(study: str, mode: str, preset: str = "paper", **overrides: Any) -> list[Group]:
    """The groups (labelled settings) of ``study`` in ``mode`` under ``preset``; keyword
    overrides replace preset entries (``seeds`` is a count; ``stds``, ``sizes``, ``rates``
    the study axes; any :class:`Settings` field of the common part)."""
    from lth_jax.experiment import Settings

    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")
    if mode not in ("oneshot", "iterative"):
        raise ValueError(f"mode must be oneshot or iterative, not {mode!r}")
    if study == "rates" and mode != "iterative":
        raise ValueError("the rates study (Figure 15) is iterative only")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    common = _common(cfg, {})
    if common["iterations"] <= 0 or not cfg["seeds"] or cfg["seeds"] < 1:
        raise ValueError("iterations and seeds must be positive")
    per_mode = {"levels": tuple(cfg["levels"])} if mode == "oneshot" else {"min_remaining": cfg["min_remaining"]}
    base = tuple(cfg["base_hidden"])
    if study == "init_std":
        return [Group(f"std {s:g}", Settings(mode=mode, hidden=base, std=s, **common, **per_mode))
                for s in cfg["stds"]]
    if study == "sizes":
        return [Group("-".join(map(str, h)), Settings(mode=mode, hidden=tuple(h), std=cfg.get("sizes_std", SIZES_STD),
                                                      **common, **per_mode)) for h in cfg["sizes"]]
    common["iterations"] = cfg.get("rates_iterations") or common["iterations"]
    return [Group(f"{round(100 * r):d}% a round",
                  Settings(mode="iterative", hidden=base, std=cfg.get("std", 0.1), rate=r,
                           min_remaining=cfg.get("rates_min_remaining", ABOUT_5_PERCENT), **common))
            for r in cfg["rates"]]


def trainings_to_about_5(rate: float, hidden: Sequence[int] = (300, 100), output_rate_factor: float = 0.5,
                         target: float = ABOUT_5_PERCENT) -> dict[str, float]:
    """How many trainings iterative pruning at ``rate`` needs to extract a winning ticket of
    about 5% of the network (section 4.1: 20% -> 14; section 6.3: 10% -> 28).

    The ticket is the first level whose exact survivor count (the driver's rounding: each
    round removes round(rate * remaining) per hidden layer, half the rate in the output
    layer) is under ``target`` percent of all weights; each round before it is one
    training of the network, so the count is its round number. Returns the count and the
    ticket's percent remaining (overall and of the hidden layers).
    """
    from lth_jax.experiment import Settings, plan

    levels = plan(Settings(mode="iterative", hidden=tuple(hidden), rate=rate, output_rate_factor=output_rate_factor,
                           min_remaining=target))
    last, first = levels[-1], levels[0]
    total = sum(first.counts.values())
    hidden_names = list(first.counts)[:-1]
    return {"rate": rate, "trainings": len(levels) - 1,
            "percent_overall": 100.0 * sum(last.counts.values()) / total,
            "percent_hidden": 100.0 * sum(last.counts[n] for n in hidden_names) / sum(first.counts[n]
                                                                                        for n in hidden_names)}


# ---------------------------------------------------------------- training groups together


def signature(settings: Any) -> tuple:
    """Settings that can share one compiled program: same shape and training schedule."""
    s = settings
    return (s.mode, s.hidden, s.optimizer, s.lr, s.batch_size, s.iterations, s.eval_every)


def trial_bytes(settings: Any, test_examples: int = 10_000) -> int:
    """Estimated device bytes one trial needs while training: weights, gradients and updates
    (+ optimiser slots) in float32, its masks, and the activations of a test-set evaluation."""
    widths = (784, *settings.hidden, 10)
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=False))
    slots = {"sgd": 0, "momentum": 1, "adam": 2}.get(settings.optimizer, 2)
    units = sum(widths[1:])
    return int(4 * params * (3 + slots) + params + 4 * units * (test_examples + 3 * settings.batch_size))


def default_budget_mb() -> int:
    """Device memory the training chunks may use: 40% of an accelerator's, 2 GB on a CPU."""
    import jax

    dev = jax.devices()[0]
    try:
        limit = (dev.memory_stats() or {}).get("bytes_limit")
    except Exception:  # backends without memory_stats
        limit = None
    return int(0.4 * limit / 2**20) if limit and dev.platform != "cpu" else 2048


def chunks(n: int, per_chunk: int) -> list[np.ndarray]:
    """``range(n)`` split into equal-size chunks of at most ``per_chunk`` (the last padded
    by repeating its first index, so every chunk compiles to the same program)."""
    k = max(1, math.ceil(n / max(1, per_chunk)))
    size = math.ceil(n / k)
    out = []
    for c in range(k):
        idx = np.arange(c * size, min(n, (c + 1) * size))
        out.append(np.concatenate([idx, np.full(size - idx.size, idx[0])]) if idx.size < size else idx)
    return out


def _row_digests(params: Any, masks: Any, keys: Any) -> list[str]:
    """One digest per trial row of everything that determines its training."""
    import jax

    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get((params, masks)))]
    leaves.append(np.asarray(jax.device_get(jax.random.key_data(keys))))
    n = leaves[0].shape[0]
    out = []
    for i in range(n):
        h = hashlib.sha256()
        for leaf in leaves:
            h.update(np.ascontiguousarray(leaf[i]).tobytes())
        out.append(h.hexdigest())
    return out


class GroupProgress:
    """Hooks :func:`run_groups` calls (the CLI draws progress bars); no-ops here."""

    def level_start(self, index: int, depth: int, runs: int, trials: int, steps: int) -> None: ...
    def steps(self, n: int) -> None: ...
    def level_end(self, index: int, stored: list[tuple[str, str, dict[str, Any]]]) -> None: ...


def _train_chunks(trainer: Any, trials: tuple, unique: np.ndarray, pieces: list[np.ndarray], data: tuple,
                  progress: GroupProgress) -> tuple[Any, dict[str, np.ndarray]]:
    """Train the ``unique`` rows of ``trials`` (params, masks, keys) chunk by chunk; returns the
    trained params and curves of the unique rows, in order (chunk padding dropped)."""
    import jax

    params, masks, keys = trials
    outs = []
    for piece in pieces:
        rows = unique[piece]
        trained, curves = trainer(jax.tree.map(lambda x, r=rows: x[r], params),
                                  jax.tree.map(lambda x, r=rows: x[r], masks), keys[rows], data,
                                  on_steps=progress.steps)
        outs.append((jax.device_get(trained), curves))
    first = np.unique(np.concatenate(pieces), return_index=True)[1]  # each unique row once, in order

    def gather(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays)[first]

    trained_u = jax.tree.map(lambda *xs: gather(list(xs)), *[o[0] for o in outs])
    return trained_u, {k: gather([o[1][k] for o in outs]) for k in ("accuracy", "loss", "diverged_at")}


def run_groups(settings_list: Sequence[Any], data: tuple, root: str | Path, *,
               progress: GroupProgress | None = None, memory_budget_mb: int | None = None,
               chunk_steps: int | None = None) -> list[Path]:
    """Run (or resume) several settings that share :func:`signature`, level by level, their
    trials trained together; each is stored exactly as :func:`lth_jax.experiment.run` stores
    it (same directory, records, arrays and metrics, plus a ``group`` entry saying what
    trained with it). Returns the run directories, in the order given.

    Trials with identical inputs (initial weights, masks, batch keys) are trained once.
    The trials of a level are split into chunks of at most ``memory_budget_mb`` of
    :func:`trial_bytes`, each chunk one vmapped program.
    """
    import jax

    from lth_jax import experiment, store

    if not settings_list:
        return []
    sigs = {signature(s) for s in settings_list}
    if len(sigs) != 1:
        raise ValueError(f"run_groups needs settings with one shape and schedule, got {sorted(map(str, sigs))}")
    if settings_list[0].mode not in ("oneshot", "iterative"):
        raise ValueError("run_groups trains one-shot and iterative runs (use experiment.run for han)")
    progress = progress or GroupProgress()
    budget = (memory_budget_mb or default_budget_mb()) * 2**20
    paths = [store.open_run(root, s.hashed(), prefix=s.mode,
                            extra={k: getattr(s, k) for k in experiment.UNHASHED}) for s in settings_list]
    plans = [experiment.plan(s) for s in settings_list]
    inits: list[Any] = [None] * len(settings_list)
    trainer = None
    depth = max(len(p) for p in plans)
    for i in range(depth):
        todo = [g for g, p in enumerate(plans) if i < len(p) and not store.done(paths[g], p[i].name)]
        if not todo:
            progress.level_end(i, [])
            continue
        parts = []
        for g in todo:
            s, level = settings_list[g], plans[g][i]
            if inits[g] is None:
                inits[g] = experiment.stored_init(s, paths[g])
            masks = experiment.ticket_masks(s, paths[g], inits[g], level, plans[g][i - 1] if i else None)
            parts.append((g, masks, *experiment.build_trials(s, inits[g], masks, level)))
        params = jax.tree.map(lambda *x: jax.numpy.concatenate(x), *[p[2] for p in parts])
        tmasks = jax.tree.map(lambda *x: jax.numpy.concatenate(x), *[p[3] for p in parts])
        keys = jax.numpy.concatenate([p[4] for p in parts])
        digests = _row_digests(params, tmasks, keys)
        first: dict[str, int] = {}
        for row, d in enumerate(digests):
            first.setdefault(d, row)
        unique = np.asarray(sorted(first.values()))
        inverse = np.searchsorted(unique, [first[d] for d in digests])
        pieces = chunks(unique.size, budget // trial_bytes(settings_list[todo[0]]))
        if trainer is None:
            trainer = experiment.Trainer(settings_list[todo[0]], chunk_steps)
        progress.level_start(i, depth, len(todo), len(digests), settings_list[0].iterations * len(pieces))
        t0 = time.perf_counter()
        trained_u, curves_u = _train_chunks(trainer, (params, tmasks, keys), unique, pieces, data, progress)
        seconds = time.perf_counter() - t0
        n_rows = [jax.tree.leaves(p[2])[0].shape[0] for p in parts]
        group_info = {"runs": len(todo), "trials": len(digests), "unique_trials": int(unique.size),
                      "chunks": len(pieces), "trained_trials": int(sum(p.size for p in pieces)),
                      "seconds": seconds, "members": [paths[g].name for g in todo]}
        stored, start = [], 0
        for (g, masks, *_), n in zip(parts, n_rows, strict=True):
            s, level = settings_list[g], plans[g][i]
            rows = inverse[start:start + n]
            start += n
            trained_g = jax.tree.map(lambda x, rows=rows: x[rows], trained_u)
            curves_g = {k: v[rows] for k, v in curves_u.items()}
            metrics = experiment.level_metrics(s, level, masks, curves_g, seconds * n / len(digests))
            metrics["group"] = group_info
            n_seeds = len(s.seeds)
            arrays = {**store.flatten(jax.device_get(masks), "masks"),
                      **store.flatten(jax.tree.map(lambda x, n_seeds=n_seeds: x[:n_seeds], trained_g), "trained"),
                      "curves/accuracy": curves_g["accuracy"], "curves/loss": curves_g["loss"],
                      "curves/diverged_at": curves_g["diverged_at"]}
            store.save_level(paths[g], level.name, arrays, metrics)
            stored.append((paths[g].name, level.name, metrics))
        progress.level_end(i, stored)
    return paths


def run_study(groups: Sequence[Group], data: tuple, root: str | Path, **kw: Any) -> list[Path]:
    """Train every group (those sharing a :func:`signature` together); paths in group order."""
    by_sig: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        by_sig.setdefault(signature(g.settings), []).append(i)
    out: list[Path | None] = [None] * len(groups)
    for idx in by_sig.values():
        for i, p in zip(idx, run_groups([groups[i].settings for i in idx], data, root, **kw), strict=True):
            out[i] = p
    return [p for p in out if p is not None]


# ---------------------------------------------------------------- manifests: what a study consists of


def manifest_path(root: str | Path, study: str, mode: str, preset: str) -> Path:
    return Path(root) / "manifests" / f"{study}-{mode}-{preset}.json"


def write_manifest(root: str | Path, study: str, mode: str, preset: str, groups: Sequence[Group],
                   command: str) -> Path:
    """Record which stored runs make up a study's figure (read by experiments.report)."""
    from lth_jax import experiment, store

    path = manifest_path(root, study, mode, preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(path, {
        "study": study, "mode": mode, "preset": preset, "figures": list(FIGURES[(study, mode)]),
        "command": command,
        "groups": [{"label": g.label, "run": experiment.run_dir(g.settings, ".").name,
                    "settings": dataclasses.asdict(g.settings)} for g in groups]})
    return path


def find_manifests(root: str | Path) -> list[Path]:
    """Every study manifest under ``root`` (any depth)."""
    return sorted(Path(root).rglob("manifests/*.json"))


# ---------------------------------------------------------------- reading a study back


def level_rows(run: str | Path) -> list[dict[str, Any]]:
    """Per stored level of a run: size, the tickets' convergence and accuracy (mean/min/max,
    trials that converged) and divergence (count and first step)."""
    from lth_jax import analysis, experiment

    rows = []
    for rec in experiment.records(run):
        m = rec.metrics
        t = m["roles"]["ticket"]
        steps = [r["diverged_at"] for r in m["trials"] if r["role"] == "ticket" and r["diverged_at"] is not None]
        div = analysis.divergence_summary(np.asarray(steps + [-1] * (t["trials"] - len(steps))))
        row = {"level": m["level"], "percent_nominal": m["percent_nominal"], "percent_overall": m["percent_overall"],
               "weights": m["weights_total"], "trials": t["trials"], "converged": t["converged"],
               "diverged": div["diverged"], "diverged_first_step": div["first_step"], "seconds": m.get("seconds")}
        for k in ("convergence_iteration", "convergence_accuracy", "final_accuracy"):
            for stat in ("mean", "min", "max"):
                v = t[k][stat]
                row[f"{k}_{stat}"] = math.nan if v is None else v
        rows.append(row)
    return rows


def load_study(manifest: str | Path) -> dict[str, Any]:
    """A manifest with each group's stored level rows (groups with nothing stored get ``[]``)."""
    from lth_jax import store

    manifest = Path(manifest)
    m = store.read_json(manifest)
    root = manifest.parent.parent
    for g in m["groups"]:
        path = root / g["run"]
        g["path"] = str(path)
        g["rows"] = level_rows(path) if (path / "settings.json").exists() else []
    return m


def ticket_size_table(study: dict[str, Any], tolerance: float = 0.0015) -> list[dict[str, Any]]:
    """Section 6.2's two definitions of a winning ticket's size, in weights, per group:
    the smallest network with the lowest mean convergence iteration (None if no level
    converged), and the last size before the mean accuracy at convergence falls
    ``tolerance`` below the unpruned network's. When no level of a group converged the
    accuracy definition uses final accuracy instead, and ``accuracy`` says so."""
    from lth_jax import analysis

    out = []
    for g in study["groups"]:
        rows = g["rows"]
        if not rows:
            continue
        w = [r["weights"] for r in rows]
        conv = [r["convergence_iteration_mean"] for r in rows]
        acc = [r["convergence_accuracy_mean"] for r in rows]
        which = "accuracy at convergence"
        if not np.isfinite(acc).any():
            acc, which = [r["final_accuracy_mean"] for r in rows], "final accuracy (no level converged)"
        fast = analysis.fastest_ticket(w, conv)
        out.append({"label": g["label"], "weights": rows[0]["weights"], "levels": len(rows),
                    "trials": rows[0]["trials"], "by_convergence": fast["size"], "min_convergence": fast["convergence"],
                    "by_accuracy": analysis.accuracy_drop(w, acc, tolerance)["last_before_drop"], "accuracy": which})
    return out


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def markdown_table(study: dict[str, Any]) -> str:
    """Every stored level of every group: the numbers behind the study's figure."""
    lines = ["| group | level | % of weights | weights | n | converged | conv. iteration mean [min, max] | "
             "acc. at conv. mean [min, max] | final acc. mean | diverged (first step) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for g in study["groups"]:
        for r in g["rows"]:
            conv = (f"{_fmt(r['convergence_iteration_mean'], '.0f')} [{_fmt(r['convergence_iteration_min'], '.0f')}, "
                    f"{_fmt(r['convergence_iteration_max'], '.0f')}]")
            acc = (f"{_fmt(r['convergence_accuracy_mean'], '.4f')} [{_fmt(r['convergence_accuracy_min'], '.4f')}, "
                   f"{_fmt(r['convergence_accuracy_max'], '.4f')}]")
            div = (f"**{r['diverged']}/{r['trials']} diverged** (step {r['diverged_first_step']})" if r["diverged"]
                   else "0")
            lines.append(f"| {g['label']} | {r['level']} | {r['percent_overall']:.2f} | {r['weights']:,} | "
                         f"{r['trials']} | {r['converged']} | {conv} | {acc} | "
                         f"{_fmt(r['final_accuracy_mean'], '.4f')} | {div} |")
        if not g["rows"]:
            lines.append(f"| {g['label']} | (nothing stored) | | | | | | | | |")
    return "\n".join(lines)


# ---------------------------------------------------------------- plots


def plot_study(study: dict[str, Any], out: str | Path, labels: Sequence[str] | None = None, *,
               x: str = "percent", log_x: bool = False, title: str = "") -> Path:
    """Two panels, convergence iteration and accuracy at convergence, of the tickets'
    mean (error bars: min-max over tickets) against ``x`` (``percent`` of weights
    remaining or number of ``weights``). Levels where a trial diverged are marked with
    a red x at the top of both panels and counted in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    groups = [g for g in study["groups"] if g["rows"] and (labels is None or g["label"] in labels)]
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(groups), 2)))
    converged = any(r["converged"] for g in groups for r in g["rows"])
    # Short runs may never converge under footnote 5: then the right panel shows final accuracy, and says so.
    acc_key = "convergence_accuracy" if converged else "final_accuracy"
    for color, g in zip(colors, groups, strict=False):
        rows = g["rows"]
        xs = np.asarray([r["percent_overall"] if x == "percent" else r["weights"] for r in rows], float)
        n_div = sum(r["diverged"] for r in rows)
        n_all = sum(r["trials"] for r in rows)
        label = f"{g['label']} (n={rows[0]['trials']}/level" + (f"; {n_div}/{n_all} diverged)" if n_div else ")")
        for ax, key in zip(axes, ("convergence_iteration", acc_key), strict=True):
            mean = np.asarray([r[f"{key}_mean"] for r in rows], float)
            lo = np.asarray([r[f"{key}_min"] for r in rows], float)
            hi = np.asarray([r[f"{key}_max"] for r in rows], float)
            ok = np.isfinite(mean)
            ax.errorbar(xs[ok], mean[ok], yerr=[mean[ok] - lo[ok], hi[ok] - mean[ok]], color=color, marker="o",
                        ms=4, capsize=2, lw=1.3, label=label)
            bad = np.asarray([r["diverged"] > 0 for r in rows])
            if bad.any():
                ax.scatter(xs[bad], np.full(bad.sum(), 0.97), transform=ax.get_xaxis_transform(), marker="x",
                           color="red", s=60, zorder=5)
    acc_name = "test accuracy at convergence" if converged else "FINAL test accuracy (none converged)"
    for ax, name in zip(axes, ("convergence iteration (footnote 5)", acc_name), strict=True):
        ax.set_ylabel(name)
        if ax is axes[0] and not converged:  # an empty panel: take the other's x axis
            ax.set_xscale(axes[1].get_xscale() if not log_x else "log")
            ax.set_yticks([])
            ax.annotate("no trial converged under footnote 5's rule\nwithin the iterations of this run", (0.5, 0.5),
                        xycoords="axes fraction", ha="center", va="center", fontsize=10, color="gray")
        else:
            if log_x:
                ax.set_xscale("log")
            ax.invert_xaxis()
        ax.set_xlabel("percent of weights remaining" if x == "percent" else "weights in the winning ticket")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if not converged:
        axes[0].set_xlim(axes[1].get_xlim())
    if any(r["diverged"] for g in groups for r in g["rows"]):
        axes[0].annotate("red x: a level with diverged (NaN/inf) trials", (0.01, 0.99), xycoords="axes fraction",
                         va="top", fontsize=7, color="red")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def settings_note(study: dict[str, Any]) -> str:
    """One line: the settings every number of the study came from."""
    s = study["groups"][0]["settings"]
    its = sorted({g["settings"]["iterations"] for g in study["groups"]})
    return (f"{study['mode']}, preset {study['preset']}: {len(s['seeds'])} tickets a group, "
            f"{'/'.join(f'{i:,}' for i in its)} iterations (paper: 50,000), SGD lr {s['lr']}, batch {s['batch_size']}, "
            f"test every {s['eval_every']}, footnote-5 windows {s['average_over']}/{s['stable_for']} "
            f"(paper: 1000/1000), tolerance {s['tolerance']}")


def plot_figures(study: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """The study's paper figure(s) as PNGs named ``figureNN[-iterative].png``."""
    out_dir = Path(out_dir)
    mode, kind = study["mode"], study["study"]
    note = settings_note(study)
    suffix = "-iterative" if kind == "init_std" and mode == "iterative" else ""
    made = []
    if kind == "init_std":
        stds = {g["label"]: g["settings"]["std"] for g in study["groups"]}
        for fig, pick, words in ((11, lambda s: s >= 0.1, ">= 0.1"), (12, lambda s: s <= 0.1, "<= 0.1")):
            title = f"Figure {fig}: winning tickets initialised with std {words} ({mode})\n{note}"
            made.append(plot_study(study, out_dir / f"figure{fig}{suffix}.png",
                                   [k for k, s in stds.items() if pick(s)], log_x=mode == "iterative", title=title))
    elif kind == "sizes":
        fig = 13 if mode == "oneshot" else 14
        made.append(plot_study(study, out_dir / f"figure{fig}.png", x="weights", log_x=True,
                               title=f"Figure {fig}: winning tickets of networks of several sizes ({mode}, std "
                                     f"{study['groups'][0]['settings']['std']})\n{note}"))
    else:
        made.append(plot_study(study, out_dir / "figure15.png",
                               title=f"Figure 15: iterative pruning at several rates per round (x not logarithmic)\n"
                                     f"{note}"))
    return made


# ---------------------------------------------------------------- cost


def seed_steps(groups: Sequence[Group], root: str | Path | None = None) -> dict[str, float]:
    """What the groups still need to train, in LeNet-300-100 seed-steps (trials x iterations x
    weights / 266,200), counting levels already stored under ``root`` as done and the
    unpruned level shared by groups that differ only in rate once."""
    from lth_jax import experiment, store

    total, done, seen, levels, levels_left = 0.0, 0.0, set(), 0, 0
    for g in groups:
        s = g.settings
        scale = sum(experiment.weight_counts(s).values()) / LENET_WEIGHTS
        path = experiment.run_dir(s, root) if root is not None else None
        for level in experiment.plan(s):
            cost = s.trials_per_level() * s.iterations * scale
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


# ---------------------------------------------------------------- CLI


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_enum("study", "all", [*STUDIES, "all"], "Which parameter study (all: every one).")
    flags.DEFINE_enum("preset", "cpu", list(PRESETS), "Settings to start from; the flags below override them.")
    flags.DEFINE_enum("mode", None, ["oneshot", "iterative"],
                      "Only this pruning mode (default: the paper's: one-shot stds, both for sizes, iterative rates).")
    flags.DEFINE_integer("seeds", None, "Winning tickets per group (the paper: 5).")
    flags.DEFINE_integer("first_seed", 0, "First seed.")
    flags.DEFINE_integer("iterations", None, "Training iterations per network (the paper: 50,000).")
    flags.DEFINE_integer("rates_iterations", None, "Iterations of the rates study (default: the preset's).")
    flags.DEFINE_integer("eval_every", None, "Test accuracy every this many iterations (the paper: 100).")
    flags.DEFINE_integer("average_over", None, "Footnote 5: moving-average window in iterations.")
    flags.DEFINE_integer("stable_for", None, "Footnote 5: iterations the average must stay put.")
    flags.DEFINE_list("levels", None, "One-shot: percents of each hidden layer to keep.")
    flags.DEFINE_float("min_remaining", None, "Iterative stds/sizes: stop after the first level under this percent.")
    flags.DEFINE_list("stds", None, "init_std: standard deviations (the paper: 0.025,0.05,0.1,0.2,0.4,0.8).")
    flags.DEFINE_list("sizes", None, "sizes: hidden widths as A-B (default: 300-100,600-200,...,1500-500).")
    flags.DEFINE_list("rates", None, "rates: pruning rates per round, fractions (the paper: 0.1,...,0.7).")
    flags.DEFINE_integer("memory_budget_mb", None, "Device memory one training chunk may use (default: 40%% of an "
                         "accelerator's, 2048 on CPU).")
    flags.DEFINE_string("out_dir", "runs/studies", "Results root (hashed run directories + manifests/).")
    flags.DEFINE_string("plots_dir", None, "Where the PNGs go (default: <out_dir>/figures).")
    flags.DEFINE_string("mnist_dir", None, "Folder with the four MNIST .gz files (default: $LTH_MNIST_DIR, else "
                        "download).")
    flags.DEFINE_bool("dry_run", False, "Print the plan and its estimated cost; train nothing.")
    flags.DEFINE_bool("progress", True, "Show progress bars.")


UsageError = cli.UsageError


def _size(text: str) -> tuple[int, ...]:
    widths = tuple(int(w) for w in text.split("-"))
    if not widths or any(w <= 0 for w in widths):
        raise ValueError(text)
    return widths


def overrides_from_flags(flags_values: Any) -> dict[str, Any]:
    f = flags_values
    out = {"seeds": f.seeds, "first_seed": f.first_seed, "iterations": f.iterations,
           "rates_iterations": f.rates_iterations or f.iterations, "eval_every": f.eval_every,
           "average_over": f.average_over, "stable_for": f.stable_for, "min_remaining": f.min_remaining,
           "levels": cli.parse_list("levels", f.levels, float), "stds": cli.parse_list("stds", f.stds, float),
           "sizes": cli.parse_list("sizes", f.sizes, _size), "rates": cli.parse_list("rates", f.rates, float)}
    if f.seeds is not None and f.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, not {f.seeds}")
    if f.first_seed < 0:
        raise UsageError(f"--first_seed must be >= 0, not {f.first_seed}")
    return out


def jobs(study: str, mode: str | None, preset: str, overrides: dict[str, Any]) -> list[tuple[str, str, list[Group]]]:
    """``(study, mode, groups)`` for every study and mode the selection asks for."""
    out = []
    for st in STUDIES if study == "all" else (study,):
        modes = PAPER_MODES[st] if mode is None else (mode,)
        if st == "rates" and mode == "oneshot":
            if study == "rates":
                raise UsageError("the rates study (Figure 15) is iterative only; drop --mode=oneshot")
            continue
        for md in modes:
            try:
                out.append((st, md, study_groups(st, md, preset, **overrides)))
            except ValueError as e:
                raise UsageError(str(e)) from None
    return out


def _command(argv: Sequence[str]) -> str:
    return "python -m experiments.studies " + " ".join(a for a in argv[1:])


def main(argv: list[str]) -> None:
    from absl import flags, logging

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    todo = jobs(FLAGS.study, FLAGS.mode, FLAGS.preset, overrides_from_flags(FLAGS))
    from experiments import reproduce_paper

    costs = reproduce_paper.cost_model(FLAGS.out_dir)
    command = _command(sys.argv)
    for st, md, groups in todo:
        need = seed_steps(groups, FLAGS.out_dir)
        cpu, gpu = (reproduce_paper.seconds(need, costs, d) for d in ("cpu", "gpu"))
        print(f"{st} ({md}, Figure {'/'.join(map(str, FIGURES[(st, md)]))}): {len(groups)} groups x "
              f"{len(groups[0].settings.seeds)} tickets; {need['remaining']:,.0f} of {need['total']:,.0f} "
              f"LeNet seed-steps left: ~{reproduce_paper.human(cpu)} on this CPU, ~{reproduce_paper.human(gpu)} "
              f"on a GPU")
        if st == "rates":
            for g in groups:
                t = trainings_to_about_5(g.settings.rate, g.settings.hidden, g.settings.output_rate_factor,
                                         g.settings.min_remaining)
                print(f"  {g.label}: {t['trainings']} trainings to {t['percent_overall']:.2f}% of the weights")
    if FLAGS.dry_run:
        return

    from tqdm import tqdm

    from lth_jax import data, experiment

    mnist = experiment.device_data(data.mnist(FLAGS.mnist_dir))

    class Bars(GroupProgress):
        def __init__(self, name):
            self.name, self.bar = name, None

        def level_start(self, index, depth, runs, trials, steps):
            self.bar = tqdm(total=steps, desc=f"{self.name} level {index + 1}/{depth} ({runs} groups, {trials} "
                            "trials)", unit="step", leave=False, disable=not FLAGS.progress)

        def steps(self, n):
            self.bar.update(n)

        def level_end(self, index, stored):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            for run, level, m in stored:
                t = m["roles"]["ticket"]
                acc = t["final_accuracy"]["mean"]
                tqdm.write(f"  {run} {level}: {m['percent_overall']:.2f}% of weights, final acc. "
                           f"{_fmt(acc, '.4f')}, diverged {t['diverged']}/{t['trials']} ({m['seconds']:.1f} s)")

    plots = Path(FLAGS.plots_dir or Path(FLAGS.out_dir) / "figures")
    for st, md, groups in todo:
        sig_count = len({signature(g.settings) for g in groups})
        print(f"== {st} ({md}): {len(groups)} groups in {sig_count} program(s) per level")
        man = write_manifest(FLAGS.out_dir, st, md, FLAGS.preset, groups, command)
        run_study(groups, mnist, FLAGS.out_dir, progress=Bars(st), memory_budget_mb=FLAGS.memory_budget_mb)
        study = load_study(man)
        print(markdown_table(study))
        if st == "sizes":
            for r in ticket_size_table(study):
                print(f"  {r['label']}: ticket size by convergence {_fmt(r['by_convergence'], ',.0f')} weights, "
                      f"by accuracy {_fmt(r['by_accuracy'], ',.0f')} weights (of {r['weights']:,})")
        for p in plot_figures(study, plots):
            print(f"wrote {p}")



run_main = cli.guarded("studies", main)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(run_main, flags_parser=_parse)
