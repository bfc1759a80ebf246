"""The MNIST lottery experiment (paper sections 3, 4, 6 and 6.4) as a configuration of the runner.

One flat :class:`Settings` (the paper's defaults; the CLI's flags are generated from its
fields) describes a whole experiment; :func:`lottery` turns it into the runner's
:class:`lth_jax.runner.Lottery`: LeNet-300-100 (or a wider MLP) on 784 inputs, layer-wise
magnitude pruning with the output layer at half the rate, mini-batch SGD with test accuracy
every 100 iterations, footnote 5's convergence judge, the reinit, shuffle and random-mask controls, and
the documented key derivation of :class:`lth_jax.runner.SeedKeys`.

- ``mode="oneshot"`` (section 3): levels are percents of each hidden layer kept;
- ``mode="iterative"`` (section 4): ``rate`` of each hidden layer's remaining weights a round,
  until fewer than ``min_remaining`` percent of all weights remain;
- ``mode="han"`` (section 6.4): Han et al.'s chain keeps training its pruned trained weights.

Late rewinding (Frankle et al. 2019): ``rewind_step=k`` (one of ``snapshot_steps``) resets tickets
to the originals' step-``k`` weights; such a run reuses the stored originals of the same settings
with ``rewind_step=0`` (see :mod:`lth_jax.runner`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import field
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from lth_jax import judges, models, optimizers, rules, runner, store, trainers

PyTree = Any
INPUT_DIM = 784
MODES = runner.MODES
# adam_tf1 (Adam's epsilon as TensorFlow 1 placed it) exists for the XOR comparison only.
MNIST_OPTIMIZERS = tuple(n for n in optimizers.NAMES if n != "adam_tf1")
PRUNING: tuple[str, ...] = ("layerwise", "global")  # Settings.pruning: rules.LayerwiseMagnitude / GlobalMagnitude
# The settings that do not change any trained number, so they stay out of the hash: levels can
# be added to a one-shot run and rounds to an iterative one, and the convergence rule can be
# re-read from stored curves.


def _help(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that defines an MNIST lottery experiment (defaults: the paper's)."""

    mode: str = field(default="oneshot", metadata=_help(
        "oneshot (section 3), iterative (section 4) or han (section 6.4: prune and keep training).",
        choices=MODES))
    hidden: tuple[int, ...] = field(default=(300, 100),
        metadata=_help("Hidden layer widths (the paper: 300,100).", min=1))
    std: float = field(default=0.1, metadata=_help(
        "Standard deviation of the truncated-normal initialisation (the paper: 0.1).", above=0))
    optimizer: str = field(default="sgd", metadata=_help("sgd (the paper), momentum or adam.",
                                                          choices=MNIST_OPTIMIZERS))
    lr: float = field(default=0.05, metadata=_help("Learning rate (the paper: SGD, 0.05).", above=0))
    batch_size: int = field(default=100, metadata=_help("Mini-batch size (the paper: 100).", min=1))
    iterations: int = field(default=50_000,
        metadata=_help("Training iterations per network (the paper: 50,000).", min=1))
    eval_every: int = field(default=100,
        metadata=_help("Test accuracy every this many iterations (the paper: 100).", min=1))
    seeds: tuple[int, ...] = field(default=(0, 1, 2, 3, 4),
        metadata=_help("Seeds of the winning tickets.", min=0, unique=True))
    reinit: int = field(default=3, metadata=_help("Control 1: randomly reinitialised copies per ticket (3).", min=0))
    shuffle: int = field(default=3, metadata=_help("Control 2: shuffled copies per ticket (3).", min=0))
    random: int = field(default=0, metadata=_help(
        "Control 3: random-mask copies per ticket (each layer's survivor count at uniformly random positions, "
        "initial values there; not in the paper: 0).", min=0))
    rate: float = field(default=0.2, metadata=_help(
        "Iterative/han: fraction of each hidden layer's remaining weights pruned a round.", above=0, below=1))
    output_rate_factor: float = field(default=0.5, metadata=_help(
        "The output layer is pruned at this fraction of the hidden rate.", min=0, max=1))
    pruning: str = field(default="layerwise", metadata=_help(
        "layerwise (the paper: each layer at its own rate) or global (one threshold across all layers; "
        "--output_rate_factor does not apply).", choices=PRUNING))
    levels: tuple[float, ...] = field(default=(100, 90, 75, 55, 40, 35, 25, 15, 10, 7.5, 5, 3.5, 2), metadata=_help(
        "One-shot: percents of each hidden layer to keep, e.g. 100,75,35,5.", above=0, max=100))
    min_remaining: float = field(default=1.0, metadata=_help(
        "Iterative/han: stop after the first level under this percent of all weights.", above=0, below=100))
    average_over: int = field(default=1000, metadata=_help("Footnote 5: moving-average window in iterations.", min=1))
    stable_for: int = field(default=1000, metadata=_help("Footnote 5: iterations the average must stay put.", min=1))
    tolerance: float = field(default=0.002,
        metadata=_help("Footnote 5: allowed change of the moving average.", above=0))
    rewind_step: int = field(default=0, metadata=_help(
        "Late rewinding (Frankle et al. 2019): reset tickets to the originals' weights at this training step "
        "and train them from there (0: the paper, the initialisation); one of --snapshot_steps.", min=0))
    snapshot_steps: tuple[int, ...] = field(default=(0,), metadata=_help(
        "Steps at which the originals' weights and optimiser state are kept, so --rewind_step can be chosen "
        "after the fact without retraining them (multiples of --eval_every below --iterations).",
        min=0, unique=True))
    stop_at_convergence: bool = field(default=False, metadata=_help(
        "End each measured training (one-shot tickets, every control, a chain's last round) once it has "
        "converged by footnote 5's rule and its stability window has passed; the convergence iteration and "
        "accuracy are those of a full run, the final accuracy is the one at the stop. Trainings that are "
        "pruned next always run the full --iterations (the paper prunes after them)."))
    stop_every: int = field(default=500, metadata=_help(
        "With --stop_at_convergence: steps between the checks (a multiple of --eval_every); a training "
        "stops at the first check after its stability window has passed.", min=1))
    paired_batches: bool = field(default=False, metadata=_help(
        "Every control trains on its ticket's batch order instead of its own (a paired design: ticket and "
        "controls differ only in their weights). Not faster on a CPU (benchmarks/mnist_throughput.json, "
        "paired_batches); off, the paper's controls are independent trainings."))

    def __post_init__(self) -> None:
        # Normalise types so equal settings hash equally (100 vs 100.0, list vs tuple).
        for name, kind in (("hidden", int), ("seeds", int), ("levels", float), ("snapshot_steps", int)):
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))
        steps = self.snapshot_steps
        if len(set(steps)) == len(steps):  # step 0 (the initialisation) is always one; repeats are refused later
            object.__setattr__(self, "snapshot_steps", tuple(sorted({0, *steps})))
        for name in ("std", "lr", "rate", "output_rate_factor", "min_remaining", "tolerance"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("batch_size", "iterations", "eval_every", "reinit", "shuffle", "random", "average_over",
                     "stable_for", "rewind_step", "stop_every"):
            object.__setattr__(self, name, int(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a one-line message for settings that cannot run."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)
        need(len(self.hidden) >= 1 and all(h > 0 for h in self.hidden),
             f"hidden widths must be positive: {self.hidden}")
        need(self.std > 0 and math.isfinite(self.std), f"std must be a positive number, not {self.std}")
        need(len(self.levels) >= 1 and all(0 < p <= 100 for p in self.levels),
             f"levels must be percentages in (0, 100]: {self.levels}")
        self.lottery()  # every part validates its own fields

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def lottery(self, chunk_steps: int | None = None) -> runner.Lottery:
        """The runner's description of this experiment."""
        return lottery(self, chunk_steps)

    def hashed(self) -> dict[str, Any]:
        """The settings that determine the trained numbers (the run directory's hash)."""
        return self.lottery().hashed()

    def trials_per_level(self) -> int:
        per_seed = 1 + self.reinit + self.shuffle + self.random + (1 if self.mode == "han" else 0)
        return per_seed * len(self.seeds)


def network(hidden: tuple[int, ...] = (300, 100), std: float = 0.1) -> runner.Network:
    """LeNet-300-100 (784-300-100-10) or a wider MLP, on flattened 28x28 images."""
    return runner.Network(models.lenet(hidden, std), (INPUT_DIM,), {"hidden": list(hidden), "std": std},
                          architecture=("mlp", tuple(hidden)))  # std only changes the initial draw


def lottery(settings: Settings, chunk_steps: int | None = None) -> runner.Lottery:
    """:class:`Settings` as the runner's :class:`~lth_jax.runner.Lottery`."""
    s = settings
    return runner.Lottery(
        network=network(s.hidden, s.std),
        procedure=runner.Procedure(mode=s.mode, seeds=s.seeds, reinit=s.reinit, shuffle=s.shuffle, levels=s.levels,
                                   min_remaining=s.min_remaining, random=s.random, rewind_step=s.rewind_step,
                                   snapshot_steps=s.snapshot_steps, stop_at_convergence=s.stop_at_convergence,
                                   stop_every=s.stop_every, paired_batches=s.paired_batches),
        prune=prune_rule(s),
        trainer=trainers.Minibatch(s.optimizer, s.lr, s.batch_size, s.iterations, s.eval_every, chunk_steps),
        judge=judges.Convergence(s.eval_every, s.average_over, s.stable_for, s.tolerance),
        data="mnist")


def prune_rule(settings: Settings) -> Any:
    """The pruning rule of ``settings.pruning``: the paper's layer-wise rule (output layer at
    ``output_rate_factor`` of the rate) or :class:`lth_jax.rules.GlobalMagnitude`."""
    if settings.pruning == "layerwise":
        return rules.LayerwiseMagnitude(settings.rate, settings.output_rate_factor)
    if settings.pruning == "global":
        return rules.GlobalMagnitude(settings.rate)
    raise ValueError(f"pruning must be one of {', '.join(PRUNING)}, not {settings.pruning!r}")


def device_data(mnist: Any) -> tuple:
    """The whole dataset on the device once: ``((train_x, train_y), (test_x, test_y))``."""
    return ((jnp.asarray(mnist.train_x), jnp.asarray(mnist.train_y)),
            (jnp.asarray(mnist.test_x), jnp.asarray(mnist.test_y)))


def run(settings: Settings, data: tuple, root: str | Path, *, chunk_steps: int | None = None, **kw: Any) -> Path:
    """Run (or resume) the experiment; returns its run directory under ``root`` (see :func:`runner.run`)."""
    return runner.run(settings.lottery(chunk_steps), data, root, **kw)


def run_dir(settings: Settings, root: str | Path) -> Path:
    return runner.run_dir(settings.lottery(), root)


def plan(settings: Settings) -> list[runner.Level]:
    return runner.plan(settings.lottery())


def weight_counts(settings: Settings) -> dict[str, int]:
    return network(settings.hidden, settings.std).weight_counts()


def initial_params(settings: Settings, seeds: tuple[int, ...] | None = None) -> PyTree:
    """Initial weights of ``seeds`` (default: the settings'), stacked on a leading axis: a
    deterministic function of (seed, hidden, std)."""
    return runner.initial_params(settings.lottery(), seeds)


def rounds_for(settings: Settings, targets: list[float]) -> tuple[Settings, list[int]]:
    """The iterative rounds nearest each target fraction remaining (by the hidden layers'
    nominal 0.8 ** round), and settings whose ``min_remaining`` stops the chain right after
    the last of them (section 5 needs nothing smaller)."""
    from lth_jax.reproduction.analysis import nearest_level

    smallest = min(targets)
    full = plan(settings.replace(min_remaining=min(100 * smallest * (1 - settings.rate), 99.0)))
    wanted = sorted({nearest_level([lv.value / 100 for lv in full], t) for t in targets})
    last = max(wanted[-1], 1)
    total = sum(full[0].counts.values())
    overall = [sum(lv.counts.values()) / total for lv in full]
    # the plan stops after the first level under min_remaining: put it between rounds last-1 and last
    return settings.replace(min_remaining=100 * (overall[last] + overall[last - 1]) / 2), wanted


def trainings_to(percent: float, settings: Settings) -> dict[str, float]:
    """How many trainings iterative pruning at ``settings.rate`` needs to extract a ticket of
    about ``percent`` of all weights (section 4.1: 20% -> 14 for "about 5%"; section 6.3:
    10% -> 28).

    The ticket is the first level whose exact survivor count (each round removes
    round(rate * remaining) per hidden layer, the output layer at its reduced rate) is under
    ``percent``; each round before it is one training, so the count is its round number.
    Returns the count and the ticket's percent remaining (overall and of the hidden layers).
    With ``pruning="global"`` the rate is of all remaining weights at once, so the count is that
    of the global rule's plan and ``percent_hidden`` is None (how the survivors split across
    layers depends on the trained weights; the section's numbers are layer-wise).
    """
    levels = plan(settings.replace(mode="iterative", min_remaining=percent))
    last, first = levels[-1], levels[0]
    hidden = list(first.counts)[:-1]  # empty for a global rule: it knows only the pooled total
    return {"rate": settings.rate, "trainings": len(levels) - 1,
            "percent_overall": 100.0 * sum(last.counts.values()) / sum(first.counts.values()),
            "percent_hidden": 100.0 * sum(last.counts[n] for n in hidden) / sum(first.counts[n] for n in hidden)
            if hidden else None}


# ---------------------------------------------------------------- reading results back


def load_settings(path: str | Path) -> Settings:
    """The :class:`Settings` a stored run was made with (hashed part + stored extras)."""
    s = store.load_settings(path)
    fields = {f.name for f in dataclasses.fields(Settings)}
    merged = {k: v for k, v in {**s["settings"], **s["extra"]}.items() if k in fields}
    return Settings(**merged)


def records(path: str | Path, arrays: bool = False) -> Iterator[store.Record]:
    return runner.records(path, arrays)


def resummarize(path: str | Path, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Recompute every level's summary from the stored curves (e.g. under another
    convergence rule: pass ``load_settings(path).replace(tolerance=...)``)."""
    settings = settings or load_settings(path)
    lt = settings.lottery()
    out = []
    for rec in records(path, arrays=True):
        level = next(lv for lv in runner.plan(lt) if lv.name == rec.name)
        out.append({**rec.metrics, **lt.judge.summarize(rec.arrays, runner.layout(lt.procedure, level))})
    return out


def table(path: str | Path) -> list[dict[str, Any]]:
    """One row per stored level and role: the per-level report of the paper's quantities (statistics
    leave out trials pruned from a diverged training; ``pruned_from_diverged`` counts them)."""
    rows = []
    for rec in records(path):
        m = rec.metrics
        for role in [r for r in runner.ROLES if r in m["roles"]]:
            s = m["roles"][role]
            rows.append({"level": m["level"], "percent": m["percent_nominal"], "percent_overall": m["percent_overall"],
                         "role": role, "trials": s["trials"], "converged": s["converged"], "diverged": s["diverged"],
                         "pruned_from_diverged": s.get("excluded_pruned_from_diverged", 0),
                         "stop_step_mean": s["stop_step"]["mean"] if "stop_step" in s else None,
                         **{f"{k}_{stat}": s[k][stat] for k in judges.METRICS for stat in ("mean", "min", "max")}})
    return rows
