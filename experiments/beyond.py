"""The report's "Beyond the paper" section, from stored runs: late rewinding, the
random-mask control beside reinit and shuffle, layer-wise against global pruning, and the
instability barrier against sparsity, with what the follow-up papers state beside ours.

    python -m experiments.beyond --runs_dir=runs/mnist --report=results/REPORT.md

Reads every instability analysis under ``--runs_dir`` (``instability-<hash>/``, written by
``experiments.instability``) and the lottery runs they analyse; nothing is trained.
:func:`section` gives the markdown and writes its PNGs; ``experiments.report`` puts it in the
report it builds, and this command replaces the section in an existing report (the rest of the
report is left as it is), so the section can be refreshed without the runs of every figure.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from experiments import cli
from experiments.figures.beyond import TITLE, section
from lth_jax import store

PROGRAM = "beyond"


def splice(report: Path, lines: Sequence[str]) -> str:
    """``report``'s text with its "Beyond the paper" section replaced by ``lines`` (or put
    before "## Missing results", or at the end, when it has none)."""
    text = report.read_text().split("\n")
    starts = [i for i, line in enumerate(text) if line.startswith(TITLE.split(":")[0])]
    if starts:
        i = starts[0]
        j = next((k for k in range(i + 1, len(text)) if text[k].startswith("## ")), len(text))
    else:
        i = j = next((k for k, line in enumerate(text) if line.startswith("## Missing results")), len(text))
    return "\n".join([*text[:i], *lines, *text[j:]])


def define() -> None:
    cli.define_flag("runs_dir", str, "runs/mnist", "Root of the stored runs and analyses.", exists="dir")
    cli.define_flag("report", str, "results/REPORT.md", "The report whose section to replace (its figures go to "
                    "figures/ beside it).", exists="file")


def run() -> None:
    lines = section(cli.FLAGS.runs_dir, Path(cli.FLAGS.report).parent / "figures")
    if not lines:
        cli.fail(PROGRAM, f"--runs_dir={cli.FLAGS.runs_dir}: no stored instability analysis (run "
                 "python -m experiments.instability first)", cli.FAILURE)
    report = Path(cli.FLAGS.report)
    text = splice(report, [*lines[:2], f"Refreshed by `python -m experiments.beyond {' '.join(sys.argv[1:])}`.",
                           "", *lines[2:]])
    store.atomic_write(report, lambda f: f.write(text.encode()))
    print(f"wrote the section into {report} (+ its figures in {report.parent / 'figures'}/)")


if __name__ == "__main__":
    cli.main(PROGRAM, run, define)
