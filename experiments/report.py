"""One Markdown report of the whole reproduction, built from whatever results are stored.

    python -m experiments.report                                   # runs/ -> results/REPORT.md + PNGs
    python -m experiments.report --runs_dir=runs --out=results --preset=paper

It reads (never trains) through :mod:`lth_jax.reproduction.results`: XOR (Figures 1-2) from ``--xor_dir``;
MNIST (Figures 3-8, 16) from the best stored one-shot, iterative and han runs of LeNet-300-100
under ``--runs_dir``, drawn by ``experiments.mnist_plots``; section 5 (Figures 9-10) from
``--examine_dir``; section 6 (Figures 11-15) from the study manifests under ``--runs_dir``.
The paper's values come from :mod:`lth_jax.reproduction.paper`, ours from
:mod:`lth_jax.reproduction.claims`; this module only renders them. What is not stored yet is listed
with the command that produces it and its estimated time (:mod:`experiments.reproduce_paper`'s cost
model). A damaged stored file stops the report with one line naming it (exit 1); finding nothing at
all writes the report of what to run and exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments import cli
from experiments.figures.report import write
from lth_jax.reproduction import results

PROGRAM = "report"


def build(runs_dir: str | Path = "runs", out: str | Path = "results", xor_dir: str | Path | None = None,
          examine_dir: str | Path | None = None, command: str | None = None) -> Path:
    """Write ``out/REPORT.md``, ``out/claims.json`` and the PNGs (``out/figures/``) from what is
    stored; returns the report's path. Raises :class:`lth_jax.store.StoreError` on a damaged file."""
    return write(results.load(runs_dir, xor_dir, examine_dir), out, command)


def define() -> None:
    cli.define_flag("runs_dir", str, "runs", "Root of the stored runs (searched at any depth).", exists="dir")
    cli.define_flag("xor_dir", str | None, None, "Where experiments.xor_sweep wrote its JSON/PNG "
                    "(default: <runs_dir>/xor).")
    cli.define_flag("examine_dir", str | None, None, "Where experiments.examine wrote examine.json and its PNGs "
                    "(default: <runs_dir>/examine/figures).")
    cli.define_flag("out_dir", str, "results", "Output folder: REPORT.md, claims.json, figures/*.png.")
    cli.define_flag("preset", str | None, None, "Unused by the report itself (kept so reproduce_paper can pass "
                    "its preset through).", choices=results.PRESET_ORDER)


def run() -> None:
    """The report of ``--runs_dir``; one line and exit 1 on a damaged file or when nothing is stored."""
    F = cli.FLAGS
    for name, file in (("xor_dir", "xor_sweep.json"), ("examine_dir", "examine.json")):
        given = getattr(F, name)
        cli.check(given is None or (Path(given) / file).is_file(), name, f"{given} holds no {file}")
    view = results.load(F.runs_dir, F.xor_dir, F.examine_dir)
    path = write(view, F.out_dir, ("python -m experiments.report " + " ".join(sys.argv[1:])).strip())
    if view.empty():
        cli.fail(PROGRAM, f"--runs_dir={F.runs_dir}: found no stored results to report on (wrote {path}, which "
                 "lists every figure as missing with the command that produces it)", cli.FAILURE)
    print(f"wrote {path} (+ {path.parent / 'claims.json'}, {path.parent / 'figures'}/)")


if __name__ == "__main__":
    cli.main(PROGRAM, run, define)
