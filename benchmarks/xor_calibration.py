"""Calibrate the XOR settings the paper leaves out, against its Figure 1.

    python -m benchmarks.xor_calibration --trials=1000   # writes benchmarks/xor_calibration.{md,json}

The paper gives neither the optimiser, the learning rate, the ReLU derivative at
0 (it decides the first step: with zero biases the input (0, 0) puts every hidden
unit at exactly 0), nor what "reached zero loss" means. For each candidate
(relu'(0), optimiser, learning rate) this trains ``trials`` random networks at
each width (10, 8, 6, 4, 2 units: the ``random/<w>`` lotteries of
:func:`lth_jax.xor.lotteries`, Figure 1 alone, trained together by
:func:`lth_jax.runner.run_groups` and stored where the sweep stores them, so
the chosen candidate's networks are reused by ``experiments.xor_sweep``) and
reports:

- DB % per width under both decision rules (strict: an output of 0.5 is wrong;
  round: 0.5 counts as class 1). No free parameter.
- ZL % per width for hard outputs (threshold 0, the paper's words) and for the
  per-example loss threshold that best fits the paper's ZL row (one fitted
  number per candidate, least squares over the five widths).
- Diagnostics for two-unit nets: how many start with both units alive (some
  input gives a positive pre-activation), how many end so, and DB among those
  that started alive.

Candidates are ranked by the RMS distance of all ten numbers (DB with no fit,
ZL with its fitted threshold) from the paper's.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments import xla_cpu
from experiments.progress import LevelBars
from lth_jax import judges, metrics, paper, runner, store, xor
from lth_jax import masks as masks_lib

FLAGS = flags.FLAGS
flags.DEFINE_integer("trials", 1000, "Networks per width and candidate.")
flags.DEFINE_integer("seed", 0, "Seed (the sweep's default, so the chosen candidate's nets are shared).")
flags.DEFINE_string("cache_dir", "runs/xor", "Where trained networks are cached (the sweep's --out_dir; the runs "
                    "go to its cache/ folder, as the sweep's do).")
flags.DEFINE_string("out", "benchmarks/xor_calibration", "Output path without extension (.md and .json).")
flags.DEFINE_list("only", [], "Run only candidates whose label contains one of these strings.")

# (relu'(0), optimiser, learning rate): both ReLU conventions over the optimisers and a
# decade or more of learning rates each, plus jnp.maximum's 0.5.
CANDIDATES: list[tuple[float, str, float]] = [
    (g, opt, lr) for g in (0.0, 1.0)
    for opt, lr in (("sgd", 0.05), ("sgd", 0.2), ("sgd", 0.5), ("sgd", 1.0), ("sgd", 2.0), ("momentum", 0.05),
                    ("adam", 0.0005), ("adam", 0.001), ("adam", 0.002), ("adam", 0.003), ("adam", 0.01))
] + [(0.5, "sgd", 0.5), (0.5, "adam", 0.001)]

# 0 (hard outputs), quarter decades from 1e-1 to 1e-8, and the losses that print as zero at
# three and four decimals.
THRESHOLDS = sorted({0.0, 5e-4, 5e-5} | {float(f"{10 ** (-k / 4):.3g}") for k in range(4, 33)}, reverse=True)
WIDTHS = (10, 8, 6, 4, 2)


def label(g: float, opt: str, lr: float) -> str:
    return f"relu'(0)={g:g} {opt} lr={lr:g}"


class Width(NamedTuple):
    """One Figure 1 line as stored: its networks' initial values, masks, trained values and final logits."""

    params: dict
    masks: dict
    trained: dict
    logits: np.ndarray


def figure1(s: xor.Settings, cache: str) -> tuple[dict[str, Width], int]:
    """Train (or reload) the random networks of every width of ``s``; returns them by line name
    (``random/<w>``) and how many trainings ran now."""
    lines = {name: lt for name, lt in xor.lotteries(s).items() if name.startswith("random/")}
    bars = LevelBars(1, enabled=False, describe=lambda level, metrics: "")  # counts what it trains, silently
    paths = runner.run_groups(list(lines.values()), metrics.xor_data(), Path(cache) / "cache", progress=bars)
    bars.close()
    out = {}
    for name, path in zip(lines, paths, strict=True):
        (rec,) = runner.records(path, arrays=True)  # one level: the width itself
        m = store.subtree(rec.arrays, "masks")
        init = store.subtree(store.load_level(path, runner.INIT).arrays, "init")
        out[name] = Width(jax.device_get(masks_lib.apply(init, m)), m, store.subtree(rec.arrays, "trained"),
                          rec.arrays["logits"])
    return out, bars.trained


def alive_units(params: dict, masks_alive: np.ndarray) -> np.ndarray:
    """Per trial, how many existing hidden units have a positive pre-activation on some input."""
    x, _ = metrics.xor_data()
    k, b = np.asarray(params["Dense_0"]["kernel"]), np.asarray(params["Dense_0"]["bias"])
    pre = np.einsum("pi,tij->tpj", np.asarray(x), k) + b[:, None, :]
    return np.sum(np.any(pre > 0, axis=1) & masks_alive, axis=1)


def evaluate(g: float, opt: str, lr: float, trials: int, seed: int, cache: str) -> dict:
    s = xor.fitted_chunk(xor.Settings(trials=trials, seed=seed, optimizer=opt, lr=lr, relu_grad_at_zero=g,
                                      widths=WIDTHS))
    t0 = time.perf_counter()
    jobs, trained_now = figure1(s, cache)
    seconds = time.perf_counter() - t0
    _, y = metrics.xor_data()
    out = {"label": label(g, opt, lr), "relu_grad_at_zero": g, "optimizer": opt, "learning_rate": lr,
           "trials": trials, "seconds": seconds, "trained_now": trained_now, "db": {}, "zl": {}}
    for rule in xor.DB_RULES:
        judge = judges.XorSuccess(s.zero_loss, s.zero_loss_over, rule)
        out["db"][rule] = {w: 100 * float(np.mean(judge.judge(jobs[f"random/{w}"].logits)[0])) for w in WIDTHS}
    out["zl"] = {over: {t: {w: 100 * float(np.mean(metrics.zero_loss(jnp.asarray(jobs[f"random/{w}"].logits), y, t,
                                                                        over))) for w in WIDTHS}
                        for t in THRESHOLDS} for over in xor.ZL_OVER}
    sse = lambda over, t: sum((out["zl"][over][t][w] - paper.FIGURE1[w][1]) ** 2 for w in WIDTHS)  # noqa: E731
    out["zl_fit"] = {over: min(THRESHOLDS, key=lambda t, over=over: sse(over, t)) for over in xor.ZL_OVER}
    over = min(xor.ZL_OVER, key=lambda o: sse(o, out["zl_fit"][o]))
    fit = out["zl_fit"][over]
    out["zl_fit_over"], out["zl_fit_threshold"] = over, fit
    out["zl_fitted"] = out["zl"][over][fit]
    db = out["db"]["strict"]
    errs = [db[w] - paper.FIGURE1[w][0] for w in WIDTHS] + [out["zl_fitted"][w] - paper.FIGURE1[w][1] for w in WIDTHS]
    out["rms"] = math.sqrt(sum(e * e for e in errs) / len(errs))
    out["db_rms"] = math.sqrt(sum(e * e for e in errs[:5]) / 5)
    two = jobs["random/2"]
    exists = np.asarray(two.masks["Dense_0"]["bias"])
    start, end = alive_units(two.params, exists), alive_units(two.trained, exists)
    ok2 = s.judge().judge(two.logits)[0]
    out["two_units"] = {"both_alive_at_init": 100 * float(np.mean(start == 2)),
                        "both_alive_at_end": 100 * float(np.mean(end == 2)),
                        "db_given_both_alive_at_init": 100 * float(np.mean(ok2[start == 2])),
                        "db_given_a_dead_unit_at_init": 100 * float(np.mean(ok2[start < 2]))
                        if np.any(start < 2) else None}
    return out


def markdown(results: list[dict], trials: int) -> str:
    se = lambda p: 100 * math.sqrt(max(p / 100 * (1 - p / 100), 0) / trials)  # noqa: E731
    lines = [
        "# XOR calibration against the paper's Figure 1",
        "",
        f"Regenerate: `python -m benchmarks.xor_calibration --trials={trials}` "
        "(benchmarks/xor_calibration.py; raw numbers in xor_calibration.json).",
        "",
        f"Each cell: {trials} random networks of that width trained 10,000 full-batch steps (mean sigmoid "
        "cross-entropy, truncated-normal init std 0.1, zero biases). Binomial SE of a cell is at most "
        f"{se(50):.1f} points (at 50 %), {se(90):.1f} at 90 %. DB uses the strict rule (the round rule differs in "
        "the column 'round≠strict' only where it changed any width). ZL fit: the per-example loss threshold "
        "that best matches the paper's ZL row (least squares over the five widths); ZL hard: threshold 0 "
        "(outputs exactly 0 or 1 in float32). The fit may judge every example's loss or their mean (the "
        "training loss). RMS: over all ten numbers (DB unfitted, ZL fitted).",
        "",
        "| candidate | DB 10/8/6/4/2 | round≠strict | ZL hard | ZL fit thr | ZL fitted 10/8/6/4/2 | RMS | "
        "2u: both alive at init / end | 2u DB given both alive at init |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        "| **paper** | " + " / ".join(f"{paper.FIGURE1[w][0]:.1f}" for w in WIDTHS) + " | | | | "
        + " / ".join(f"{paper.FIGURE1[w][1]:.1f}" for w in WIDTHS) + " | | | |",
    ]
    ranked = sorted(results, key=lambda r: r["rms"])
    for r in ranked:
        db, rd = r["db"]["strict"], r["db"]["round"]
        diff = "" if all(rd[w] == db[w] for w in WIDTHS) else " / ".join(f"{rd[w]:.1f}" for w in WIDTHS)
        zl = r["zl_fitted"]
        hard = r["zl"]["every"][0.0]
        t2 = r["two_units"]
        lines.append(
            f"| {r['label']} | " + " / ".join(f"{db[w]:.1f}" for w in WIDTHS) + f" | {diff} | "
            + " / ".join(f"{hard[w]:.0f}" for w in WIDTHS) + f" | {r['zl_fit_over']} ≤ {r['zl_fit_threshold']:g} | "
            + " / ".join(f"{zl[w]:.1f}" for w in WIDTHS) + f" | {r['rms']:.1f} | "
            f"{t2['both_alive_at_init']:.1f} / {t2['both_alive_at_end']:.1f} | "
            f"{t2['db_given_both_alive_at_init']:.1f} |")
    lines += findings(results, ranked, trials)
    return "\n".join(lines) + "\n"


def findings(results: list[dict], ranked: list[dict], trials: int) -> list[str]:
    """What the table shows, with its numbers read from the results."""
    by = {(r["relu_grad_at_zero"], r["optimizer"], r["learning_rate"]): r for r in results}
    d = xor.Settings()
    chosen = by.get((d.relu_grad_at_zero, d.optimizer, d.lr))
    zero = by.get((0.0, d.optimizer, d.lr))
    if chosen is None or zero is None:
        return []
    f = lambda v: f"{v:.1f}"  # noqa: E731
    row = lambda r, key="strict": " / ".join(f(r["db"][key][w]) for w in WIDTHS)  # noqa: E731
    t0, t1 = zero["two_units"], chosen["two_units"]
    sens = chosen["zl"][d.zero_loss_over]
    near = [t for t in THRESHOLDS if 1e-4 <= t <= 2e-3]
    lines = [
        "",
        "## What the table shows",
        "",
        f"- **Why random two-unit networks fail.** With zero initial biases the input (0, 0) puts every hidden unit at "
        f"exactly 0, where jax's ReLU (like `tf.nn.relu` and PyTorch) has derivative 0. A unit whose two incoming "
        f"weights are negative (probability 1/4 at init) is then below zero on every input and never receives a "
        f"gradient: only {f(t0['both_alive_at_init'])} % of two-unit nets start with both units alive (9/16 = 56.25 % "
        f"expected), and with relu'(0)=0 none of the others can learn XOR. Dying goes on in training: a unit active "
        f"on one class-1 point whose output weight has the wrong sign is switched off before its output weight "
        f"flips (a race that does not depend on the learning rate), so only {f(t0['db_given_both_alive_at_init'])} % "
        f"of the nets that start with two live units find the boundary, and "
        f"{f(t0['db_given_a_dead_unit_at_init'])} % of the rest ({zero['label']}).",
        f"- **relu'(0) = 1** (what `tf.maximum(x, 0)` gives, a common hand-written ReLU) lets the (0, 0) example "
        f"move every unit's bias in the first step: {f(t1['db_given_a_dead_unit_at_init'])} % of the two-unit nets "
        f"that start with a dead unit now find the boundary, and {f(t1['db_given_both_alive_at_init'])} % of those "
        f"with two live units ({chosen['label']}). DB per width 10/8/6/4/2 goes from {row(zero)} to {row(chosen)} "
        "(paper "
        + " / ".join(f(paper.FIGURE1[w][0]) for w in WIDTHS) + "): the 4- to 10-unit columns now match within about "
        "2 points; 0.5 (jnp.maximum) lies between.",
        f"- **Still short at two units** ({f(chosen['db']['strict'][2])} % vs the paper's 49.1 %): the paper's "
        f"figure is what one would get if nearly every two-unit net that starts with both units alive succeeded "
        f"(49.1 / 56.25 = 87 %); ours do so {f(t1['db_given_both_alive_at_init'])} % of the time, and no optimiser, "
        "learning rate, loss reduction or DB rule in the table changes that by more than a few points. Exploratory "
        "runs (500 nets, 4 and 2 units, not part of this table) with MSE on the sigmoid output, MSE on the logit, a "
        "two-way softmax output, inputs in {-1, 1}, no hidden biases, or init std 0.01-1 did no better.",
        "- **The DB rule does not matter**: an output of exactly 0.5 at a class-1 point essentially never happens "
        "(the round≠strict column is empty).",
        "- **Optimiser and learning rate** hardly move DB (SGD 0.05-1, momentum, Adam 0.0005-0.01 agree within "
        "about 2 points; SGD at 2 starts to lose runs); they set how far the margins grow in 10,000 steps, hence ZL.",
        "- **Zero loss cannot mean hard 0/1 outputs** (column 'ZL hard': 0 % everywhere): no candidate drives every "
        "|logit| past ~17 in 10,000 steps. It must be a threshold on the loss; one threshold per candidate is fitted "
        "to the paper's ZL row. Adam at 0.001-0.002 follows the *shape* of that row across widths most closely; "
        "with SGD or momentum a threshold that fits the wide nets leaves the narrow ones off, or the reverse.",
        f"- **Chosen** (the sweep's defaults): relu'(0)={d.relu_grad_at_zero:g}, {d.optimizer} lr={d.lr:g} "
        f"(TensorFlow's default Adam rate), ZL = {d.zero_loss_over} example's cross-entropy <= {d.zero_loss:g}, "
        f"DB strict; lowest RMS ({f(chosen['rms'])} points; rank {ranked.index(chosen) + 1} of {len(ranked)}). "
        "Two-unit ZL is very sensitive to the threshold, because two-unit margins after 10,000 steps are tightly "
        "bunched: ZL 10/8/6/4/2 at thresholds " + "; ".join(
            f"{t:g}: " + " / ".join(f(sens[t][w]) for w in WIDTHS) for t in near) + ".",
        "",
        f"Sample size: {trials} networks per cell; the seed and every other setting are the sweep's defaults, so "
        "the chosen candidate's Figure 1 networks are the ones `python -m experiments.xor_sweep` reports.",
    ]
    return lines


def main(argv: list[str]) -> None:
    del argv
    xla_cpu.speed_up_xla_cpu()
    out = Path(FLAGS.out)
    cands = [c for c in CANDIDATES if not FLAGS.only or any(o in label(*c) for o in FLAGS.only)]
    results = []
    for c in cands:
        r = evaluate(*c, FLAGS.trials, FLAGS.seed, FLAGS.cache_dir)
        db = r["db"]["strict"]
        zl = r["zl_fitted"]
        print(f"{r['label']:32s} DB " + " ".join(f"{db[w]:5.1f}" for w in WIDTHS)
              + f" | ZL {r['zl_fit_over']}<={r['zl_fit_threshold']:g} " + " ".join(f"{zl[w]:5.1f}" for w in WIDTHS)
              + f" | rms {r['rms']:.1f} | {r['seconds']:.0f}s", flush=True)
        results.append(r)
    store.write_json(out.with_suffix(".json"), {"trials": FLAGS.trials, "seed": FLAGS.seed, "widths": WIDTHS,
                                                "paper": paper.FIGURE1, "candidates": results})
    out.with_suffix(".md").write_text(markdown(results, FLAGS.trials))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
