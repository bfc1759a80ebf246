"""The XOR experiment (paper section 2, Figures 1 and 2) as configurations of the runner.

- Figure 1: ``trials`` random networks at each hidden width (10, 8, 6, 4, 2).
- Figure 2: the same ten-unit networks pruned to 4 and 2 units, one-shot by the magnitude
  product, and iteratively (2 units a round, rewound to their initial values between
  rounds) by the input, output and product heuristics; reported in the paper's joint form
  (original AND ticket succeeded, % of all trials) and conditionally (footnote 4: ticket
  succeeded, % of the originals that did).
- Control: every 4- and 2-unit ticket's architecture with fresh initial values
  (``transforms.reinit``), beside random networks of the same width.

Every line of both figures is one :class:`lth_jax.runner.Lottery` (:func:`lotteries`): the
network is ``models.MLP`` (2-H-1, sigmoid output) and every width is a ten-unit network with
units removed (``pruning.first_units``), so all of them share one compiled program and
:func:`lth_jax.runner.run_groups` trains together every level of every line whose source is
trained (the ten-unit originals, shared by Figure 1 and every row of Figure 2, are trained
once: a paired design; then both one-shot tickets with the first iterative round; then
round by round).

Keys (:class:`XorKeys`): the networks of a named stream are
``split(fold_in(key(seed), crc32(name)), trials)``; originals use the stream ``"original"``,
random ``w``-unit nets ``"random/w"``, the reinit control of a ``u``-unit ticket of a line
``"<line>/<u>/reinit"`` (e.g. ``"iterative/input/4/reinit"``).

The paper does not give the optimiser, the learning rate, the ReLU derivative at 0 or what
"zero loss" means; the defaults were chosen by measurement, scored on the 26 cells of Figures 1-2
with a fit / held-out split over two seeds (:func:`fidelity`; benchmarks/xor_calibration.py,
benchmarks/xor_calibration.md; the causes of the cells still outside: benchmarks/xor_causes.py):
Adam at 0.001, relu'(0) = 1
(as ``tf.maximum(x, 0)``; with jax's 0, units with two negative incoming weights are dead
from the first step), ZL = every example's cross-entropy at most 5.62e-4 (fitted; hard 0/1
outputs never occur in 10,000 steps), DB strict (an output of 0.5 is wrong).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lth_jax import datasets, judges, models, optimizers, pruning, rules, runner, trainers
from lth_jax.reproduction import paper
from lth_jax.store import ondisk

HEURISTICS = pruning.HEURISTICS
LOSSES = ("mean", "sum")
DB_RULES = ("strict", "round")
ZL_OVER = ("every", "mean")
JUDGE = ("zero_loss", "zero_loss_over", "db_rule")  # judge stored outcomes: not part of the training hash


def _help(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that determines the XOR numbers (defaults: calibrated, see the module docstring)."""

    trials: int = field(default=1000, metadata=_help("Networks per setting (the paper: 1000).", min=1))
    seed: int = field(default=0, metadata=_help("Seed of every random draw; same flags, same numbers.", min=0))
    iterations: int = field(default=10_000,
        metadata=_help("Full-batch training iterations (the paper: 10,000).", min=1))
    optimizer: str = field(default="adam", metadata=_help(
        "Optimiser (not given by the paper; calibrated); adam_tf1 is TensorFlow 1's AdamOptimizer.",
        choices=optimizers.NAMES))
    lr: float = field(default=0.001, metadata=_help("Learning rate (not given by the paper; calibrated).", above=0))
    adam_eps: float = field(default=optimizers.ADAM_EPS, metadata=_help(
        "Adam's epsilon (optax's and TensorFlow 1's default 1e-8; Keras: 1e-7).", above=0))
    lr_schedule: str = field(default="constant", metadata=_help(
        "Learning rate: constant, or decaying to 0 over the run (cosine, linear).", choices=optimizers.SCHEDULES))
    examples_per_step: int = field(default=4, metadata=_help(
        "Examples per training step: 4 = the whole training set (full batch); 1 or 2 = stochastic steps "
        "through a per-trial random order of the examples each epoch.", min=1, max=4))
    score_bias: bool = field(default=False, metadata=_help(
        "Unit heuristics count a unit's bias among its input weights."))
    relu_grad_at_zero: float = field(default=1.0, metadata=_help(
        "Derivative of ReLU at exactly 0: 0 as tf.nn.relu/jax/PyTorch, 1 as tf.maximum(x, 0).", min=0, max=1))
    loss: str = field(default="mean", metadata=_help("Cross-entropy over the 4 points: mean or sum.", choices=LOSSES))
    std: float = field(default=0.1,
        metadata=_help("Standard deviation of the truncated-normal initial weights.", above=0))
    hidden: int = field(default=10, metadata=_help("Hidden units of the original networks.", min=2))
    widths: tuple[int, ...] = field(default=(10, 8, 6, 4, 2), metadata=_help("Hidden widths of Figure 1.", min=1))
    ticket_units: tuple[int, ...] = field(default=(4, 2), metadata=_help("Ticket sizes of Figure 2.", min=1))
    prune_step: int = field(default=2, metadata=_help("Units removed per iterative round.", min=1))
    heuristics: tuple[str, ...] = field(default=HEURISTICS, metadata=_help(
        "Iterative unit-pruning heuristics: input, output, product.", choices=HEURISTICS, unique=True))
    oneshot_heuristic: str = field(default="product", metadata=_help("Heuristic of the one-shot row.",
                                                                      choices=HEURISTICS))
    reinit: bool = field(default=True, metadata=_help("Also train every ticket's reinitialised control."))
    chunk: int = field(default=2500, metadata=_help("Trials per compiled training call.", min=1))
    zero_loss: float = field(default=5.62e-4, metadata=_help(
        "ZL threshold: every example's cross-entropy (float32, from sigmoid outputs) at most this; "
        "0 means hard 0/1 outputs.", min=0))
    zero_loss_over: str = field(default="every", metadata=_help(
        "ZL judged on every example's loss or on their mean (the training loss).", choices=ZL_OVER))
    db_rule: str = field(default="strict", metadata=_help(
        "DB: strict (output 0.5 is wrong) or round (output >= 0.5 is class 1).", choices=DB_RULES))

    def __post_init__(self) -> None:
        for name in ("widths", "ticket_units"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "heuristics", tuple(self.heuristics))
        self.check()

    def check(self) -> None:
        """Raise ValueError with a one-line reason for settings that make no sense."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)
        need(self.trials >= 1, f"trials must be at least 1, not {self.trials}")
        need(self.seed >= 0, f"seed must be >= 0, not {self.seed}")
        need(0 <= self.relu_grad_at_zero <= 1, f"relu_grad_at_zero must lie in [0, 1], not {self.relu_grad_at_zero}")
        need(self.std > 0 and math.isfinite(self.std), f"std must be a positive number, not {self.std}")
        need(self.hidden >= 2, f"hidden must be at least 2, not {self.hidden}")
        need(bool(self.widths) and all(1 <= w <= self.hidden for w in self.widths),
             f"widths must be a non-empty list in 1..{self.hidden}, not {list(self.widths)}")
        need(bool(self.heuristics), "heuristics must name at least one of input, output, product")
        for h in (*self.heuristics, self.oneshot_heuristic):
            need(h in HEURISTICS, f"unknown heuristic {h!r}; choose from {', '.join(HEURISTICS)}")
        need(len(set(self.heuristics)) == len(self.heuristics), f"heuristics repeat: {list(self.heuristics)}")
        need(self.prune_step >= 1, f"prune_step must be at least 1, not {self.prune_step}")
        need(bool(self.ticket_units), "ticket_units must list at least one ticket size")
        for u in self.ticket_units:
            need(1 <= u < self.hidden and (self.hidden - u) % self.prune_step == 0,
                 f"ticket size {u} is not reachable from {self.hidden} units in steps of {self.prune_step}")
        self.trainer()
        self.judge()

    def training(self) -> dict[str, Any]:
        """The settings that determine the trained networks."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in JUDGE}

    def trainer(self) -> trainers.FullBatch:
        per_step = None if self.examples_per_step >= len(datasets.xor_points()[1]) else self.examples_per_step
        return trainers.FullBatch(self.optimizer, self.lr, self.iterations, self.loss, self.chunk, self.adam_eps,
                                  self.lr_schedule, per_step)

    def stochastic(self) -> bool:
        return self.trainer().examples_per_step is not None

    def judge(self) -> judges.XorSuccess:
        return judges.XorSuccess(self.zero_loss, self.zero_loss_over, self.db_rule)

    def network(self) -> runner.Network:
        net = models.xor_net(self.hidden, self.std, self.relu_grad_at_zero)
        return runner.Network(net, (2,), {"hidden": self.hidden, "std": self.std,
                                          "relu_grad_at_zero": self.relu_grad_at_zero})

    def rounds(self) -> list[int]:
        """Widths the iterative runs pass through after the original (10 -> 8 -> 6 -> 4 -> 2)."""
        return list(range(self.hidden - self.prune_step, min(self.ticket_units) - 1, -self.prune_step))


@dataclasses.dataclass(frozen=True)
class XorKeys:
    """The XOR sweep's streams (module docstring): trial ``i`` of stream ``name`` draws from
    ``split(fold_in(key(seed), crc32(name)), trials)[i]``."""

    seed: int
    trials: int
    # Names enter the programs as traced numbers, so the lines share their compiled set-up.
    init_stream: str = dataclasses.field(default="original", compare=False)
    line: str = dataclasses.field(default="", compare=False)  # "iterative/input": names its controls' streams
    # Stochastic steps: trial i's example order comes from the stream "batches" (the same for an
    # original, its tickets and their controls); full-batch training draws nothing.
    ordered: bool = False

    def hashed(self) -> dict[str, Any]:
        out = {"keys": "xor-streams", "seed": self.seed, "init_stream": self.init_stream, "line": self.line}
        if self.ordered:
            out["batches"] = "batches"
        return out

    def _stream(self, code: Any) -> jax.Array:
        return jax.random.split(jax.random.fold_in(jax.random.key(self.seed), code), self.trials)

    def init_code(self) -> int:
        return zlib.crc32(self.init_stream.encode())

    def init(self, seeds: jax.Array, code: jax.Array) -> jax.Array:
        return self._stream(code)[seeds]

    def batches(self, seeds: jax.Array, slot: Any) -> jax.Array:
        if self.ordered:
            return self._stream(zlib.crc32(b"batches"))[seeds]
        # Full-batch training draws nothing; every trial gets the same (unused) key.
        return jax.vmap(lambda _: jax.random.key(0))(seeds)

    def code(self, level: runner.Level) -> int:
        return zlib.crc32(f"{self.line}/{int(level.value)}/reinit".encode())

    def control(self, seeds: jax.Array, role: str, code: jax.Array, replicate: jax.Array) -> jax.Array:
        if role != "reinit":
            raise ValueError(f"the XOR sweep runs reinit controls only, not {role!r}")
        return self._stream(code)[seeds]


def lotteries(s: Settings) -> dict[str, runner.Lottery]:
    """Every line of Figures 1 and 2 as a lottery, by name (``random/8``, ``oneshot/product``,
    ``iterative/input``, ...); ``random/<hidden>`` are the originals of every Figure 2 line."""
    net, trainer, judge = s.network(), s.trainer(), s.judge()
    trials = tuple(range(s.trials))
    reinit = 1 if s.reinit else 0

    def make(name: str, rule: rules.Units, mode: str = "oneshot", init_stream: str = "original",
             controls: int = reinit, **proc: Any) -> runner.Lottery:
        procedure = runner.Procedure(mode=mode, seeds=trials, reinit=controls, shuffle=0,
                                     control_levels=s.ticket_units, **proc)
        return runner.Lottery(net, procedure, rule, trainer, judge, data="xor",
                              keys=XorKeys(s.seed, s.trials, init_stream, name, s.stochastic()), quick_setup=False)

    out = {}
    for w in sorted(set(s.widths) | {s.hidden}, reverse=True):
        rule = rules.Units(s.oneshot_heuristic, full=w, start_units=None if w == s.hidden else w)
        out[f"random/{w}"] = make(f"random/{w}", rule, init_stream="original" if w == s.hidden else f"random/{w}",
                                  controls=0)
    name = f"oneshot/{s.oneshot_heuristic}"
    out[name] = make(name, rules.Units(s.oneshot_heuristic, full=s.hidden, with_bias=s.score_bias),
                     levels=s.ticket_units)
    for h in s.heuristics:
        out[f"iterative/{h}"] = make(f"iterative/{h}", rules.Units(h, full=s.hidden, per_round=s.prune_step,
                                                                   with_bias=s.score_bias),
                                     mode="iterative", rounds=len(s.rounds()))
    return out


def program_sizes(s: Settings, merged: bool = True) -> list[int]:
    """Trainings (in units of ``trials``) in each program of the runner, all lines together, the
    ten-unit originals counted once: program 0 is Figure 1, then round by round, the one-shot
    tickets (both pruned from the originals) with the first iterative round when levels merge
    (``merge_levels``, an accelerator's default), else the k-th of them with round k."""
    re = 1 if s.reinit else 0
    sizes = [len(set(s.widths) | {s.hidden})]
    for k, width in enumerate(s.rounds(), start=1):
        oneshot = (1 + re) * ((len(s.ticket_units) if k == 1 else 0) if merged else int(k <= len(s.ticket_units)))
        sizes.append(oneshot + len(s.heuristics) * (1 + (re if width in s.ticket_units else 0)))
    return sizes


def trainings(s: Settings) -> int:
    """Trainings the sweep asks for (27,000 for the paper's 1000 trials). A run trains at most
    this many: the runner trains identical trials once, e.g. two heuristics that keep the same
    two units of the same original (``trainings_run_now`` in the sweep's JSON)."""
    return s.trials * sum(program_sizes(s))


def fitted_chunk(s: Settings) -> Settings:
    """``s`` with a chunk no larger than the largest program (a larger one would only train padding)."""
    return dataclasses.replace(s, chunk=min(s.chunk, s.trials * max(program_sizes(s))))


def run(s: Settings, root: str | Path, progress: runner.Progress | None = None,
        devices: int | Any | None = None) -> dict[str, Path]:
    """Train (or reload) every line; returns the run directory of each, by name. ``devices``:
    how many (or which) devices the trials are split across (default: all; see
    :func:`lth_jax.runner.run_groups`)."""
    lines = lotteries(s)
    paths = runner.run_groups(list(lines.values()), datasets.xor_points(), root, progress=progress, devices=devices)
    return dict(zip(lines, paths, strict=True))


# ---------------------------------------------------------------- reading the stored lines


def outcomes(s: Settings, paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """Final logits (trials, 4) of every job: ``random/<w>``, ``<line>/<units>`` (tickets) and
    ``<line>/<units>/reinit``, read from the stored records."""
    out = {}
    for name, path in paths.items():
        for rec in runner.records(path, arrays=True):
            units = int(rec.metrics["percent_nominal"])
            z = rec.arrays[ondisk.LOGITS]
            if name.startswith("random/"):
                out[name] = z[:s.trials]
                continue
            if units == s.hidden:
                continue  # a line's originals: the same trainings as random/<hidden>
            out[f"{name}/{units}"] = z[:s.trials]
            if z.shape[0] > s.trials:
                out[f"{name}/{units}/reinit"] = z[s.trials:2 * s.trials]
    return out


def _pct(flags_: np.ndarray) -> float:
    return 100.0 * float(np.mean(flags_)) if len(flags_) else float("nan")


def binomial_se_pp(pct: float, n: int) -> float:
    """Binomial standard error of a percentage over ``n`` trials, in percentage points."""
    if n == 0 or not math.isfinite(pct):
        return float("nan")
    p = pct / 100.0
    return 100.0 * math.sqrt(p * (1 - p) / n)


def _row(table: str, setting: str, db: np.ndarray, zl: np.ndarray, paper_: tuple[float, float] | None = None,
         given: tuple[np.ndarray, np.ndarray] | None = None, **extra: Any) -> dict[str, Any]:
    """A result row. ``given``: the conditions (per trial) of a conditional rate."""
    if given is None:
        n_db = n_zl = len(db)
        d, z = _pct(db), _pct(zl)
    else:
        n_db, n_zl = int(given[0].sum()), int(given[1].sum())
        d, z = _pct(db[given[0]]), _pct(zl[given[1]])
    row = {"table": table, "setting": setting, "trials": len(db), "n_db": n_db, "n_zl": n_zl,
           "db": d, "zl": z, "db_se": binomial_se_pp(d, n_db), "zl_se": binomial_se_pp(z, n_zl),
           "paper_db": paper_[0] if paper_ else None, "paper_zl": paper_[1] if paper_ else None}
    row.update(extra)
    return row


def results(s: Settings, logits: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every row of both figures, the controls, and the paper's qualitative claims."""
    judge = s.judge()
    ok = {name: judge.judge(z) for name, z in logits.items()}
    rows = []
    for w in sorted(set(s.widths), reverse=True):
        rows.append(_row("figure1", f"random, {w} units", *ok[f"random/{w}"], paper.FIGURE1.get(w), units=w))
    o_db, o_zl = ok[f"random/{s.hidden}"]
    strategies = [(f"one-shot {s.oneshot_heuristic}", "oneshot/" + s.oneshot_heuristic)]
    strategies += [(f"iterative {h}", f"iterative/{h}") for h in s.heuristics]
    for label, prefix in strategies:
        fig2 = paper.FIGURE2.get(label, {})
        rows.append(_row("figure2", f"{label}: original {s.hidden} units", o_db, o_zl, fig2.get(s.hidden),
                         units=s.hidden, strategy=label))
        for u in s.ticket_units:
            db, zl = ok[f"{prefix}/{u}"]
            rows.append(_row("figure2", f"{label}: {u}-unit ticket (original and ticket)", o_db & db, o_zl & zl,
                             fig2.get(u), units=u, strategy=label))
    for label, prefix in strategies:
        fig2 = paper.FIGURE2.get(label, {})
        for u in s.ticket_units:
            pc = None
            if u in fig2 and s.hidden in fig2:
                pc = tuple(100.0 * a / b for a, b in zip(fig2[u], fig2[s.hidden], strict=True))
            db, zl = ok[f"{prefix}/{u}"]
            # The paper's conditional rates are over its originals that succeeded (DB, ZL).
            given = {"paper_given": [v / 100.0 for v in fig2[s.hidden]]} if s.hidden in fig2 else {}
            rows.append(_row("conditional", f"{label}: {u}-unit ticket | original succeeded", db, zl, pc,
                             given=(o_db, o_zl), units=u, strategy=label, kind="ticket", **given))
            if s.reinit:
                db, zl = ok[f"{prefix}/{u}/reinit"]
                rows.append(_row("conditional", f"{label}: {u}-unit ticket reinitialised | original succeeded",
                                 db, zl, given=(o_db, o_zl), units=u, strategy=label, kind="reinit"))
    for u in s.ticket_units:
        if f"random/{u}" in ok:
            db, zl = ok[f"random/{u}"]
            rows.append(_row("conditional", f"random {u}-unit net (independent of the original)", db, zl,
                             paper.FIGURE1.get(u), units=u, kind="random"))
    return {"rows": rows, "claims": claims(rows, s)}


FIDELITY_SE = 2.0
"""A cell reproduces the paper when ours and the paper's differ by at most this many combined SEs."""


def fidelity(rows: Sequence[dict], paper_trials: int = paper.XOR.trials) -> dict[str, Any]:
    """The paper's 26 numeric cells of Figures 1-2 (Figure 1's DB and ZL at five widths; Figure 2's
    joint DB and ZL of the 4- and 2-unit tickets of four strategies; the originals' column is left
    out, being Figure 1's ten-unit networks again), each with ours, the paper's, and the gap in
    combined binomial SEs (ours over our ``n``, the paper's over its 1000 trials), plus the
    footnote-4 conditional cells scored the same way."""
    def cell(r: dict, metric: str) -> dict[str, Any] | None:
        ours, theirs = r[metric], r[f"paper_{metric}"]
        if theirs is None or not math.isfinite(ours):
            return None
        n = r["n_db"] if metric == "db" else r["n_zl"]
        p_n = paper_trials
        if "paper_given" in r:
            p_n = round(paper_trials * r["paper_given"][metric == "zl"])
        se = math.hypot(binomial_se_pp(ours, n), binomial_se_pp(theirs, p_n))
        gap = (ours - theirs) / se if se > 0 else (0.0 if ours == theirs else math.inf)
        return {"table": r["table"], "setting": r["setting"], "metric": metric.upper(), "units": r["units"],
                "strategy": r.get("strategy"), "ours": ours, "paper": theirs, "n": n, "se": se,
                "gap_in_se": gap, "within": abs(gap) <= FIDELITY_SE}

    def cells(table: str, keep: Any) -> list[dict]:
        out = [cell(r, m) for r in rows if r["table"] == table and keep(r) for m in ("db", "zl")]
        return [c for c in out if c is not None]

    hidden = max(r["units"] for r in rows if r["table"] == "figure1")
    main = cells("figure1", lambda r: True) + cells("figure2", lambda r: r["units"] != hidden)
    cond = cells("conditional", lambda r: r.get("kind") == "ticket")
    return {"cells": main, "within": sum(c["within"] for c in main), "total": len(main),
            "conditional": cond, "conditional_within": sum(c["within"] for c in cond), "limit_se": FIDELITY_SE}


def find_row(rows: Sequence[dict], **match: Any) -> dict | None:
    """The first row whose entries equal ``match``."""
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def claims(rows: Sequence[dict], s: Settings) -> list[dict[str, Any]]:
    """The paper's qualitative claims, each with our two numbers and the gap in standard errors."""
    out = []

    def compare(text: str, a: dict | None, b: dict | None, metric: str, ties_hold: bool = False) -> None:
        if a is None or b is None:
            return
        gap = a[metric] - b[metric]
        se = math.hypot(a[f"{metric}_se"], b[f"{metric}_se"])
        known = math.isfinite(gap)
        out.append({"claim": text, "metric": metric.upper(), "a": a[metric], "b": b[metric],
                    "a_se": a[f"{metric}_se"], "b_se": b[f"{metric}_se"],
                    "gap_in_se": gap / se if known and se > 0 else None,
                    "holds": (bool(gap > 0 or (ties_hold and gap == 0)) if known else None)})

    fig1 = sorted((r for r in rows if r["table"] == "figure1"), key=lambda r: -r["units"])
    for metric in ("db", "zl"):
        for wide, narrow in zip(fig1, fig1[1:], strict=False):
            compare(f"{wide['units']} random units do at least as well as {narrow['units']}", wide, narrow,
                    metric, ties_hold=True)
    small = min(s.ticket_units)
    best = f"iterative {s.oneshot_heuristic}" if s.oneshot_heuristic in s.heuristics else None
    for metric in ("db", "zl"):
        for label in [f"iterative {h}" for h in s.heuristics] + [f"one-shot {s.oneshot_heuristic}"]:
            t = find_row(rows, table="conditional", strategy=label, units=small, kind="ticket")
            compare(f"{label} {small}-unit tickets (| original) beat random {small}-unit nets", t,
                    find_row(rows, table="conditional", units=small, kind="random"), metric)
            compare(f"{label} {small}-unit tickets (| original) beat their reinitialised controls", t,
                    find_row(rows, table="conditional", strategy=label, units=small, kind="reinit"), metric)
        if best:
            compare(f"{best} beats one-shot {s.oneshot_heuristic} at {small} units (joint)",
                    find_row(rows, table="figure2", strategy=best, units=small),
                    find_row(rows, table="figure2", strategy=f"one-shot {s.oneshot_heuristic}", units=small), metric)
    return out


def sweep(s: Settings, root: str | Path, progress: runner.Progress | None = None,
          devices: int | Any | None = None) -> dict[str, Any]:
    """Run (or reload) everything; the JSON-able result: rows, claims, where it is stored."""
    paths = run(s, root, progress, devices)
    res = results(s, outcomes(s, paths))
    res["fidelity"] = fidelity(res["rows"])
    res.update({"settings": dataclasses.asdict(s), "runs": {k: str(v) for k, v in paths.items()}})
    return res
