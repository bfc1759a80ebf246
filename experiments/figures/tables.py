"""The per-level table a lottery driver prints: convergence iteration, accuracy there and final
accuracy of every role at every level (rows of :func:`lth_jax.reproduction.mnist.table`)."""

from __future__ import annotations

from typing import Any


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    """The per-level report: convergence iteration, accuracy there, final accuracy (mean [min, max]);
    for trainings stopped at convergence the final accuracy is the one at the stop, shown with the
    mean stop step."""
    stopped = any(r.get("stop_step_mean") is not None for r in rows)
    print(f"{'level':>7} {'%left':>7} {'role':>8} {'n':>3} {'conv':>4}  {'conv. iteration':>23}  "
          f"{'acc. at convergence':>26}  {'final accuracy (at stop)' if stopped else 'final accuracy':>26}"
          + (f"  {'stopped at (mean)':>17}" if stopped else ""))

    def triple(r: dict[str, Any], key: str, spec: str) -> str:
        return f"{_fmt(r[key + '_mean'], spec)} [{_fmt(r[key + '_min'], spec)}, {_fmt(r[key + '_max'], spec)}]"

    for r in rows:
        print(f"{r['level']:>7} {r['percent_overall']:7.2f} {r['role']:>8} {r['trials']:3d} {r['converged']:4d}  "
              f"{triple(r, 'convergence_iteration', '7.0f'):>23}  {triple(r, 'convergence_accuracy', '.4f'):>26}  "
              f"{triple(r, 'final_accuracy', '.4f'):>26}"
              + (f"  {_fmt(r.get('stop_step_mean'), '17.0f')}" if stopped else "")
              + (f"  diverged {r['diverged']}" if r["diverged"] else "")
              + (f"  left out {r['pruned_from_diverged']} pruned from a diverged training"
                 if r["pruned_from_diverged"] else ""))
