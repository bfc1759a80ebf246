"""One view of the stored results: what the report, the plots and the analyses read.

Everything is read through :mod:`lth_jax.store` (verified records) and nothing is trained:

- :class:`Run`: a stored MNIST run (``<mode>-<hash>/settings.json`` and its level records),
  levels in plan order (largest first), per-level metrics and, on demand, curves;
- :func:`find_mnist_runs` / :func:`latest_run`: which stored runs answer the paper's MNIST figures;
- :func:`load_xor`, :func:`load_examine`: ``xor_sweep.json`` and ``examine.json`` as their
  drivers wrote them;
- :func:`find_manifests`, :func:`load_study`: section 6's studies (a manifest naming one run per
  group, each group's stored levels as rows);
- :class:`View` / :func:`load`: all of it under one results folder.

A damaged file is never skipped: a record, settings file, manifest or summary that cannot be
read or verified raises :class:`lth_jax.store.CorruptRecord` (a :class:`~lth_jax.store.StoreError`)
whose message is one line naming the file, so a tool can print it and stop instead of
silently reporting on less than is stored.

Which level answers "the 35% level" (:meth:`Run.at`): the level whose nominal percent is nearest
in ratio (``|log(stored / asked)|``), accepted when that is at most :data:`TOLERANCE` = 0.1
(about 10%). Why 0.1: iterative levels are 100 * 0.8^r, a ratio of log(1.25) = 0.22 apart, so
0.1 (under half of that) resolves any asked percent to at most one round, and it accepts the
paper's rounded quotes of iterative levels (8.5% for the 8.59% round: 0.011; 1.5% for 1.44%:
0.041; "about 31%" for 32.8%: 0.055), which 0.03 would reject; and it is under the smallest
ratio between the paper's one-shot levels (40% and 35%: 0.134), so a missing 35% level never
resolves to the 40% one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lth_jax import store
from lth_jax.reproduction import analysis, paper
from lth_jax.store import ondisk

TOLERANCE = 0.1
"""Largest ``|log(stored percent / asked percent)|`` at which :meth:`Run.at` accepts a level."""
INIT = ondisk.INIT  # the record of a run's initial weights (not a level)
PRESET_ORDER: tuple[str, ...] = ("paper", "cpu", "smoke")
"""Presets of a study in order of preference when several are stored."""
METRIC_STATS = ("mean", "min", "max")
PAPER_SETTINGS, CPU_SIZE = "paper settings", "CPU size"
"""What a result's settings are, as the report marks each claim."""


# ---------------------------------------------------------------- a stored MNIST run


class Run:
    """A stored run: its settings and every level's metrics (largest level first).

    ``settings`` merges the hashed settings with the stored extras (levels, convergence
    windows); ``hashed`` is the part the run directory's hash was taken of.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        stored = store.load_settings(self.path)
        self.hashed: dict[str, Any] = dict(stored["settings"])
        self.settings: dict[str, Any] = {**stored["settings"], **stored.get("extra", {})}
        store.refuse_damaged(self.path)
        self.levels: list[dict[str, Any]] = [store.load_level(self.path, n, arrays=False).metrics
                                             for n in store.levels(self.path) if n != INIT]

    @property
    def mode(self) -> str:
        return self.settings["mode"]

    @property
    def trained_in(self) -> Path:
        """The folder the run was trained in: its own, or for an exported copy (:func:`store.export_run`)
        the one it was copied from, where the command that makes it again writes."""
        source = self.settings.get(store.EXPORT, {}).get("source")
        return Path(source) if source else self.path

    def percents(self) -> np.ndarray:
        """Nominal percent remaining of every level, largest first."""
        return np.asarray([m["percent_nominal"] for m in self.levels], float)

    @staticmethod
    def value(level: dict[str, Any] | None, role: str, metric: str, stat: str = "mean") -> float:
        """``stat`` of ``role``'s ``metric`` at ``level`` (NaN where the level, role or value is missing)."""
        if level is None or role not in level["roles"]:
            return math.nan
        v = level["roles"][role][metric][stat]
        return math.nan if v is None else float(v)

    def column(self, role: str, metric: str, stat: str = "mean") -> np.ndarray:
        """:meth:`value` at every level, largest first (beside :meth:`percents`)."""
        return np.asarray([self.value(m, role, metric, stat) for m in self.levels], float)

    def at(self, percent: float, tol: float = TOLERANCE) -> dict[str, Any] | None:
        """The level whose nominal percent is nearest ``percent`` in ratio, if within ``tol``
        (the module's documented rule); None otherwise."""
        if not self.levels:
            return None
        best = min(self.levels, key=lambda m: abs(math.log(m["percent_nominal"] / percent)))
        return best if abs(math.log(best["percent_nominal"] / percent)) <= tol else None

    def value_at(self, percent: float, role: str, metric: str, stat: str = "mean") -> float:
        return self.value(self.at(percent), role, metric, stat)

    @property
    def original(self) -> dict[str, Any] | None:
        """The unpruned level (100%), or None if it is not stored."""
        return self.levels[0] if self.levels and self.levels[0]["percent_nominal"] == 100 else None

    def trials(self, role: str = "ticket") -> int:
        """Trials of ``role`` per level (0 if the run has none)."""
        m = self.levels[0] if self.levels else None
        return int(m["roles"][role]["trials"]) if m and role in m["roles"] else 0

    def curves(self, level: dict[str, Any], role: str) -> np.ndarray:
        """Test-accuracy curves (trials x evaluations) of ``role`` at ``level`` (reads its npz)."""
        arrays = store.load_level(self.path, level["level"]).arrays
        idx = [i for i, t in enumerate(level["trials"]) if t["role"] == role]
        return np.asarray(arrays[ondisk.ACCURACY])[idx]

    def stop_steps(self, level: dict[str, Any], role: str) -> np.ndarray | None:
        """Where ``role``'s trainings at ``level`` stopped (a run that stops at convergence; None
        for one that trains every level in full)."""
        arrays = store.load_level(self.path, level["level"]).arrays
        if ondisk.STOP_STEP not in arrays:
            return None
        idx = [i for i, t in enumerate(level["trials"]) if t["role"] == role]
        return np.asarray(arrays[ondisk.STOP_STEP])[idx]

    def device(self) -> str:
        return sorted({m.get("device", "?") for m in self.levels})[0] if self.levels else "?"

    def scale(self) -> str:
        """``"paper settings"`` when the run trains as the paper does (iterations, test interval,
        footnote 5's windows, 5 tickets and, for one-shot and iterative runs, 3 + 3 controls),
        else ``"CPU size"``. Stopping measured trainings at convergence keeps the paper's
        settings: it changes no convergence iteration or accuracy there."""
        m, s = paper.MNIST, self.settings
        same = (s.get("iterations") == m.iterations and s.get("eval_every") == m.eval_every
                and s.get("average_over") == m.average_over and s.get("stable_for") == m.stable_for
                and s.get("tolerance") == m.tolerance and len(s.get("seeds", ())) >= m.tickets)
        if self.mode in ("oneshot", "iterative"):
            same &= s.get("reinit", 0) >= m.controls and s.get("shuffle", 0) >= m.controls
        return PAPER_SETTINGS if same else CPU_SIZE


def _is_paper_lenet(s: dict[str, Any]) -> bool:
    """LeNet-300-100 at the paper's init and optimiser (iterative/han: 20% a round), with
    controls for one-shot and iterative (tickets-only runs belong to the studies)."""
    m = paper.MNIST
    mode = s.get("mode")
    if (tuple(s.get("hidden", ())) != m.hidden or s.get("std") != m.std or s.get("lr") != m.lr
            or s.get("optimizer") != "sgd" or s.get("batch_size") != m.batch_size
            or s.get("output_rate_factor") != m.output_rate_factor):
        return False
    if mode in ("iterative", "han") and s.get("rate") != m.rate:
        return False
    if s.get("rewind_step"):  # late rewinding is not the paper's procedure
        return False
    return not (mode in ("oneshot", "iterative") and not (s.get("reinit") or s.get("shuffle")))


def _stored_runs(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every run directory at any depth under ``root`` with its hashed settings (damaged settings raise)."""
    for f in sorted(root.rglob(ondisk.SETTINGS)):
        yield f.parent, store.load_settings(f.parent)["settings"]


def find_mnist_runs(runs_dir: str | Path) -> dict[str, Path]:
    """The best stored run per mode (oneshot, iterative, han) of LeNet-300-100 at the paper's
    settings anywhere under ``runs_dir``: most iterations, then most tickets, then most levels.
    A candidate with a damaged record raises rather than dropping out of the ranking."""
    best: dict[str, tuple[tuple, Path]] = {}
    root = Path(runs_dir)
    if not root.is_dir():
        return {}
    for path, s in _stored_runs(root):
        if s.get("data") != "mnist" or not _is_paper_lenet(s):
            continue
        store.refuse_damaged(path)
        levels = [n for n in store.levels(path) if n != INIT]
        if not levels:
            continue
        rank = (s["iterations"], len(s["seeds"]), len(levels))
        if s["mode"] not in best or rank > best[s["mode"]][0]:
            best[s["mode"]] = (rank, path)
    return {mode: v[1] for mode, v in best.items()}


def latest_run(runs_dir: str | Path, mode: str) -> Path | None:
    """The most recently started run of ``mode`` directly under ``runs_dir`` that has stored levels."""
    found = [p for p in store.find_runs(runs_dir, mode=mode) if any(n != INIT for n in store.levels(p))]
    return max(found, key=lambda p: (p / ondisk.SETTINGS).stat().st_mtime) if found else None


# ---------------------------------------------------------------- XOR and section 5 summaries


def _summary(file: Path, must_have: str, what: str) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    data = store.read_json(file)
    if not isinstance(data, dict) or must_have not in data:
        raise store.CorruptRecord(f"{file}: not {what} (no {must_have!r})")
    return data


def load_xor(xor_dir: str | Path) -> dict[str, Any] | None:
    """``xor_sweep.json`` as ``experiments.xor_sweep`` wrote it to ``xor_dir`` (None if absent),
    with ``_path``, ``_dir`` and ``_pngs`` (the PNGs beside it) added."""
    f = Path(xor_dir) / "xor_sweep.json"
    data = _summary(f, "rows", "an xor_sweep result")
    if data is None:
        return None
    if not isinstance(data["rows"], list):
        raise store.CorruptRecord(f"{f}: not an xor_sweep result (rows is not a list)")
    data["_path"], data["_dir"] = str(f), str(Path(xor_dir))
    data["_pngs"] = [str(p) for p in sorted(Path(xor_dir).glob("*.png"))]
    return data


def xor_row(xor: dict[str, Any], **match: Any) -> dict[str, Any] | None:
    """The first row of an XOR result whose fields equal ``match``."""
    return next((r for r in xor["rows"] if all(r.get(k) == v for k, v in match.items())), None)


def load_examine(examine_dir: str | Path) -> dict[str, Any] | None:
    """``examine.json`` as ``experiments.examine`` wrote it (None if absent), with ``_dir`` added."""
    data = _summary(Path(examine_dir) / "examine.json", "figure10", "an examine summary")
    if data is not None:
        data["_dir"] = str(Path(examine_dir))
    return data


# ---------------------------------------------------------------- section 6 studies


def find_manifests(root: str | Path) -> list[Path]:
    """Every study manifest (``manifests/<study>-<mode>-<preset>.json``) under ``root``, any depth."""
    return sorted(Path(root).rglob("manifests/*.json"))


def level_rows(run: Run) -> list[dict[str, Any]]:
    """Per stored level of a study's run: size, the tickets' convergence and accuracy
    (mean/min/max; NaN where none), trials that converged, and divergence (count, first step)."""
    rows = []
    for m in run.levels:
        t = m["roles"]["ticket"]
        steps = [r["diverged_at"] for r in m["trials"] if r["role"] == "ticket" and r["diverged_at"] is not None]
        div = analysis.divergence_summary(np.asarray(steps + [-1] * (t["trials"] - len(steps))))
        row = {"level": m["level"], "percent_nominal": m["percent_nominal"], "percent_overall": m["percent_overall"],
               "weights": m["weights_total"], "converged": t["converged"],
               "trials": t["trials"] + t.get("excluded_pruned_from_diverged", 0),
               "diverged": div["diverged"], "diverged_first_step": div["first_step"], "seconds": m.get("seconds")}
        for k in ("convergence_iteration", "convergence_accuracy", "final_accuracy"):
            row.update({f"{k}_{stat}": run.value(m, "ticket", k, stat) for stat in METRIC_STATS})
        rows.append(row)
    return rows


def load_study(manifest: str | Path) -> dict[str, Any]:
    """A manifest with each group's stored level rows (``[]`` for a group whose run is not stored)."""
    manifest = Path(manifest)
    m = store.read_json(manifest)
    if not isinstance(m, dict) or not isinstance(m.get("groups"), list) or not all(
            k in m for k in ("study", "mode", "preset")):
        raise store.CorruptRecord(f"{manifest}: not a study manifest (no study, mode, preset and groups)")
    root = manifest.parent.parent
    for g in m["groups"]:
        path = root / g["run"]
        g["path"] = str(path)
        g["rows"] = level_rows(Run(path)) if (path / ondisk.SETTINGS).exists() else []
    return m


def best_studies(runs_dir: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (study, mode), the stored study of the most preferred preset (:data:`PRESET_ORDER`)
    that has any level stored; ``_rank`` and ``_manifest`` are added."""
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for f in find_manifests(runs_dir):
        st = load_study(f)
        if not any(g["rows"] for g in st["groups"]):
            continue
        key = (st["study"], st["mode"])
        rank = PRESET_ORDER.index(st["preset"]) if st["preset"] in PRESET_ORDER else 99
        if key not in chosen or rank < chosen[key]["_rank"]:
            st["_rank"], st["_manifest"] = rank, str(f)
            chosen[key] = st
    return chosen


# ---------------------------------------------------------------- everything stored


class View(NamedTuple):
    """Everything stored under one results folder that answers a figure or claim of the paper."""

    runs_dir: Path
    mnist: dict[str, Run]                               # mode -> the run chosen by find_mnist_runs
    xor: dict[str, Any] | None                          # load_xor
    examine: dict[str, Any] | None                      # load_examine
    studies: dict[tuple[str, str], dict[str, Any]]      # (study, mode) -> load_study of the chosen manifest

    def empty(self) -> bool:
        return not (self.mnist or self.studies or self.examine or self.xor)


def default_examine_dir(runs_dir: str | Path) -> Path:
    """Where section 5's summary is: ``reproduce_paper``'s place, else ``experiments.examine``'s default."""
    runs_dir = Path(runs_dir)
    return next((d for d in (runs_dir / "examine" / "figures", Path("results") / "examine")
                 if (d / "examine.json").is_file()), runs_dir / "examine" / "figures")


def load(runs_dir: str | Path, xor_dir: str | Path | None = None, examine_dir: str | Path | None = None) -> View:
    """The :class:`View` of ``runs_dir`` (XOR in ``xor_dir``, default ``<runs_dir>/xor``; section 5
    in ``examine_dir``, default :func:`default_examine_dir`). Damaged files raise (see the module)."""
    runs_dir = Path(runs_dir)
    xor_dir = Path(xor_dir) if xor_dir else runs_dir / "xor"
    examine_dir = Path(examine_dir) if examine_dir else default_examine_dir(runs_dir)
    mnist = {mode: Run(p) for mode, p in find_mnist_runs(runs_dir).items()}
    studies = best_studies(runs_dir) if runs_dir.is_dir() else {}
    return View(runs_dir, mnist, load_xor(xor_dir), load_examine(examine_dir), studies)
