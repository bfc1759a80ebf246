"""Calibrate the XOR settings the paper leaves out, scored on all 26 cells of Figures 1 and 2.

    python -m benchmarks.xor_calibration --trials=1000 --seeds=0,1   # writes benchmarks/xor_calibration.{md,json}

The paper gives neither the optimiser, the learning rate, Adam's epsilon, a learning-rate
schedule, how many examples a step sees, the ReLU derivative at 0, whether a unit's "input
weights" include its bias, nor what "reached zero loss" means. Each candidate is a set of
:class:`lth_jax.reproduction.xor.Settings` fields; for each seed it trains every line of both figures
(:func:`lth_jax.reproduction.xor.run`, the sweep's own code, without the reinit controls, which no paper
cell scores), and then, for every zero-loss rule (every example's loss, or their mean: the
training loss) and threshold of a grid, scores :func:`lth_jax.reproduction.xor.fidelity`: how many of the
26 cells lie within 2 combined binomial SEs of the paper's.

A threshold fitted to all 26 cells flatters a candidate, so each is also scored out of sample:
the rule and threshold are fitted (most cells within 2 SE, then least squared gap) on
Figure 1 plus ONE row of Figure 2 (14 cells) and scored on the other three rows (12 cells);
each of the four rows takes the fitting turn. Every seed repeats this, and the threshold
fitted on the first seed is also scored on the others, so a choice that only fits one sample
shows. The default changes only for a candidate that wins on held-out cells at every seed.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags

from experiments import xla_cpu
from lth_jax import store
from lth_jax.reproduction import paper, xor

FLAGS = flags.FLAGS
flags.DEFINE_integer("trials", 1000, "Networks per line and candidate.")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds; each candidate is trained at every one.")
flags.DEFINE_string("cache_dir", "runs/xor", "Where trained networks are cached (the sweep's --out_dir; runs go to "
                    "its cache/ folder, so the sweep reuses the default candidate's Figure 1 networks).")
flags.DEFINE_string("out", "benchmarks/xor_calibration", "Output path without extension (.md and .json).")
flags.DEFINE_list("only", [], "Run only candidates whose label contains one of these strings.")

# Each candidate: a label and the Settings fields it changes from the sweep's defaults
# (relu'(0) = 1, Adam 0.001, full batch). The first block is the family a first probe tried;
# the second what it did not.
CANDIDATES: list[tuple[str, dict[str, Any]]] = [
    *[(f"adam {lr:g}", {"lr": lr}) for lr in (0.0005, 0.001, 0.002, 0.003, 0.01)],
    *[(f"sgd {lr:g}", {"optimizer": "sgd", "lr": lr}) for lr in (0.05, 0.2, 0.5, 1.0)],
    *[(f"momentum {lr:g}", {"optimizer": "momentum", "lr": lr}) for lr in (0.01, 0.05)],
    ("relu'(0)=0 adam 0.001", {"relu_grad_at_zero": 0.0}),
    *[(f"adam 0.001 eps={e:g}", {"adam_eps": e}) for e in (1e-7, 1e-6, 1e-4, 1e-3)],
    ("adam_tf1 0.001 (TF1 AdamOptimizer)", {"optimizer": "adam_tf1"}),
    ("adam 0.001 cosine decay", {"lr_schedule": "cosine"}),
    ("adam 0.003 cosine decay", {"lr": 0.003, "lr_schedule": "cosine"}),
    ("adam 0.002 linear decay", {"lr": 0.002, "lr_schedule": "linear"}),
    ("sgd 0.5 cosine decay", {"optimizer": "sgd", "lr": 0.5, "lr_schedule": "cosine"}),
    *[(f"adam 0.001, {b} example/step", {"examples_per_step": b}) for b in (1, 2)],
    *[(f"sgd 0.5, {b} example/step", {"optimizer": "sgd", "lr": 0.5, "examples_per_step": b}) for b in (1, 2)],
    ("sgd 0.2, 1 example/step", {"optimizer": "sgd", "lr": 0.2, "examples_per_step": 1}),
    ("adam 0.001, bias in unit scores", {"score_bias": True}),
    ("sgd 0.5, bias in unit scores", {"optimizer": "sgd", "lr": 0.5, "score_bias": True}),
]
DEFAULT = "adam 0.001"

# 0 (hard outputs), quarter decades from 1e-1 to 1e-8, and the losses that print as zero at
# three and four decimals.
THRESHOLDS = sorted({0.0, 5e-4, 5e-5} | {float(f"{10 ** (-k / 4):.3g}") for k in range(4, 33)}, reverse=True)
RULES = [(over, t) for over in xor.ZL_OVER for t in THRESHOLDS]
ROWS = tuple(paper.FIGURE2)  # the four strategies of Figure 2, each a fitting turn


def settings(fields: dict[str, Any], trials: int, seed: int) -> xor.Settings:
    return xor.fitted_chunk(xor.Settings(trials=trials, seed=seed, reinit=False, **fields))


def score_grid(s: xor.Settings, logits: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """For every ZL rule of the grid: each of the 26 cells' gap in SEs, and the conditional cells'."""
    out = []
    for over, t in RULES:
        res = xor.results(dataclasses.replace(s, zero_loss=t, zero_loss_over=over), logits)
        fid = xor.fidelity(res["rows"])
        out.append({"over": over, "threshold": t, "cells": fid["cells"], "conditional": fid["conditional"],
                    "claims_hold": sum(bool(c["holds"]) for c in res["claims"]), "claims": len(res["claims"]),
                    "claims_failing": [f"{c['metric']}: {c['claim']} ({c['a']:.1f} vs {c['b']:.1f})"
                                       for c in res["claims"] if not c["holds"]]})
    return out


def _count(cells: list[dict], keep: Any) -> tuple[int, float]:
    chosen = [c for c in cells if keep(c)]
    return sum(c["within"] for c in chosen), sum(min(c["gap_in_se"] ** 2, 1e6) for c in chosen)


def _fit(grid: list[dict], keep: Any) -> dict:
    """The rule with most ``keep`` cells within 2 SE, then the least squared gap."""
    return max(grid, key=lambda g: (_count(g["cells"], keep)[0], -_count(g["cells"], keep)[1]))


def in_row(row: str | None) -> Any:
    return lambda c: c["table"] == "figure1" or c["strategy"] == row


def held_out(row: str) -> Any:
    return lambda c: c["table"] == "figure2" and c["strategy"] != row


def summarize(grid: list[dict]) -> dict[str, Any]:
    """All-26 fit, the four fit/held-out turns, and the default rule's score."""
    best = _fit(grid, lambda c: True)
    turns = {}
    for row in ROWS:
        g = _fit(grid, in_row(row))
        turns[row] = {"over": g["over"], "threshold": g["threshold"], "fit": _count(g["cells"], in_row(row))[0],
                      "held_out": _count(g["cells"], held_out(row))[0]}
    d = xor.Settings()
    default_rule = next(g for g in grid if g["over"] == d.zero_loss_over and g["threshold"] == d.zero_loss)
    return {
        "all26": {"over": best["over"], "threshold": best["threshold"], "within": _count(best["cells"], bool)[0],
                  "claims_hold": best["claims_hold"], "claims": best["claims"],
                  "claims_failing": best["claims_failing"],
                  "conditional_within": sum(c["within"] for c in best["conditional"]),
                  "conditional": len(best["conditional"]),
                  "cells": [{k: c[k] for k in ("setting", "metric", "ours", "paper", "gap_in_se", "within")}
                            for c in best["cells"]]},
        "turns": turns, "held_out_mean": statistics.mean(t["held_out"] for t in turns.values()),
        "default_rule_within": _count(default_rule["cells"], bool)[0],
        "fig1_db": {c["units"]: c["ours"] for c in best["cells"] if c["table"] == "figure1" and c["metric"] == "DB"},
    }


def transfer(fitted: dict[str, Any], grid: list[dict]) -> dict[str, int]:
    """Held-out cells of another seed under the rules fitted on the first seed, per turn."""
    out = {}
    for row, t in fitted["turns"].items():
        g = next(g for g in grid if g["over"] == t["over"] and g["threshold"] == t["threshold"])
        out[row] = _count(g["cells"], held_out(row))[0]
    return out


def evaluate(label: str, fields: dict[str, Any], trials: int, seeds: list[int], cache: str) -> dict[str, Any]:
    out: dict[str, Any] = {"label": label, "fields": fields, "seeds": {}}
    grids = {}
    for seed in seeds:
        s = settings(fields, trials, seed)
        t0 = time.perf_counter()
        paths = xor.run(s, Path(cache) / "cache")
        seconds = time.perf_counter() - t0
        grids[seed] = score_grid(s, xor.outcomes(s, paths))
        out["seeds"][seed] = {**summarize(grids[seed]), "seconds": seconds}
    first = out["seeds"][seeds[0]]
    for seed in seeds[1:]:
        out["seeds"][seed]["transfer_from_first"] = transfer(first, grids[seed])
    out["held_out_min"] = min(v["held_out_mean"] for v in out["seeds"].values())
    return out


def selection(results: list[dict], seeds: list[int]) -> list[dict[str, Any]]:
    """For each seed and fitting row: the candidate that fits best, and what it scores held out."""
    out = []
    for seed in seeds:
        for row in ROWS:
            pick = max(results, key=lambda r: r["seeds"][seed]["turns"][row]["fit"])
            out.append({"seed": seed, "fit_row": row, "picked": pick["label"],
                        "fit": pick["seeds"][seed]["turns"][row]["fit"],
                        "held_out": pick["seeds"][seed]["turns"][row]["held_out"]})
    return out


def markdown(results: list[dict], picks: list[dict], trials: int, seeds: list[int]) -> str:
    s0 = seeds[0]
    f = lambda r: " / ".join(str(r["seeds"][s]["all26"]["within"]) for s in seeds)  # noqa: E731
    h = lambda r: " / ".join(f"{r['seeds'][s]['held_out_mean']:.1f}" for s in seeds)  # noqa: E731
    lines = [
        "# XOR calibration against the paper's Figures 1 and 2",
        "",
        f"Regenerate: `python -m benchmarks.xor_calibration --trials={trials} --seeds={','.join(map(str, seeds))}` "
        "(benchmarks/xor_calibration.py; raw numbers in xor_calibration.json; the causes of the cells still "
        "outside: `python -m benchmarks.xor_causes`, benchmarks/xor_causes.md).",
        "",
        f"Each candidate trains every line of Figures 1-2 ({trials} networks per line, 10,000 steps, "
        "truncated-normal std 0.1, zero biases) at each seed. A cell is *within* when ours and the paper's differ by "
        "at most 2 combined binomial SEs (ours over our n, the paper's over its 1000 trials). DB is the strict rule "
        "(no free parameter); ZL is a threshold on every example's loss or on their mean, chosen from a grid of "
        f"{len(RULES)} rules. **all 26**: the rule fitted to all 26 cells (optimistic). **held out**: the rule fitted "
        "on Figure 1 plus one Figure 2 row (14 cells), scored on the other three rows (12 cells), averaged over the "
        "four turns. **transfer**: the rules fitted at the first seed applied to the later seeds' networks. "
        "**fn. 4**: footnote-4 conditional cells within 2 SE (16), under the all-26 rule. **claims**: qualitative "
        "claims of section 2 that hold under the all-26 rule.",
        "",
        f"| candidate | all 26 (seeds {', '.join(map(str, seeds))}) | its ZL rule (seed {s0}) | held out of 12 | "
        "transfer | fn. 4 | claims | Fig. 1 DB 10/8/6/4/2 (seed 0) | s/seed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(results, key=lambda r: (-r["held_out_min"], -r["seeds"][s0]["all26"]["within"])):
        a = r["seeds"][s0]["all26"]
        tr = [statistics.mean(r["seeds"][s]["transfer_from_first"].values()) for s in seeds[1:]]
        db = r["seeds"][s0]["fig1_db"]
        db_row = " / ".join(f"{db[w]:.1f}" for w in sorted(db, reverse=True))
        secs = statistics.mean(v["seconds"] for v in r["seeds"].values())
        name = f"**{r['label']}** (default)" if r["label"] == DEFAULT else r["label"]
        lines.append(f"| {name} | {f(r)} | {a['over']} ≤ {a['threshold']:g} | {h(r)} | "
                     + " / ".join(f"{t:.1f}" for t in tr) + f" | {a['conditional_within']} | "
                     f"{a['claims_hold']}/{a['claims']} | {db_row} | {secs:.0f} |")
    lines += ["", "## Choosing on Figure 1 plus one row, scored on the other three", "",
              "| seed | fitting row | candidate picked | fit cells (of 14) | held-out cells (of 12) |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {p['seed']} | {p['fit_row']} | {p['picked']} | {p['fit']} | {p['held_out']} |" for p in picks]
    lines += findings(results, picks, seeds)
    return "\n".join(lines) + "\n"


def findings(results: list[dict], picks: list[dict], seeds: list[int]) -> list[str]:
    """The verdict, read from the numbers above."""
    by = {r["label"]: r for r in results}
    d = by.get(DEFAULT)
    if d is None:
        return []
    best = max(results, key=lambda r: r["held_out_min"])
    wins = [r for r in results if r["label"] != DEFAULT
            and all(r["seeds"][s]["held_out_mean"] > d["seeds"][s]["held_out_mean"] for s in seeds)]
    keeps_claims = lambda r: all(not r["seeds"][s]["all26"]["claims_failing"] for s in seeds)  # noqa: E731
    # A held-out win bought by losing cells overall is no win: the candidate must also put at
    # least as many of all 26 cells within 2 SE as the default, at every seed.
    no_worse = lambda r: all(r["seeds"][s]["all26"]["within"] >= d["seeds"][s]["all26"]["within"]  # noqa: E731
                             for s in seeds)
    eligible = [r["label"] for r in wins if keeps_claims(r) and no_worse(r)]
    kept_claims_but_worse = [f"{r['label']} (all 26: " + " / ".join(str(r["seeds"][s]["all26"]["within"])
                                                                     for s in seeds) + ")"
                             for r in wins if keeps_claims(r) and not no_worse(r)]
    dd = d["seeds"][seeds[0]]
    out = ["", "## Verdict", "",
           f"- The default ({DEFAULT}, relu'(0) = 1, ZL every example ≤ {xor.Settings().zero_loss:g}) puts "
           f"{dd['default_rule_within']} of 26 cells within 2 SE at seed {seeds[0]} with its own rule; "
           f"{dd['all26']['within']} with the rule fitted to all 26; held out, "
           + " / ".join(f"{d['seeds'][s]['held_out_mean']:.1f}" for s in seeds) + " of 12 (seeds "
           + ", ".join(map(str, seeds)) + ").",
           f"- Best held-out score at its worst seed: {best['label']} ({best['held_out_min']:.1f} of 12).",
           "- Candidates that beat the default on held-out cells at every seed, and the qualitative claims of "
           "section 2 each breaks under its fitted rule: "
           + ("; ".join(f"{r['label']}: " + (", ".join(sorted({c for s in seeds for c in
                                                                  r['seeds'][s]['all26']['claims_failing']}))
                                              or "none") for r in wins) if wins else "none") + ".",
           "- Those that keep every claim but put fewer of all 26 cells within 2 SE than the default ("
           + " / ".join(str(d["seeds"][s]["all26"]["within"]) for s in seeds) + "): "
           + (", ".join(kept_claims_but_worse) or "none") + ".",
           "- The default changes only for a candidate that wins held out at every seed, keeps every claim and "
           "loses no cell of the 26: " + (", ".join(eligible) if eligible else f"none, so the default stays {DEFAULT}")
           + f". The default itself keeps {'every' if keeps_claims(d) else 'NOT every'} claim at every seed.",
           "- Picked by fitting on Figure 1 plus one row: "
           + "; ".join(f"seed {p['seed']}, {p['fit_row']}: {p['picked']} ({p['held_out']}/12 held out)"
                       for p in picks) + "."]
    return out


def main(argv: list[str]) -> None:
    del argv
    xla_cpu.speed_up_xla_cpu()
    seeds = [int(s) for s in FLAGS.seeds]
    out = Path(FLAGS.out)
    cands = [c for c in CANDIDATES if not FLAGS.only or any(o in c[0] for o in FLAGS.only)]
    results = []
    for label, fields in cands:
        r = evaluate(label, fields, FLAGS.trials, seeds, FLAGS.cache_dir)
        print(f"{label:40s} all26 " + " ".join(str(r["seeds"][s]["all26"]["within"]) for s in seeds)
              + " | held out " + " ".join(f"{r['seeds'][s]['held_out_mean']:.1f}" for s in seeds)
              + f" | {sum(v['seconds'] for v in r['seeds'].values()):.0f}s", flush=True)
        results.append(r)
    picks = selection(results, seeds)
    store.write_json(out.with_suffix(".json"), {"trials": FLAGS.trials, "seeds": seeds, "paper_figure1": paper.FIGURE1,
                                                "paper_figure2": paper.FIGURE2, "candidates": results,
                                                "selection": picks})
    out.with_suffix(".md").write_text(markdown(results, picks, FLAGS.trials, seeds))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
