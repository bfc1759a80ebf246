"""Light copies of stored results for the repository: curves and metrics, no weights.

    python -m experiments.export --runs_dir=runs --out=results/runs

Everything the report reads under ``--runs_dir`` is copied to ``--out`` at the same relative
place, so ``python -m experiments.report --runs_dir=results/runs`` rebuilds the report from the
checkout:

- every run (any depth) by :func:`lth_jax.store.export_run`: its settings, and every level's
  record verified and stored anew with the curves (test accuracy and loss, divergence and stop
  steps) and the metrics, not the masks and weights (megabytes a level); an instability analysis
  keeps all its arrays (interpolation errors and curves: it holds no weights). A run cannot be
  continued in a copy;
- the summaries the drivers wrote (``xor_sweep.json`` and ``examine.json`` with the PNGs drawn
  beside them, the study manifests), each read as JSON first;
- ``export.json`` at the top (:data:`lth_jax.store.EXPORT_MARK`), naming ``--runs_dir``, so that the
  commands the report prints for the copies write where the results were made.

A damaged record or summary stops the export with one line naming it.
"""

from __future__ import annotations

from pathlib import Path

from experiments import cli
from lth_jax import store
from lth_jax.reproduction import instability_runs
from lth_jax.store import ondisk

PROGRAM = "export"
SUMMARIES = ("xor_sweep.json", "examine.json")  # read by lth_jax.reproduction.results, with the figures beside them


def define() -> None:
    cli.define_flag("runs_dir", str, "runs", "Where the results to copy are stored (any depth).", exists="dir")
    cli.define_flag("out", str, "results/runs", "Where the copies go (the same layout as --runs_dir).")


def kept_arrays(run: Path) -> tuple[str, ...]:
    """The array names (prefixes) a copy of ``run`` keeps: everything of an instability analysis,
    the curves of a lottery run."""
    return ("",) if run.name.startswith(f"{instability_runs.PREFIX}-") else (ondisk.CURVES + ondisk.SEP,)


def summaries(root: Path) -> list[Path]:
    """The drivers' summary files under ``root`` (any depth) and the PNGs beside the first two kinds."""
    found = sorted(f for f in root.rglob("*.json") if f.name in SUMMARIES or f.parent.name == "manifests")
    return found + sorted(p for f in found if f.name in SUMMARIES for p in f.parent.glob("*.png"))


def copy_file(src: Path, dest: Path) -> None:
    if src.suffix == ".json":
        store.read_json(src)  # a damaged summary stops the export here, named
    data = src.read_bytes()
    store.atomic_write(dest, lambda f: f.write(data))


def run() -> None:
    root, out = Path(cli.FLAGS.runs_dir), Path(cli.FLAGS.out)
    found = sorted(f.parent for f in root.rglob(ondisk.SETTINGS)
                   if not store.is_export(f.parent) and any(n != ondisk.INIT for n in store.levels(f.parent)))
    files = summaries(root)
    cli.check(bool(found or files), "runs_dir", f"no stored run with a level or summary under {root}")
    for src in found:
        dest = store.export_run(src, out / src.relative_to(root).parent, keep=kept_arrays(src))
        size = sum(f.stat().st_size for f in dest.iterdir())
        print(f"{src} -> {dest}: {len(store.levels(dest))} levels, {size / 1e6:.2f} MB")
    for src in files:
        dest = out / src.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy_file(src, dest)
    if files:
        print(f"{len(files)} summaries and figures -> {out}")
    store.write_json(out / store.EXPORT_MARK, {"source": str(root)})  # where commands for the copies write


if __name__ == "__main__":
    cli.main(PROGRAM, run, define)
