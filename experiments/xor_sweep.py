"""XOR, paper section 2: Figures 1 and 2 with their controls, in one run.

    python -m experiments.xor_sweep --trials=1000 --out_dir=runs/xor

Configuration (flags generated from :class:`lth_jax.reproduction.xor.Settings`, presets in
``experiments/configs/xor.py``) -> :func:`lth_jax.reproduction.xor.sweep` (every line of both figures
through the lottery runner; each level stored as soon as it is trained, so a rerun reuses it
and a killed run resumes) -> ``xor_sweep.json`` -> tables on stdout and ``xor_sweep.png``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments import cli, distributed
from experiments.configs.xor import PRESETS
from experiments.progress import LevelBars
from lth_jax import datasets, devices, store
from lth_jax.reproduction import paper, xor

FLAGS = cli.FLAGS


def define() -> None:
    cli.define_preset_flag(PRESETS, "paper")
    cli.define_flags(xor.Settings, PRESETS["paper"])
    cli.define_flag("out_dir", str, "runs/xor", "Where the JSON, the PNG and the stored runs (out_dir/cache) go.")
    cli.define_flag("progress", bool, True, "Show progress bars.")
    distributed.define_flags(budget=False)


def run() -> None:
    s = xor.fitted_chunk(cli.settings_from_flags(xor.Settings, cli.preset(PRESETS)))
    count = distributed.start()
    out = Path(FLAGS.out_dir)
    bars = LevelBars(len(s.rounds()) + 1, FLAGS.progress, describe=lambda level, metrics: "")
    t0 = time.perf_counter()
    res = xor.sweep(s, out / "cache", bars, devices=count)
    bars.close()
    # The chunk program's compile time, if this run trained anything (the program is cached).
    compile_s = s.trainer().compiled(s.network(), datasets.xor_points())[1] if bars.trained_now else 0.0
    res.update({
        "seconds": {"total": time.perf_counter() - t0, "compile": compile_s, "train": bars.seconds},
        "trainings_run_now": bars.trained_now,
        "trial_steps_per_second": bars.trained_now * s.iterations / bars.seconds if bars.seconds else None,
        "platform": {"jax": jax.__version__, "backend": jax.default_backend(), "cpus": os.cpu_count(),
                     "xla_flags": os.environ.get("XLA_FLAGS", "")},
    })
    if not devices.is_writer():  # the other processes of a multi-host run have trained their shards
        return
    print(format_tables(res, s))
    print(f"\n{res['trainings_run_now']} trainings run now in {bars.seconds:.1f} s (compile {compile_s:.1f} s); "
          f"whole sweep {res['seconds']['total']:.1f} s")
    store.write_json(out / "xor_sweep.json", res)
    plot(res, s, out / "xor_sweep.png")
    print(f"wrote {out / 'xor_sweep.json'} and {out / 'xor_sweep.png'} (stored runs under {out / 'cache'})")


def _fmt(v: float | None, se: float | None = None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:5.1f} ± {se:3.1f}" if se is not None and math.isfinite(se) else f"{v:5.1f}"


def format_tables(res: dict[str, Any], s: xor.Settings) -> str:
    """The printed report: both figures, conditionals with controls, and the claims."""
    rows = res["rows"]
    lines = [f"XOR ({s.trials} trials; {s.optimizer} lr={s.lr}, {s.iterations} iterations, "
             f"relu'(0)={s.relu_grad_at_zero}, ZL: {s.zero_loss_over} loss <= {s.zero_loss:g}, DB rule {s.db_rule}). "
             "Ours ± binomial SE (percentage points); paper in brackets.", ""]
    head = f"{'':58s} {'DB %':>14s} {'paper':>7s}   {'ZL %':>14s} {'paper':>7s}   {'n (DB/ZL)':>11s}"

    def block(title: str, table: str) -> None:
        lines.extend([title, head])
        for r in rows:
            if r["table"] == table:
                lines.append(f"{r['setting'][:58]:58s} {_fmt(r['db'], r['db_se']):>14s} {_fmt(r['paper_db']):>7s}   "
                             f"{_fmt(r['zl'], r['zl_se']):>14s} {_fmt(r['paper_zl']):>7s}   "
                             f"{r['n_db']:>5d}/{r['n_zl']:<5d}")
        lines.append("")

    block("Figure 1: random networks", "figure1")
    block("Figure 2 (paper's form): % of ALL trials where the original AND the ticket succeeded", "figure2")
    block("Conditional (footnote 4): % of trials whose original succeeded; controls beside "
          "(paper column = its joint / its original)", "conditional")
    fid = res.get("fidelity")
    if fid:
        lines.append(f"Fidelity: {fid['within']} of the paper's {fid['total']} cells of Figures 1-2 within "
                     f"{fid['limit_se']:g} combined SEs (footnote 4's conditional cells: {fid['conditional_within']} "
                     f"of {len(fid['conditional'])}). Outside:")
        for c in fid["cells"]:
            if not c["within"]:
                lines.append(f"  {c['metric']} {c['setting'][:60]}: {c['ours']:.1f} vs {c['paper']:.1f} "
                             f"({c['gap_in_se']:+.1f} SE)")
        lines.append("")
    lines.append("Claims (a vs b; gap in combined SEs):")
    for c in res["claims"]:
        verdict = {True: "holds", False: "FAILS", None: " n/a "}[c["holds"]]
        gap = f"{c['gap_in_se']:+.1f} SE" if c["gap_in_se"] is not None else "no SE"
        lines.append(f"  [{verdict}] {c['metric']}: {c['claim']}: {_fmt(c['a']).strip()} vs "
                     f"{_fmt(c['b']).strip()} ({gap})")
    return "\n".join(lines)


def plot(res: dict[str, Any], s: xor.Settings, path: Path) -> None:
    """PNG: Figure 1 rates by width, and the two-/four-unit rates of every strategy and control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 2]})
    ax = axes[0]
    fig1 = sorted((r for r in rows if r["table"] == "figure1"), key=lambda r: r["units"])
    units = [r["units"] for r in fig1]
    for metric, color in (("db", "tab:blue"), ("zl", "tab:orange")):
        ax.errorbar(units, [r[metric] for r in fig1], yerr=[r[f"{metric}_se"] for r in fig1], marker="o",
                    color=color, capsize=3, label=f"{metric.upper()} ours")
        pu = [u for u in units if u in paper.FIGURE1]
        ax.plot(pu, [paper.FIGURE1[u][metric == "zl"] for u in pu], "x--", color=color, label=f"{metric.upper()} paper")
    ax.set(xlabel="hidden units", ylabel="% of trials", title=f"Figure 1: random networks (n={s.trials})",
           ylim=(0, 102), xticks=units)
    ax.legend(fontsize=8)
    ax = axes[1]
    cond = [r for r in rows if r["table"] == "conditional"]
    labels = [r["setting"].replace(" | original succeeded", "").replace(" (independent of the original)", "")
              .replace("reinitialised", "reinit") for r in cond]
    x = np.arange(len(cond))
    for off, metric, color, dark in ((-0.2, "db", "tab:blue", "navy"), (0.2, "zl", "tab:orange", "saddlebrown")):
        ax.bar(x + off, [r[metric] for r in cond], 0.4, yerr=[r[f"{metric}_se"] for r in cond], color=color,
               capsize=2, label=f"{metric.upper()} ours")
        px = [i for i, r in enumerate(cond) if r[f"paper_{metric}"] is not None]
        ax.plot(x[px] + off, [cond[i][f"paper_{metric}"] for i in px], "_", color=dark, markersize=12, mew=2.5,
                label=f"{metric.upper()} paper")
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="% of trials whose original succeeded", ylim=(0, 105),
           title="Figure 2 and controls: tickets given a successful original")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    cli.main("xor_sweep", run, define)
