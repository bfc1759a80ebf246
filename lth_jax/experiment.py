"""The MNIST lottery experiment (paper sections 3, 4 and 6.4) as library functions.

One :class:`Settings` describes a whole experiment; :func:`run` executes it level by
level and stores each level (see :mod:`lth_jax.store`) the moment it is trained:

- ``mode="oneshot"`` (section 3): train the original networks (the 100% level),
  then prune the trained weights to each percentage of ``levels`` in one step and
  rewind. To keep ``p`` percent the hidden layers lose ``1 - p/100`` of their
  weights and the output layer ``output_rate_factor`` times that.
- ``mode="iterative"`` (section 4): train, prune ``rate`` of every hidden layer's
  remaining weights and ``rate * output_rate_factor`` of the output layer's,
  rewind to the initialisation, repeat until fewer than ``min_remaining`` percent
  of all weights remain (that last, sub-threshold level is trained too).
- ``mode="han"`` (section 6.4, Han et al.): the chain is pruned from, and keeps
  training, its *trained* survivors ("continue" trials); at every round a copy
  rewound to the initialisation (the "ticket" trials) is trained and measured.

At every level the winning tickets of all seeds and all their controls (``reinit``
fresh draws and ``shuffle`` permutations per ticket, paper sections 3.2 and 4.2)
train together in ONE vmapped program, trial axis leading, compiled once per run
and executed in segments of ``chunk_steps`` for progress reports.

Determinism (what a re-run, a resume and the analyses rely on): everything is a
function of the settings. For seed ``s`` with ``root = jax.random.key(s)``:

- initial weights: ``init_params(lenet(hidden, std), fold_in(root, 0), 784)``, i.e.
  :func:`initial_params`, stored once in the run's ``init`` record (read that; on the
  same platform a recomputation gives the same bits);
- mini-batches of trial slot ``k``: ``fold_in(fold_in(root, 1), k)`` then, per step
  ``t``, ``fold_in(., t)`` (see :func:`lth_jax.train.minibatch_segment`). Tickets are
  slot 0 at every level (same batch order as their original), reinit control ``j``
  slot ``1 + j``, shuffle control ``j`` slot ``1 + reinit + j``, Han's continuing
  network slot ``1000 + round``;
- reinit control ``j``: ``fold_in(fold_in(fold_in(root, 2), level_id), j)``;
  shuffle control ``j``: the same with 3 in place of 2. ``level_id`` is the round
  (iterative, han) or ``round(percent * 1000)`` (one-shot).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import masks as masks_lib
from lth_jax import metrics as metrics_lib
from lth_jax import models, pruning, store, train, transforms

PyTree = Any
MODES: tuple[str, ...] = ("oneshot", "iterative", "han")
ROLES: tuple[str, ...] = ("ticket", "reinit", "shuffle", "continue")
INPUT_DIM = 784
CONTINUE_SLOT = 1000
INIT = "init"  # record holding the initial weights of every seed

# The settings that do not change any trained number, so they stay out of the hash:
# levels can be added to a one-shot run and rounds to an iterative one, and the
# convergence rule can be re-read from stored curves.
UNHASHED = ("levels", "min_remaining", "average_over", "stable_for", "tolerance")


def _quick() -> dict[str, Any] | None:
    """Random draws and sorts compile slowly at full optimisation on CPU (seconds each) and
    run in milliseconds, so the set-up programs are compiled at -O0 there; training is not."""
    return {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that defines an MNIST lottery experiment (defaults: the paper's)."""

    mode: str = "oneshot"
    hidden: tuple[int, ...] = (300, 100)
    std: float = 0.1                      # init: N(0, std^2) resampled beyond 2 std; biases 0
    optimizer: str = "sgd"
    lr: float = 0.05
    batch_size: int = 100
    iterations: int = 50_000
    eval_every: int = 100
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    reinit: int = 3                       # control 1: fresh draws per ticket
    shuffle: int = 3                      # control 2: shuffles per ticket
    rate: float = 0.2                     # iterative/han: hidden-layer pruning rate per round
    output_rate_factor: float = 0.5       # output layer pruned at this fraction of the hidden rate
    levels: tuple[float, ...] = (100, 90, 75, 55, 40, 35, 25, 15, 10, 7.5, 5, 3.5, 2)  # one-shot, percent
    min_remaining: float = 1.0            # iterative/han: stop after the first level under this percent
    average_over: int = 1000              # footnote 5: moving-average window (iterations)
    stable_for: int = 1000                # footnote 5: stability span (iterations)
    tolerance: float = 0.002              # footnote 5: allowed change of the moving average

    def __post_init__(self) -> None:
        # Normalise types so equal settings hash equally (100 vs 100.0, list vs tuple).
        for name, kind in (("hidden", int), ("seeds", int), ("levels", float)):
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))
        for name in ("std", "lr", "rate", "output_rate_factor", "min_remaining", "tolerance"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("batch_size", "iterations", "eval_every", "reinit", "shuffle", "average_over", "stable_for"):
            object.__setattr__(self, name, int(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a one-line message for settings that cannot run."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)
        need(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        need(len(self.hidden) >= 1 and all(h > 0 for h in self.hidden),
             f"hidden widths must be positive: {self.hidden}")
        need(self.std > 0, f"std must be > 0, not {self.std}")
        need(self.optimizer in train.OPTIMIZERS, f"optimizer must be one of {', '.join(train.OPTIMIZERS)}")
        need(self.lr > 0, f"lr must be > 0, not {self.lr}")
        need(self.batch_size > 0, f"batch_size must be > 0, not {self.batch_size}")
        need(self.eval_every > 0, f"eval_every must be > 0, not {self.eval_every}")
        need(self.iterations > 0 and self.iterations % self.eval_every == 0,
             f"iterations ({self.iterations}) must be a positive multiple of eval_every ({self.eval_every})")
        need(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds) and min(self.seeds) >= 0,
             f"seeds must be distinct non-negative integers: {self.seeds}")
        need(self.reinit >= 0 and self.shuffle >= 0, "control counts must be >= 0")
        need(0 < self.rate < 1, f"rate must be in (0, 1), not {self.rate}")
        need(0 <= self.output_rate_factor <= 1, f"output_rate_factor must be in [0, 1], not {self.output_rate_factor}")
        need(len(self.levels) >= 1 and all(0 < p <= 100 for p in self.levels),
             f"levels must be percentages in (0, 100]: {self.levels}")
        need(0 < self.min_remaining < 100, f"min_remaining must be a percentage in (0, 100), not {self.min_remaining}")
        for name in ("average_over", "stable_for"):
            v = getattr(self, name)
            need(v > 0 and v % self.eval_every == 0, f"{name} ({v}) must be a positive multiple of eval_every")
        need(self.tolerance > 0, f"tolerance must be > 0, not {self.tolerance}")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def hashed(self) -> dict[str, Any]:
        """The settings that determine the trained numbers (the run directory's hash)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in UNHASHED}
        if self.mode == "oneshot":
            d.pop("rate")  # one-shot prunes to each level directly
        d["data"] = "mnist"
        return d

    def trials_per_level(self) -> int:
        per_seed = 1 + self.reinit + self.shuffle + (1 if self.mode == "han" else 0)
        return per_seed * len(self.seeds)


# ---------------------------------------------------------------- model, init, schedule


def model(settings: Settings) -> models.MLP:
    return models.lenet(settings.hidden, settings.std)


def initial_params(settings: Settings, seeds: Sequence[int] | None = None) -> PyTree:
    """Initial weights of ``seeds`` (default: the settings'), stacked on a leading axis.

    A deterministic function of (seed, hidden, std): analyses regenerate the
    initialisation of a stored run with ``initial_params(load_settings(run_dir))``.
    """
    seeds = settings.seeds if seeds is None else tuple(seeds)
    return _init_fn(settings.hidden, settings.std)(jnp.asarray(seeds, jnp.uint32))


@functools.lru_cache(maxsize=16)
def _init_fn(hidden: tuple[int, ...], std: float) -> Callable:
    net = models.lenet(hidden, std)

    def init(seeds):
        roots = jax.vmap(jax.random.key)(seeds)
        return jax.vmap(lambda k: models.init_params(net, jax.random.fold_in(k, 0), INPUT_DIM))(roots)

    # Full optimisation (unlike the other set-up programs) so the values equal a direct
    # ``models.init_params`` call bit for bit on the same platform.
    return jax.jit(init)


def weight_counts(settings: Settings) -> dict[str, int]:
    """Weights (kernel entries) per layer, in forward order: 235,200 / 30,000 / 1,000 for LeNet-300-100."""
    shapes = jax.eval_shape(lambda: models.init_params(model(settings), jax.random.key(0), INPUT_DIM))
    return {name: math.prod(shapes[name]["kernel"].shape) for name in models.layer_names(shapes)}


def _survivors(count: int, rate: float | np.floating) -> int:
    return int(pruning.survivors_after(jnp.int32(count), jnp.float32(rate)))


class Level(NamedTuple):
    """One level of the plan: what is trained and how it is named and stored."""

    name: str          # record name in the store: "p100", "p51.2" (one-shot) or "r00" (iterative/han)
    order: int         # sort key of the record (descending size)
    level_id: int      # enters the control keys (see module docstring)
    percent: float     # nominal percent remaining of the hidden layers (the paper's axis)
    counts: dict[str, int]  # exact weights per layer the ticket masks keep


def plan(settings: Settings) -> list[Level]:
    """The levels a run trains, in order, with the exact weight counts per layer.

    One-shot levels always start with 100 (the original networks, whose trained
    weights every other level prunes). Iterative/han counts follow the same
    rounding as :func:`lth_jax.pruning.magnitude`, so stored masks match exactly.
    """
    counts = weight_counts(settings)
    names = list(counts)
    out_factor = settings.output_rate_factor
    if settings.mode == "oneshot":
        pcts = sorted({100.0, *settings.levels}, reverse=True)
        out = []
        for p in pcts:
            r = np.float32(1.0) - np.float32(p) / np.float32(100.0)  # float32, exactly as prune_to computes it
            c = {n: _survivors(k, r * np.float32(out_factor) if n == names[-1] else r) for n, k in counts.items()}
            out.append(Level(f"p{p:g}", -round(p * 1000), round(p * 1000), p, c))
        return out
    out, c, r = [], dict(counts), 0
    total = sum(counts.values())
    while True:
        out.append(Level(f"r{r:02d}", r, r, round(100.0 * (1 - settings.rate) ** r, 6), dict(c)))
        if 100.0 * sum(c.values()) / total < settings.min_remaining or r >= 500:
            return out
        c = {n: _survivors(k, settings.rate * out_factor if n == names[-1] else settings.rate) for n, k in c.items()}
        r += 1


# ---------------------------------------------------------------- pruning


def _pruners(settings: Settings) -> tuple[Callable, Callable]:
    return _pruners_for(settings.rate, settings.output_rate_factor)


@functools.lru_cache(maxsize=16)
def _pruners_for(rate: float, factor: float) -> tuple[Callable, Callable]:

    def to_level(p, percent):
        r = 1.0 - percent / 100.0
        return pruning.magnitude(p, masks_lib.ones_like(p), pruning.layer_rates(p, r, r * factor))

    def step(p, m):
        return pruning.magnitude(p, m, pruning.layer_rates(p, rate, rate * factor))

    return (jax.jit(jax.vmap(to_level, in_axes=(0, None)), compiler_options=_quick()),
            jax.jit(jax.vmap(step), compiler_options=_quick()))


def prune_to(settings: Settings, trained: PyTree, percent: float) -> PyTree:
    """One-shot: masks keeping ``percent`` of each hidden layer (output at the reduced rate), per seed."""
    return _pruners(settings)[0](trained, jnp.float32(percent))


def prune_step(settings: Settings, trained: PyTree, masks: PyTree) -> PyTree:
    """Iterative: remove ``rate`` of each hidden layer's remaining weights (output at the reduced rate)."""
    return _pruners(settings)[1](trained, masks)


# ---------------------------------------------------------------- trials


class Trial(NamedTuple):
    role: str      # ticket | reinit | shuffle | continue
    seed: int
    replicate: int  # control number within its ticket (0 for tickets)


def layout(settings: Settings) -> list[Trial]:
    """The trial axis of every level: tickets, reinit controls, shuffle controls, (continue)."""
    s = settings.seeds
    out = [Trial("ticket", x, 0) for x in s]
    out += [Trial("reinit", x, j) for x in s for j in range(settings.reinit)]
    out += [Trial("shuffle", x, j) for x in s for j in range(settings.shuffle)]
    if settings.mode == "han":
        out += [Trial("continue", x, 0) for x in s]
    return out


def _concat(trees: list[PyTree]) -> PyTree:
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *trees)


@functools.lru_cache(maxsize=16)
def _builder(hidden: tuple[int, ...], std: float, seed_list: tuple[int, ...], n_re: int, n_sh: int) -> Callable:
    net = models.lenet(hidden, std)
    seeds = jnp.asarray(seed_list, jnp.uint32)
    n_seeds = len(seed_list)

    def init_fn(k):
        return models.init_params(net, k, INPUT_DIM)

    def build(init, masks, chain, level_id):
        roots = jax.vmap(jax.random.key)(seeds)
        data = jax.vmap(lambda k: jax.random.fold_in(k, 1))(roots)
        p, m = jax.vmap(transforms.rewind)(init, masks)
        params_l, masks_l = [p], [m]
        keys_l = [jax.vmap(lambda k: jax.random.fold_in(k, 0))(data)]

        def control_keys(stream, count):  # (seeds * count,) keys, seed-major
            ks = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, stream), level_id))(roots)
            return jax.vmap(lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(jnp.arange(count)))(ks).reshape(-1)

        def repeat(tree, count):  # each seed's entry ``count`` times, seed-major
            return jax.tree.map(lambda x: x[jnp.repeat(jnp.arange(n_seeds), count)], tree)

        def batch_keys(first_slot, count):
            slots = jnp.tile(first_slot + jnp.arange(count), n_seeds)
            return jax.vmap(jax.random.fold_in)(repeat(data, count), slots)

        if n_re:
            p, m = jax.vmap(lambda k, mm: transforms.reinit(k, init_fn, mm))(control_keys(2, n_re), repeat(masks, n_re))
            params_l.append(p)
            masks_l.append(m)
            keys_l.append(batch_keys(1, n_re))
        if n_sh:
            p, m = jax.vmap(transforms.shuffle)(control_keys(3, n_sh), repeat(init, n_sh), repeat(masks, n_sh))
            params_l.append(p)
            masks_l.append(m)
            keys_l.append(batch_keys(1 + n_re, n_sh))
        if chain is not None:
            p, m = jax.vmap(transforms.carry_on)(chain, masks)
            params_l.append(p)
            masks_l.append(m)
            keys_l.append(jax.vmap(lambda k: jax.random.fold_in(k, CONTINUE_SLOT + level_id))(data))
        return _concat(params_l), _concat(masks_l), jnp.concatenate(keys_l)

    return jax.jit(build, compiler_options=_quick())


def build_trials(settings: Settings, init: PyTree, masks: PyTree, level: Level,
                 chain: PyTree | None = None) -> tuple[PyTree, PyTree, jax.Array]:
    """Params, masks and batch keys of every trial of a level (order of :func:`layout`).

    ``init`` and ``masks`` hold the seeds' initial weights and ticket masks on a
    leading axis; ``chain`` (han only) the continuing networks' trained weights.
    """
    build = _builder(settings.hidden, settings.std, settings.seeds, settings.reinit, settings.shuffle)
    return build(init, masks, chain, jnp.uint32(level.level_id))


# ---------------------------------------------------------------- training


def default_chunk(settings: Settings, target_calls: int = 10) -> int:
    """Steps per compiled call: a multiple of ``eval_every`` dividing ``iterations``,
    about ``iterations / target_calls`` (progress updates without host round trips per step)."""
    evals = settings.iterations // settings.eval_every
    best = 1
    for d in range(1, evals + 1):
        if evals % d == 0 and d <= max(1, evals // target_calls):
            best = d
    return best * settings.eval_every


class Trainer:
    """Trains a level's trials (leading axis) as one vmapped, compiled program.

    ``chunk_steps`` only splits the run into segments for progress reports; the
    result is identical for any chunk size (same batches, same updates).
    """

    def __init__(self, settings: Settings, chunk_steps: int | None = None):
        self.settings = settings
        self.chunk_steps = chunk_steps or default_chunk(settings)
        if settings.iterations % self.chunk_steps or self.chunk_steps % settings.eval_every:
            raise ValueError(f"chunk_steps ({self.chunk_steps}) must divide iterations ({settings.iterations}) "
                             f"and be a multiple of eval_every ({settings.eval_every})")
        self._start, self._segment = _compiled_training(settings.hidden, settings.std, settings.optimizer, settings.lr,
                                                        settings.batch_size, settings.eval_every, self.chunk_steps)

    def __call__(self, params: PyTree, masks: PyTree, keys: jax.Array, data: tuple,
                 on_steps: Callable[[int], None] | None = None) -> tuple[PyTree, dict[str, np.ndarray]]:
        """Returns the trained params and ``{"accuracy", "loss": (T, evals), "diverged_at": (T,)}``."""
        train_data, test_data = data
        state = self._start(params, masks)
        curves, pending = [], None
        for _ in range(self.settings.iterations // self.chunk_steps):
            state, curve = self._segment(state, masks, keys, train_data, test_data)
            if pending is not None:  # dispatch the next segment before waiting on the last
                curves.append(jax.device_get(pending))
                if on_steps:
                    on_steps(self.chunk_steps)
            pending = curve
        curves.append(jax.device_get(pending))
        if on_steps:
            on_steps(self.chunk_steps)
        out = {"accuracy": np.concatenate([c.accuracy for c in curves], axis=1).astype(np.float32),
               "loss": np.concatenate([c.loss for c in curves], axis=1).astype(np.float32),
               "diverged_at": np.asarray(curves[-1].diverged_at, np.int32)}
        return state.params, out


@functools.lru_cache(maxsize=8)
def _compiled_training(hidden: tuple[int, ...], std: float, optimizer: str, lr: float, batch_size: int,
                       eval_every: int, chunk_steps: int) -> tuple[Callable, Callable]:
    """Jitted, vmapped (start, segment), shared by every run with the same training settings."""
    net = models.lenet(hidden, std)
    opt = train.make_optimizer(optimizer, lr)
    segment = train.minibatch_segment(train.softmax_ce(net.apply), train.accuracy(net.apply), opt,
                                      chunk_steps, batch_size, eval_every)
    return (jax.jit(jax.vmap(functools.partial(train.start, opt))),
            jax.jit(jax.vmap(segment, in_axes=(0, 0, 0, None, None))))


def device_data(mnist: Any) -> tuple:
    """The whole dataset on the device once: ``((train_x, train_y), (test_x, test_y))``."""
    return ((jnp.asarray(mnist.train_x), jnp.asarray(mnist.train_y)),
            (jnp.asarray(mnist.test_x), jnp.asarray(mnist.test_y)))


# ---------------------------------------------------------------- metrics


def _stats(values: np.ndarray) -> dict[str, float | int | None]:
    v = np.asarray(values, np.float64)
    ok = v[np.isfinite(v)]
    if ok.size == 0:
        return {"mean": None, "min": None, "max": None, "std": None, "n": 0}
    return {"mean": float(ok.mean()), "min": float(ok.min()), "max": float(ok.max()),
            "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0, "n": int(ok.size)}


def trial_metrics(curves: dict[str, np.ndarray], settings: Settings) -> dict[str, np.ndarray]:
    """Per trial: footnote-5 convergence iteration and accuracy there, final and best accuracy,
    the gain after convergence (the paper: +0.0019 on average for one-shot tickets), divergence step."""
    acc = np.asarray(curves["accuracy"], np.float64)
    conv = metrics_lib.convergence(acc, settings.eval_every, settings.average_over, settings.stable_for,
                                   settings.tolerance)
    final = acc[:, -1]
    with np.errstate(invalid="ignore"):
        best = np.where(np.all(np.isnan(acc), axis=1), np.nan, np.nanmax(np.where(np.isnan(acc), -np.inf, acc), axis=1))
    return {"convergence_iteration": conv.iteration, "convergence_accuracy": conv.accuracy,
            "final_accuracy": final, "best_accuracy": best, "gain_after_convergence": final - conv.accuracy,
            "diverged_at": np.asarray(curves["diverged_at"])}


METRICS = ("convergence_iteration", "convergence_accuracy", "final_accuracy", "best_accuracy",
           "gain_after_convergence")


def summarize(curves: dict[str, np.ndarray], settings: Settings) -> dict[str, Any]:
    """Per-trial metrics and, per role, mean/min/max/std/n over the trials that have a value."""
    per = trial_metrics(curves, settings)
    trials = layout(settings)
    rows = []
    for i, t in enumerate(trials):
        row = {"role": t.role, "seed": t.seed, "replicate": t.replicate}
        row.update({k: float(per[k][i]) for k in METRICS})
        d = int(per["diverged_at"][i])
        row["diverged_at"] = None if d < 0 else d
        rows.append(row)
    roles = {}
    for role in ROLES:
        idx = [i for i, t in enumerate(trials) if t.role == role]
        if not idx:
            continue
        roles[role] = {k: _stats(per[k][idx]) for k in METRICS}
        roles[role]["trials"] = len(idx)
        roles[role]["converged"] = int(np.isfinite(per["convergence_iteration"][idx]).sum())
        roles[role]["diverged"] = int((per["diverged_at"][idx] >= 0).sum())
    return {"trials": rows, "roles": roles}


# ---------------------------------------------------------------- the driver


class Progress:
    """Hooks :func:`run` calls; the CLI subclasses it with progress bars. No-ops here."""

    def level_start(self, level: Level, index: int, total: int, steps: int) -> None: ...
    def steps(self, n: int) -> None: ...
    def level_end(self, level: Level, metrics: dict[str, Any], skipped: bool) -> None: ...


def _tree(record: store.Record, key: str) -> PyTree:
    return jax.tree.map(jnp.asarray, store.subtree(record.arrays, key))


def ticket_masks(settings: Settings, path: Path, init: PyTree, level: Level, previous: Level | None) -> PyTree:
    """The ticket masks of ``level`` (per seed), derived from what the store holds."""
    if previous is None:
        return jax.vmap(masks_lib.ones_like)(init)
    if settings.mode == "oneshot":
        original = store.load_level(path, "p100")
        return prune_to(settings, _tree(original, "trained"), level.percent)
    prev = store.load_level(path, previous.name)
    source = "chain" if settings.mode == "han" else "trained"
    return prune_step(settings, _tree(prev, source), _tree(prev, "masks"))


def run_dir(settings: Settings, root: str | Path) -> Path:
    """Where :func:`run` stores ``settings`` under ``root``: ``<mode>-<hash>``."""
    return store.run_dir(root, settings.hashed(), prefix=settings.mode)


def run(settings: Settings, data: tuple, root: str | Path, *, progress: Progress | None = None,
        after_level: Callable[[Level, dict[str, Any]], None] | None = None,
        chunk_steps: int | None = None) -> Path:
    """Run (or resume) the experiment; returns its run directory under ``root``.

    ``data`` is :func:`device_data`'s pair. Levels already stored are skipped;
    each new level is stored before the next starts, so a killed run resumes
    where it stopped and gives the numbers an uninterrupted run gives.
    ``after_level`` is called after each newly stored level (tests use it to
    simulate a kill).
    """
    progress = progress or Progress()
    levels = plan(settings)
    path = store.open_run(root, settings.hashed(), prefix=settings.mode,
                          extra={k: getattr(settings, k) for k in UNHASHED})
    init, trainer = None, None
    for i, level in enumerate(levels):
        previous = levels[i - 1] if i else None
        if store.done(path, level.name):
            progress.level_end(level, store.load_level(path, level.name, arrays=False).metrics, skipped=True)
            continue
        if init is None:
            init = stored_init(settings, path)
        if trainer is None:
            trainer = Trainer(settings, chunk_steps)
        progress.level_start(level, i, len(levels), settings.iterations)
        t0 = time.perf_counter()
        masks = ticket_masks(settings, path, init, level, previous)
        chain = None
        if settings.mode == "han":
            chain = init if previous is None else _tree(store.load_level(path, previous.name), "chain")
        params, trial_masks, keys = build_trials(settings, init, masks, level, chain)
        trained, curves = trainer(params, trial_masks, keys, data, on_steps=progress.steps)
        seconds = time.perf_counter() - t0
        metrics = level_metrics(settings, level, masks, curves, seconds)
        tickets, chain_out = _split_trained(trained, len(settings.seeds))
        arrays = {**store.flatten(jax.device_get(masks), "masks"),
                  **store.flatten(tickets, "trained"),
                  "curves/accuracy": curves["accuracy"], "curves/loss": curves["loss"],
                  "curves/diverged_at": curves["diverged_at"]}
        if settings.mode == "han":
            arrays.update(store.flatten(chain_out, "chain"))
        store.save_level(path, level.name, arrays, metrics)
        progress.level_end(level, metrics, skipped=False)
        if after_level:
            after_level(level, metrics)
    return path


def _split_trained(trained: PyTree, n: int) -> tuple[PyTree, PyTree]:
    """The tickets' trained weights (first ``n`` trials) and, for han, the chain's (last ``n``)."""
    first = jax.tree.map(lambda x: x[:n], trained)
    last = jax.tree.map(lambda x: x[-n:], trained)
    return jax.device_get(first), jax.device_get(last)


def stored_init(settings: Settings, path: str | Path) -> PyTree:
    """The run's initial weights (leading seed axis): stored once as record ``init``,
    so analyses and resumed runs read the exact values the run started from."""
    if not store.done(path, INIT):
        store.save_level(path, INIT, store.flatten(jax.device_get(initial_params(settings)), "init"),
                         {"order": -10**9, "seeds": list(settings.seeds)})
    return _tree(store.load_level(path, INIT), "init")


def level_metrics(settings: Settings, level: Level, masks: PyTree, curves: dict[str, np.ndarray],
                  seconds: float) -> dict[str, Any]:
    """Per-level metrics as stored in ``<level>.json``: weight counts, percents, per-trial and per-role stats."""
    counts = {name: int(np.sum(np.asarray(masks[name]["kernel"][0]))) for name in models.layer_names(masks)}
    totals = weight_counts(settings)
    hidden = [n for n in totals][:-1]
    return {
        "order": level.order, "level_id": level.level_id, "percent_nominal": level.percent,
        "percent_hidden": 100.0 * sum(counts[n] for n in hidden) / sum(totals[n] for n in hidden),
        "percent_overall": 100.0 * sum(counts.values()) / sum(totals.values()),
        "weights": counts, "weights_total": sum(counts.values()),
        "expected_weights": level.counts,
        "seconds": seconds, "device": str(jax.devices()[0].platform),
        "convergence_rule": {"average_over": settings.average_over, "stable_for": settings.stable_for,
                             "tolerance": settings.tolerance, "eval_every": settings.eval_every},
        **summarize(curves, settings),
    }


# ---------------------------------------------------------------- reading results back


def load_settings(path: str | Path) -> Settings:
    """The :class:`Settings` a stored run was made with (hashed part + stored extras)."""
    s = store.load_settings(path)
    fields = {f.name for f in dataclasses.fields(Settings)}
    merged = {k: v for k, v in {**s["settings"], **s["extra"]}.items() if k in fields}
    return Settings(**merged)


def records(path: str | Path, arrays: bool = False) -> Iterator[store.Record]:
    """The stored levels of a run in plan order (largest first)."""
    for name in store.levels(path):
        if name == INIT:
            continue
        yield store.load_level(path, name, arrays=arrays)


def resummarize(path: str | Path, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Recompute every level's summary from the stored curves (e.g. under another
    convergence rule: pass ``load_settings(path).replace(tolerance=...)``)."""
    settings = settings or load_settings(path)
    out = []
    for rec in records(path, arrays=True):
        curves = {"accuracy": rec.arrays["curves/accuracy"], "diverged_at": rec.arrays["curves/diverged_at"]}
        out.append({**rec.metrics, **summarize(curves, settings)})
    return out


def table(path: str | Path) -> list[dict[str, Any]]:
    """One row per stored level and role: the per-level report of the paper's quantities."""
    rows = []
    for rec in records(path):
        m = rec.metrics
        for role in [r for r in ROLES if r in m["roles"]]:
            s = m["roles"][role]
            rows.append({"level": m["level"], "percent": m["percent_nominal"], "percent_overall": m["percent_overall"],
                         "role": role, "trials": s["trials"], "converged": s["converged"], "diverged": s["diverged"],
                         **{f"{k}_{stat}": s[k][stat] for k in METRICS for stat in ("mean", "min", "max")}})
    return rows
