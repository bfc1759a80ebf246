"""Figures 3-8 and 16 of the paper, and its numeric claims, from stored MNIST runs.

    python -m experiments.mnist_plots --runs_dir=runs/mnist [--out_dir=...]
    python -m experiments.mnist_plots --oneshot=runs/mnist/oneshot-<hash> --iterative=... --han=...

Without explicit run directories it takes, for each mode, the most recently started run under
``--runs_dir`` that has stored levels (:func:`lth_jax.reproduction.results.latest_run`). It draws whatever the
runs allow (Figures 3-6 need a one-shot run, 7-8 an iterative one as well, 16 an iterative and a
han run), marks the values the paper's text reports (:mod:`lth_jax.reproduction.paper`; as markers relative to
*our* unpruned network, since the paper states them as relative speed-ups and accuracy gaps), and
writes ``claims.json`` and ``claims.md``: the claims of sections 3, 4 and 6.4 with the paper's
value, ours and its sample size, as :mod:`lth_jax.reproduction.claims` computes them for the report. Runs are
read through :mod:`lth_jax.reproduction.results` (the report's view, the same level-matching rule); a damaged
record stops it with one line naming the file (exit 1). Nothing here trains.
"""

from __future__ import annotations

from pathlib import Path

from experiments import cli
from experiments.figures.mnist import MODES, draw, find
from lth_jax.store import ondisk

PROGRAM = "mnist_plots"


def define() -> None:
    """Flags are defined only when run as a program, so the drivers can be imported together."""
    cli.define_flag("runs_dir", str, "runs/mnist", "Results root written by experiments.mnist.")
    for mode in MODES:
        cli.define_flag(mode, str | None, None, f"{mode} run directory (default: the latest under --runs_dir).")
    cli.define_flag("out_dir", str | None, None, "Where the PNGs and claims go (default: <runs_dir>/figures).")


def run() -> None:
    """Draw what the runs allow; one line and exit 2 for a bad folder, 1 when nothing is stored or a record
    is damaged."""
    F = cli.FLAGS
    given = {mode: getattr(F, mode) for mode in MODES if getattr(F, mode) is not None}
    for mode, path in given.items():
        cli.check((Path(path) / ondisk.SETTINGS).is_file(), mode, f"{path} is not a run directory (no settings.json)")
    cli.check(bool(given) or Path(F.runs_dir).is_dir(), "runs_dir",
              f"{F.runs_dir} does not exist; run experiments.mnist first")
    out = F.out_dir or str(Path(F.runs_dir) / "figures")
    try:
        runs = find(F.runs_dir, *(getattr(F, mode) for mode in MODES))
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    if not runs:
        cli.fail(PROGRAM, f"--runs_dir={F.runs_dir}: no stored MNIST runs with levels; run experiments.mnist first",
                 cli.FAILURE)
    print(f"wrote {', '.join(draw(runs, out))} to {out}")


if __name__ == "__main__":
    cli.main(PROGRAM, run, define)
