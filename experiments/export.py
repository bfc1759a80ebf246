"""Light copies of stored runs for the repository (issue 12): curves and metrics, no weights.

    python -m experiments.export --runs_dir=runs/paper --out=results/runs

Every run under ``--runs_dir`` (any depth) is copied to ``--out`` under its own directory name
by :func:`lth_jax.store.export_run`: its settings, and every level's record verified and stored
anew with the curves (test accuracy and loss, divergence and stop steps) and the metrics, not
the masks and weights (megabytes a level). The report and the plots read such a copy as they
read a run (``python -m experiments.report --runs_dir=results/runs``), so they can be rebuilt
from the checkout; a run cannot be continued in one. A damaged record stops the export with
one line naming it.
"""

from __future__ import annotations

from pathlib import Path

from experiments import cli
from lth_jax import store

PROGRAM = "export"


def define() -> None:
    cli.define_flag("runs_dir", str, "runs", "Where the runs to copy are stored (any depth).", exists="dir")
    cli.define_flag("out", str, "results/runs", "Where the copies go (one directory per run).")


def run() -> None:
    found = sorted(f.parent for f in Path(cli.FLAGS.runs_dir).rglob("settings.json")
                   if not store.is_export(f.parent) and any(n != "init" for n in store.levels(f.parent)))
    cli.check(bool(found), "runs_dir", f"no stored run with a level under {cli.FLAGS.runs_dir}")
    for src in found:
        dest = store.export_run(src, cli.FLAGS.out)
        size = sum(f.stat().st_size for f in dest.iterdir())
        print(f"{src} -> {dest}: {len(store.levels(dest))} levels, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    cli.main(PROGRAM, run, define)
