"""The lottery-ticket runner: train, prune, reset, repeat, for any Flax model (paper section 1).

A :class:`Lottery` names the five things an experiment is made of, each a small value with
pure functions behind it:

- ``network``: a :class:`Network`, any Flax module and the shape of one input;
- ``procedure``: a :class:`Procedure`, one-shot / iterative / Han et al., seeds, controls, levels;
- ``prune``: a rule of :mod:`lth_jax.rules` (layer-wise magnitude, hidden units, or your own
  ``params, masks -> masks``);
- ``trainer``: one of :mod:`lth_jax.trainers` (mini-batch with test curves, or full-batch);
- ``judge``: one of :mod:`lth_jax.judges` (footnote 5's convergence, XOR's DB/ZL, or your own),

plus ``keys``, the documented derivation of every random draw from the seeds
(:class:`SeedKeys` below; the XOR experiment brings its own).

:func:`run` executes one lottery level by level; :func:`run_groups` executes several that
share a compiled program (same network shape and trainer) level by level together, as
section 6's studies and the XOR sweep need. At every level the winning tickets of all seeds
and all their controls form ONE leading trial axis, trained as one vmapped program
(identical trials, such as the unpruned round shared by several rates, are trained once),
split into chunks of at most ``memory_budget_mb`` of estimated device memory. Each level is
stored (:mod:`lth_jax.store`) the moment it is trained, so a killed run resumes where it
stopped and gives exactly the numbers an uninterrupted run gives.

Modes (``Procedure.mode``):

- ``oneshot`` (section 3): train the originals (the full level), then prune their trained
  weights to each level of ``levels`` in one step and rewind.
- ``iterative`` (section 4): train, prune one round, rewind to the initialisation, repeat
  (``rounds`` prunings, or until fewer than ``min_remaining`` percent of all weights remain;
  that last, sub-threshold level is trained too).
- ``han`` (section 6.4, Han et al.): the chain is pruned from, and keeps training, its
  *trained* survivors ("continue" trials); at every round a copy rewound to the
  initialisation (the "ticket" trials) is trained and measured.

Trial layout of every level: tickets (one per seed), then ``reinit`` controls per ticket
(fresh draws, control 1 of sections 3.2/4.2), then ``shuffle`` controls per ticket (control
2), then (han) the continuing chain, seed-major within each role.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import masks as masks_lib
from lth_jax import store, transforms

PyTree = Any
MODES: tuple[str, ...] = ("oneshot", "iterative", "han")
ROLES: tuple[str, ...] = ("ticket", "reinit", "shuffle", "continue")
CONTINUE_SLOT = 1000
INIT = "init"  # record holding the initial weights of every seed
MAX_ROUNDS = 500


def quick_options(quick: bool = True) -> dict[str, Any] | None:
    """Random draws and sorts compile slowly at full optimisation on CPU (seconds each) and
    run in milliseconds, so set-up programs are compiled at -O0 there; training is not."""
    return {"xla_backend_optimization_level": 0} if quick and jax.default_backend() == "cpu" else None


def frozen(spec: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> tuple[tuple[str, Any], ...]:
    """A JSON-able description as a hashable, order-free tuple of pairs (lists become tuples)."""
    def freeze(v: Any) -> Any:
        if isinstance(v, Mapping):
            return frozen(v)
        if isinstance(v, list | tuple):
            return tuple(freeze(x) for x in v)
        return v

    items = spec.items() if isinstance(spec, Mapping) else (spec or ())
    return tuple(sorted((str(k), freeze(v)) for k, v in items))


def thawed(spec: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The inverse of :func:`frozen`: a plain dict with lists (as JSON stores it)."""
    def thaw(v: Any) -> Any:
        return [thaw(x) for x in v] if isinstance(v, tuple) else v

    return {k: thaw(v) for k, v in spec}


# ---------------------------------------------------------------- the five parts


@dataclasses.dataclass(frozen=True)
class Network:
    """Any Flax module and the shape of one input example.

    ``spec`` is the JSON-able description that enters the run's hash (e.g. ``{"hidden":
    [300, 100], "std": 0.1}``): two networks with equal specs must compute the same function
    from the same key. ``output`` names the output layer (a path of keys in the params
    tree) when the last layer of the forward pass is not it. ``architecture`` says which
    networks compute the same forward pass and so can train in one program (e.g. MLPs that
    differ only in their initial std); by default the module itself.
    """

    module: Any
    input_shape: tuple[int, ...]
    spec: tuple[tuple[str, Any], ...] = ()
    output: tuple[str, ...] | None = None
    architecture: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "spec", frozen(self.spec))
        if self.output is not None:
            object.__setattr__(self, "output", tuple(self.output))

    def hashed(self) -> dict[str, Any]:
        """The network's part of a run's hash: ``spec`` or, when none is given, the module's own
        description (its class and fields) and the input shape, so two different modules never
        share a run directory by accident."""
        if self.spec:
            return thawed(self.spec)
        return {"module": repr(self.module), "input_shape": list(self.input_shape)}

    def program(self) -> Any:
        """What decides the compiled training program: :attr:`architecture` or the module."""
        return (self.module if self.architecture is None else self.architecture, self.input_shape, self.output)

    def init(self, key: jax.Array) -> PyTree:
        """The ``params`` collection for one network from ``key``."""
        return self.module.init(key, jnp.zeros((1, *self.input_shape), jnp.float32))["params"]

    def shapes(self) -> PyTree:
        """Shapes and dtypes of the params (nothing runs)."""
        return _shapes(self)

    def layers(self) -> tuple[tuple[str, ...], ...]:
        """Paths of the layers that own a kernel, in the order the forward pass calls them."""
        return _layers(self)

    def output_layer(self) -> tuple[str, ...]:
        return self.output if self.output is not None else self.layers()[-1]

    def weight_counts(self) -> dict[str, int]:
        """Weights (kernel entries) per layer, in forward order: 235,200 / 30,000 / 1,000 for LeNet."""
        shapes = self.shapes()
        return {layer_name(p): math.prod(_at(shapes, p)["kernel"].shape) for p in self.layers()}


@functools.lru_cache(maxsize=64)
def _shapes(network: Network) -> PyTree:
    return jax.eval_shape(network.init, jax.random.key(0))


@functools.lru_cache(maxsize=64)
def _layers(network: Network) -> tuple[tuple[str, ...], ...]:
    from lth_jax import models

    return tuple(tuple(p) for p in models.layer_order(network.module, jnp.zeros((1, *network.input_shape))))


def layer_name(path: Sequence[str]) -> str:
    """A layer's name in stored metrics: its path joined by '/' (``Dense_0``, ``encoder/Dense_1``)."""
    return "/".join(path)


def _at(tree: PyTree, path: Sequence[str]) -> PyTree:
    for k in path:
        tree = tree[k]
    return tree


@dataclasses.dataclass(frozen=True)
class Procedure:
    """The paper's procedure, independent of the network: which trainings a run consists of."""

    mode: str = "oneshot"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    reinit: int = 3                       # control 1: fresh draws per ticket
    shuffle: int = 3                      # control 2: shuffles per ticket
    levels: tuple[float, ...] = ()        # one-shot: the rule's level values (percent kept, units, ...)
    rounds: int | None = None             # iterative/han: prunings; None = until under min_remaining
    min_remaining: float = 1.0            # iterative/han: stop after the first level under this percent
    control_levels: tuple[float, ...] | None = None  # level values that get controls (None: every level)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        if self.control_levels is not None:
            object.__setattr__(self, "control_levels", tuple(float(v) for v in self.control_levels))
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers: {self.seeds}")
        if self.reinit < 0 or self.shuffle < 0:
            raise ValueError("control counts must be >= 0")
        if self.rounds is not None and not 0 <= self.rounds <= MAX_ROUNDS:
            raise ValueError(f"rounds must be in 0..{MAX_ROUNDS}, not {self.rounds}")
        if not 0 < self.min_remaining < 100:
            raise ValueError(f"min_remaining must be a percentage in (0, 100), not {self.min_remaining}")

    def hashed(self) -> dict[str, Any]:
        d = {"mode": self.mode, "seeds": list(self.seeds), "reinit": self.reinit, "shuffle": self.shuffle}
        if self.control_levels is not None:  # the trial layout of a level depends on it
            d["control_levels"] = list(self.control_levels)
        if self.rounds is not None:
            d["rounds"] = self.rounds
        return d

    def controls_at(self, value: float) -> bool:
        return self.control_levels is None or float(value) in self.control_levels


class Keys(Protocol):
    """Where every random draw of a run comes from (traced inside the set-up programs).

    The set-up programs are compiled once per *equal* key scheme, and what tells one stream
    from another enters as a traced number (``init_code``, ``code``): schemes that differ only
    in those compare equal (``dataclasses.field(compare=False)``) and share their programs."""

    def hashed(self) -> dict[str, Any]:
        """What distinguishes this derivation in the run's hash ({} for the paper's)."""

    def init_code(self) -> int:
        """The initial weights' stream as a number (a traced uint32 in the program)."""

    def init(self, seeds: jax.Array, code: jax.Array) -> jax.Array:
        """(n,) keys of the originals' initial weights."""

    def batches(self, seeds: jax.Array, slot: jax.Array) -> jax.Array:
        """(n,) keys of the batch order of trial slot ``slot`` (broadcast against ``seeds``)."""

    def code(self, level: Level) -> int:
        """The level's number as the control keys see it (a traced uint32 in the program)."""

    def control(self, seeds: jax.Array, role: str, code: jax.Array, replicate: jax.Array) -> jax.Array:
        """(n,) keys of control ``replicate`` of kind ``role`` at the level numbered ``code``."""


@dataclasses.dataclass(frozen=True)
class SeedKeys:
    """The documented derivation (what a re-run, a resume and the analyses rely on).

    For seed ``s`` with ``root = jax.random.key(s)``:

    - initial weights: ``network.init(fold_in(root, 0))``, stored once in the run's ``init``
      record (read that; on the same platform a recomputation gives the same bits);
    - mini-batches of trial slot ``k``: ``fold_in(fold_in(root, 1), k)`` then, per step ``t``,
      ``fold_in(., t)`` (:func:`lth_jax.train.minibatch_segment`). Tickets are slot 0 at
      every level (the batch order of their original), reinit control ``j`` slot ``1 + j``,
      shuffle control ``j`` slot ``1 + reinit + j``, Han's continuing network slot
      ``1000 + round``;
    - reinit control ``j``: ``fold_in(fold_in(fold_in(root, 2), level_id), j)``; shuffle
      control ``j``: the same with 3 in place of 2. ``level_id`` is the round (iterative,
      han) or ``round(value * 1000)`` (one-shot).
    """

    STREAMS = {"reinit": 2, "shuffle": 3}

    def hashed(self) -> dict[str, Any]:
        return {}  # the paper's derivation: nothing beyond the seeds enters the hash

    def init_code(self) -> int:
        return 0

    def init(self, seeds: jax.Array, code: jax.Array) -> jax.Array:
        return jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 0))(seeds)

    def batches(self, seeds: jax.Array, slot: jax.Array) -> jax.Array:
        data = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 1))(seeds)
        return jax.vmap(jax.random.fold_in)(data, jnp.broadcast_to(slot, seeds.shape))

    def code(self, level: Level) -> int:
        return level.level_id

    def control(self, seeds: jax.Array, role: str, code: jax.Array, replicate: jax.Array) -> jax.Array:
        stream = self.STREAMS[role]

        def one(s, j):
            return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.key(s), stream), code), j)

        return jax.vmap(one)(seeds, jnp.broadcast_to(replicate, seeds.shape))


class Rule(Protocol):
    """A pruning rule as the runner uses it (see :mod:`lth_jax.rules`)."""

    full: float  # the level value of the unpruned network (100 percent, 10 units, ...)

    def to_level(self, network: Network, trained: PyTree, masks: PyTree, value: float) -> PyTree: ...
    def step(self, network: Network, trained: PyTree, masks: PyTree) -> PyTree: ...
    def value_after(self, rounds: int) -> float: ...
    def counts(self, network: Network, value: float | None = None, rounds: int | None = None
               ) -> dict[str, int] | None: ...
    def start(self, network: Network, params: PyTree) -> PyTree: ...
    def hashed(self, mode: str) -> dict[str, Any]: ...


class Trainer(Protocol):
    """Trains a stack of trials: ``(params, masks, keys, data, on_steps) -> (trained, outputs)``;
    ``outputs`` maps store keys (``curves/accuracy``, ``logits``, ...) to per-trial arrays."""

    iterations: int

    def __call__(self, network: Network, params: PyTree, masks: PyTree, keys: jax.Array, data: Any,
                 on_steps: Callable[[int], None] | None = None) -> tuple[PyTree, dict[str, np.ndarray]]: ...
    def hashed(self) -> dict[str, Any]: ...
    def trial_bytes(self, network: Network) -> int: ...
    def signature(self) -> tuple: ...


class Judge(Protocol):
    """Turns a level's outputs into the metrics stored in its JSON (not part of the hash)."""

    def summarize(self, outputs: Mapping[str, np.ndarray], trials: Sequence[Trial]) -> dict[str, Any]: ...
    def extra(self) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Lottery:
    """One lottery-ticket experiment: everything :func:`run` needs."""

    network: Network
    procedure: Procedure
    prune: Any      # Rule
    trainer: Any    # Trainer
    judge: Any      # Judge
    data: str = "data"          # the dataset's name (enters the hash)
    keys: Any = SeedKeys()      # Keys
    extra: tuple[tuple[str, Any], ...] = ()  # stored beside the hash, not hashed (e.g. flat settings)
    # Compile the set-up programs (control draws, pruning) at -O0 on CPU: fast to compile, and
    # what the stored MNIST runs used. XLA's truncated normal gives other bits at full
    # optimisation, so a configuration recorded that way (the XOR sweep) sets False.
    quick_setup: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", frozen(self.extra))

    def hashed(self) -> dict[str, Any]:
        """Everything that determines the trained numbers: the run directory's hash."""
        return {**self.network.hashed(), **self.procedure.hashed(), **self.trainer.hashed(),
                **self.prune.hashed(self.procedure.mode), **self.keys.hashed(), "data": self.data}

    def unhashed(self) -> dict[str, Any]:
        p = self.procedure
        return {"levels": list(p.levels), "min_remaining": p.min_remaining, **self.judge.extra(),
                "layers": [layer_name(x) for x in self.network.layers()], **thawed(self.extra)}

    def replace(self, **changes: Any) -> Lottery:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------- the plan


class Level(NamedTuple):
    """One level of the plan: what is trained and how it is named and stored."""

    name: str          # record name in the store: "p100", "p51.2" (one-shot) or "r00" (iterative/han)
    order: int         # sort key of the record (descending size)
    level_id: int      # enters the control keys (see SeedKeys)
    value: float       # the rule's level value (percent of hidden weights kept, units, ...)
    counts: dict[str, int] | None  # exact weights per layer the ticket masks keep, where the rule knows


def plan(lottery: Lottery) -> list[Level]:
    """The levels a run trains, in order. One-shot levels always start with the full one (the
    originals, whose trained weights every other level prunes)."""
    p, rule, net = lottery.procedure, lottery.prune, lottery.network
    if p.mode == "oneshot":
        values = sorted({float(rule.full), *p.levels}, reverse=True)
        return [Level(f"p{v:g}", -round(v * 1000), round(v * 1000), v, rule.counts(net, value=v)) for v in values]
    total = sum(net.weight_counts().values())
    out = []
    for r in range(MAX_ROUNDS + 1):
        counts = rule.counts(net, rounds=r)
        out.append(Level(f"r{r:02d}", r, r, rule.value_after(r), counts))
        if p.rounds is not None:
            if r >= p.rounds:
                break
        elif counts is None:
            raise ValueError("this pruning rule cannot predict its sizes: give the procedure a number of rounds")
        elif 100.0 * sum(counts.values()) / total < p.min_remaining:
            break
    return out


# ---------------------------------------------------------------- trials


class Trial(NamedTuple):
    role: str       # ticket | reinit | shuffle | continue
    seed: int
    replicate: int  # control number within its ticket (0 for tickets)


def layout(procedure: Procedure, level: Level | None = None) -> list[Trial]:
    """The trial axis of a level: tickets, reinit controls, shuffle controls, (continue)."""
    s = procedure.seeds
    controls = level is None or procedure.controls_at(level.value)
    out = [Trial("ticket", x, 0) for x in s]
    if controls:
        out += [Trial("reinit", x, j) for x in s for j in range(procedure.reinit)]
        out += [Trial("shuffle", x, j) for x in s for j in range(procedure.shuffle)]
    if procedure.mode == "han":
        out += [Trial("continue", x, 0) for x in s]
    return out


@jax.jit
def _concat(trees: list[PyTree]) -> PyTree:
    """Stack trees along the trial axis: one compiled program per layout, not one per leaf and op."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *trees)


@jax.jit
def _gather(tree: PyTree, rows: jax.Array) -> PyTree:
    return jax.tree.map(lambda x: x[rows], tree)


@functools.lru_cache(maxsize=32)
def _init_keys(keys: Keys) -> Callable:
    return jax.jit(keys.init, compiler_options=quick_options())  # integer arithmetic: exact at any level


@functools.lru_cache(maxsize=32)
def _init_program(network: Network) -> Callable:
    # Full optimisation (unlike the other set-up programs) so the values equal a direct
    # ``network.init`` call bit for bit on the same platform.
    return jax.jit(jax.vmap(network.init))


def initial_params(lottery: Lottery, seeds: Sequence[int] | None = None) -> PyTree:
    """Initial weights of ``seeds`` (default: the procedure's), stacked on a leading axis."""
    seeds = lottery.procedure.seeds if seeds is None else tuple(seeds)
    keys = _init_keys(lottery.keys)(jnp.asarray(seeds, jnp.uint32), jnp.uint32(lottery.keys.init_code()))
    return _init_program(lottery.network)(keys)


@functools.lru_cache(maxsize=64)
def _key_program(keys: Keys, seed_list: tuple[int, ...], n_re: int, n_sh: int, han: bool) -> Callable:
    """``code -> (reinit keys, shuffle keys, batch keys)`` of a level's trials, seed-major.

    Integer arithmetic only (threefry), so the bits do not depend on the optimisation level."""
    seeds = jnp.asarray(seed_list, jnp.uint32)
    n = len(seed_list)

    def replicates(count):  # (seed, j) seed-major
        return jnp.repeat(seeds, count), jnp.tile(jnp.arange(count, dtype=jnp.uint32), n)

    def program(code):
        batch = [keys.batches(seeds, jnp.uint32(0))]
        s, j = replicates(n_re)
        reinit = keys.control(s, "reinit", code, j) if n_re else None
        batch.append(keys.batches(s, jnp.uint32(1) + j))
        s, j = replicates(n_sh)
        shuffle = keys.control(s, "shuffle", code, j) if n_sh else None
        batch.append(keys.batches(s, jnp.uint32(1 + n_re) + j))
        if han:
            batch.append(keys.batches(seeds, CONTINUE_SLOT + code))
        return reinit, shuffle, jnp.concatenate(batch)

    return jax.jit(program, compiler_options=quick_options())


@functools.lru_cache(maxsize=32)
def _builder(network: Network, n: int, n_re: int, n_sh: int, han: bool, quick: bool) -> Callable:
    """``(init, masks, chain, reinit keys, shuffle keys) -> (params, masks)`` of a level's trials."""

    def repeat(x, count):  # each seed's entry ``count`` times, seed-major
        return jax.tree.map(lambda a: a[jnp.repeat(jnp.arange(n), count)], x)

    def build(init, masks, chain, reinit_keys, shuffle_keys, fresh):
        p, m = jax.vmap(transforms.rewind)(init, masks)
        params_l, masks_l = [p], [m]
        if n_re and fresh is not None:  # drawn beforehand by the (cached) initialisation program
            p, m = jax.vmap(lambda f, mm: transforms.reinit(None, lambda _: f, mm))(fresh, repeat(masks, n_re))
            params_l.append(p)
            masks_l.append(m)
        elif n_re:
            p, m = jax.vmap(lambda k, mm: transforms.reinit(k, network.init, mm))(reinit_keys, repeat(masks, n_re))
            params_l.append(p)
            masks_l.append(m)
        if n_sh:
            p, m = jax.vmap(transforms.shuffle)(shuffle_keys, repeat(init, n_sh), repeat(masks, n_sh))
            params_l.append(p)
            masks_l.append(m)
        if han:
            p, m = jax.vmap(transforms.carry_on)(chain, masks)
            params_l.append(p)
            masks_l.append(m)
        return _concat(params_l), _concat(masks_l)

    return jax.jit(build, compiler_options=quick_options(quick))


def build_trials(lottery: Lottery, init: PyTree, masks: PyTree, level: Level,
                 chain: PyTree | None = None) -> tuple[PyTree, PyTree, jax.Array]:
    """Params, masks and batch keys of every trial of a level (order of :func:`layout`).

    ``init`` and ``masks`` hold the seeds' initial weights and ticket masks on a leading
    axis; ``chain`` (han only) the continuing networks' trained weights.
    """
    p = lottery.procedure
    controls = p.controls_at(level.value)
    n_re, n_sh, han = (p.reinit if controls else 0), (p.shuffle if controls else 0), p.mode == "han"
    reinit_keys, shuffle_keys, batch_keys = _key_program(lottery.keys, p.seeds, n_re, n_sh, han)(
        jnp.uint32(lottery.keys.code(level)))
    build = _builder(lottery.network, len(p.seeds), n_re, n_sh, han, lottery.quick_setup)
    # Without quick set-up the control draws are the initialisation program's own (full optimisation,
    # compiled once per network and trial count), as the XOR sweep's were.
    fresh = _init_program(lottery.network)(reinit_keys) if n_re and not lottery.quick_setup else None
    params, trial_masks = build(init, masks, chain, reinit_keys, shuffle_keys, fresh)
    return params, trial_masks, batch_keys


# ---------------------------------------------------------------- pruning between levels


@functools.lru_cache(maxsize=32)
def _pruners(network: Network, rule: Any, quick: bool) -> tuple[Callable, Callable, Callable]:
    options = quick_options(quick)
    to_level = jax.jit(jax.vmap(lambda p, m, v: rule.to_level(network, p, m, v), in_axes=(0, 0, None)),
                       compiler_options=options)
    step = jax.jit(jax.vmap(lambda p, m: rule.step(network, p, m)), compiler_options=options)
    start = jax.jit(jax.vmap(lambda p: rule.start(network, p)), compiler_options=options)
    return to_level, step, start


def _tree(record: store.Record, key: str) -> PyTree:
    return jax.tree.map(jnp.asarray, store.subtree(record.arrays, key))


def ticket_masks(lottery: Lottery, path: Path, init: PyTree, level: Level, previous: Level | None) -> PyTree:
    """The ticket masks of ``level`` (per seed), derived from what the store holds."""
    to_level, step, start = _pruners(lottery.network, lottery.prune, True)
    if previous is None:
        return start(init)
    if lottery.procedure.mode == "oneshot":
        original = store.load_level(path, plan(lottery)[0].name)
        return to_level(_tree(original, "trained"), _tree(original, "masks"), jnp.float32(level.value))
    prev = store.load_level(path, previous.name)
    source = "chain" if lottery.procedure.mode == "han" else "trained"
    return step(_tree(prev, source), _tree(prev, "masks"))


# ---------------------------------------------------------------- running


class Progress:
    """Hooks the runner calls; drivers subclass it with progress bars. No-ops here."""

    def level_start(self, index: int, depth: int, runs: int, trials: int, steps: int) -> None: ...
    def steps(self, n: int) -> None: ...
    def level_end(self, index: int, stored: list[tuple[str, Level, dict[str, Any]]]) -> None: ...
    def note(self, message: str) -> None: ...


def run_dir(lottery: Lottery, root: str | Path) -> Path:
    """Where :func:`run` stores ``lottery`` under ``root``: ``<mode>-<hash>``."""
    return store.run_dir(root, lottery.hashed(), prefix=lottery.procedure.mode)


def stored_init(lottery: Lottery, path: str | Path, progress: Progress | None = None) -> PyTree:
    """The run's initial weights (leading seed axis): stored once as record ``init``, so
    analyses and resumed runs read the exact values the run started from."""
    if not store.done(path, INIT):
        _report_problem(path, INIT, progress)
        store.save_level(path, INIT, store.flatten(jax.device_get(initial_params(lottery)), "init"),
                         {"order": -10**9, "seeds": list(lottery.procedure.seeds)})
    return _tree(store.load_level(path, INIT), "init")


def _report_problem(path: str | Path, name: str, progress: Progress | None) -> None:
    problem = store.problem(path, name)
    if problem and progress is not None:
        progress.note(f"recomputing {name}: {problem}")


def default_budget_mb() -> int:
    """Device memory the training chunks may use: 40% of an accelerator's, 2 GB on a CPU."""
    dev = jax.devices()[0]
    try:
        limit = (dev.memory_stats() or {}).get("bytes_limit")
    except Exception:  # backends without memory_stats
        limit = None
    return int(0.4 * limit / 2**20) if limit and dev.platform != "cpu" else 2048


def chunks(n: int, per_chunk: int) -> list[np.ndarray]:
    """``range(n)`` split into equal-size chunks of at most ``per_chunk`` (the last padded by
    repeating its first index, so every chunk compiles to the same program)."""
    k = max(1, math.ceil(n / max(1, per_chunk)))
    size = math.ceil(n / k)
    out = []
    for c in range(k):
        idx = np.arange(c * size, min(n, (c + 1) * size))
        out.append(np.concatenate([idx, np.full(size - idx.size, idx[0])]) if idx.size < size else idx)
    return out


def _row_digests(params: PyTree, masks: PyTree, keys: jax.Array) -> list[str]:
    """One digest per trial row of everything that determines its training."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get((params, masks)))]
    leaves.append(np.asarray(jax.device_get(jax.random.key_data(keys))))
    out = []
    for i in range(leaves[0].shape[0]):
        h = hashlib.sha256()
        for leaf in leaves:
            h.update(np.ascontiguousarray(leaf[i]).tobytes())
        out.append(h.hexdigest())
    return out


def _train_unique(trainer: Any, network: Network, trials: tuple, unique: np.ndarray, pieces: list[np.ndarray],
                  data: Any, progress: Progress) -> tuple[PyTree, dict[str, np.ndarray]]:
    """Train the ``unique`` rows of ``trials`` (params, masks, keys) chunk by chunk; returns the
    trained params and outputs of the unique rows, in order (chunk padding dropped)."""
    params, masks, keys = trials
    total = keys.shape[0]
    outs = []
    for piece in pieces:
        rows = unique[piece]
        if rows.size == total and np.array_equal(rows, np.arange(total)):
            p, m, k = params, masks, keys  # every row once, in order: nothing to gather
        else:
            p, m, k = _gather((params, masks, keys), jnp.asarray(rows))
        trained, outputs = trainer(network, p, m, k, data, on_steps=progress.steps)
        outs.append((jax.device_get(trained), outputs))
    first = np.unique(np.concatenate(pieces), return_index=True)[1]  # each unique row once, in order

    def gather(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays)[first]

    trained_u = jax.tree.map(lambda *xs: gather(list(xs)), *[o[0] for o in outs])
    return trained_u, {k: gather([o[1][k] for o in outs]) for k in outs[0][1]}


def signature(lottery: Lottery) -> tuple:
    """Lotteries that can share one compiled program: same forward pass and trainer (each
    keeps its own mode, plan and pruning rule)."""
    return (lottery.network.program(), lottery.trainer.signature())


def run(lottery: Lottery, data: Any, root: str | Path, **kw: Any) -> Path:
    """Run (or resume) one lottery; returns its run directory under ``root``. See :func:`run_groups`."""
    return run_groups([lottery], data, root, **kw)[0]


def run_groups(lotteries: Sequence[Lottery], data: Any, root: str | Path, *, progress: Progress | None = None,
               memory_budget_mb: int | None = None,
               after_level: Callable[[Level, dict[str, Any]], None] | None = None) -> list[Path]:
    """Run (or resume) several lotteries, level by level: those that share :func:`signature`
    train together (one program per level), the others group by group. Each is stored exactly
    as if run alone (same directory, records, arrays and metrics, plus a ``group`` entry saying
    what trained with it when there were several). Returns the run directories, in the order
    given.

    ``data`` is what the trainer takes (e.g. :func:`lth_jax.mnist.device_data`'s pair). Levels
    already stored are skipped; each new level is stored before the next starts.
    ``after_level`` is called after each newly stored level (tests use it to simulate a kill).
    """
    if not lotteries:
        return []
    progress = progress or Progress()
    if memory_budget_mb is not None and memory_budget_mb <= 0:
        raise ValueError(f"memory_budget_mb must be positive, not {memory_budget_mb}")
    budget = (memory_budget_mb or default_budget_mb()) * 2**20
    dirs = [run_dir(lt, root) for lt in lotteries]
    # The lock comes before open_run, so a second run waiting for it cannot rewrite the
    # running one's settings file; a second run of *other* settings has its own directory.
    with _locks(dirs, progress):
        paths = [store.open_run(root, lt.hashed(), prefix=lt.procedure.mode, extra=lt.unhashed()) for lt in lotteries]
        classes: dict[tuple, dict[Path, Lottery]] = {}
        for lt, path in zip(lotteries, paths, strict=True):
            classes.setdefault(signature(lt), {})[path] = lt  # the same lottery twice runs once
        for members in classes.values():
            _run_locked(list(members.values()), list(members), data, progress, budget, after_level)
    return paths


class _locks:
    """Hold every run directory's lock for the whole run (in a fixed order: no deadlock)."""

    def __init__(self, paths: Sequence[Path], progress: Progress) -> None:
        self.paths, self.progress, self.held = sorted(set(paths)), progress, []

    def __enter__(self) -> _locks:
        for p in self.paths:
            cm = store.locked(p, wait=True, on_wait=self.progress.note)
            cm.__enter__()
            self.held.append(cm)
        return self

    def __exit__(self, *exc: Any) -> None:
        for cm in reversed(self.held):
            cm.__exit__(*exc)


def _run_locked(lotteries: Sequence[Lottery], paths: list[Path], data: Any, progress: Progress, budget: int,
                after_level: Callable[[Level, dict[str, Any]], None] | None) -> None:
    first = lotteries[0]
    plans = [plan(lt) for lt in lotteries]
    inits: list[Any] = [None] * len(lotteries)
    for g, (lt, path) in enumerate(zip(lotteries, paths, strict=True)):
        if store.problem(path, INIT):  # every record is verified on resume, the initial weights too
            inits[g] = stored_init(lt, path, progress)
    depth = max(len(p) for p in plans)
    for i in range(depth):
        todo = []
        for g, p in enumerate(plans):
            if i < len(p) and not store.done(paths[g], p[i].name):
                _report_problem(paths[g], p[i].name, progress)
                todo.append(g)
        if not todo:
            progress.level_end(i, [])
            continue
        parts = []
        for g in todo:
            lt, level = lotteries[g], plans[g][i]
            if inits[g] is None:
                inits[g] = stored_init(lt, paths[g], progress)
            previous = plans[g][i - 1] if i else None
            masks = ticket_masks(lt, paths[g], inits[g], level, previous)
            chain = None
            if lt.procedure.mode == "han":
                chain = inits[g] if previous is None else _tree(store.load_level(paths[g], previous.name), "chain")
            parts.append((g, masks, *build_trials(lt, inits[g], masks, level, chain)))
        params = _concat([p[2] for p in parts])
        tmasks = _concat([p[3] for p in parts])
        keys = _concat([p[4] for p in parts])
        digests = _row_digests(params, tmasks, keys)
        first_row: dict[str, int] = {}
        for row, d in enumerate(digests):
            first_row.setdefault(d, row)
        unique = np.asarray(sorted(first_row.values()))
        inverse = np.searchsorted(unique, [first_row[d] for d in digests])
        pieces = chunks(unique.size, budget // first.trainer.trial_bytes(first.network))
        progress.level_start(i, depth, len(todo), len(digests), first.trainer.iterations * len(pieces))
        t0 = time.perf_counter()
        trained_u, outputs_u = _train_unique(first.trainer, first.network, (params, tmasks, keys), unique, pieces,
                                             data, progress)
        seconds = time.perf_counter() - t0
        n_rows = [jax.tree.leaves(p[2])[0].shape[0] for p in parts]
        group = None
        if len(lotteries) > 1:
            group = {"runs": len(todo), "trials": len(digests), "unique_trials": int(unique.size),
                     "chunks": len(pieces), "trained_trials": int(sum(p.size for p in pieces)),
                     "seconds": seconds, "members": [paths[g].name for g in todo]}
        stored, start = [], 0
        for (g, masks, *_), n in zip(parts, n_rows, strict=True):
            lt, level = lotteries[g], plans[g][i]
            rows = inverse[start:start + n]
            start += n
            trained_g = jax.tree.map(lambda x, rows=rows: x[rows], trained_u)
            outputs_g = {k: v[rows] for k, v in outputs_u.items()}
            metrics = level_metrics(lt, level, masks, outputs_g, seconds * n / len(digests),
                                    diverged_sources(lt, paths[g], plans[g], i))
            if group is not None:
                metrics["group"] = group
            store.save_level(paths[g], level.name, level_arrays(lt, masks, trained_g, outputs_g), metrics)
            stored.append((paths[g].name, level, metrics))
            if after_level:
                after_level(level, metrics)
        progress.level_end(i, stored)


def level_arrays(lottery: Lottery, masks: PyTree, trained: PyTree, outputs: Mapping[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """What a level stores: ticket masks, the tickets' trained weights, the trainer's outputs,
    and (han) the continuing chain's trained weights."""
    n = len(lottery.procedure.seeds)
    arrays = {**store.flatten(jax.device_get(masks), "masks"),
              **store.flatten(jax.tree.map(lambda x: np.asarray(x)[:n], trained), "trained"),
              **{k: np.asarray(v) for k, v in outputs.items()}}
    if lottery.procedure.mode == "han":
        arrays.update(store.flatten(jax.tree.map(lambda x: np.asarray(x)[-n:], trained), "chain"))
    return arrays


def level_metrics(lottery: Lottery, level: Level, masks: PyTree, outputs: Mapping[str, np.ndarray],
                  seconds: float, pruned_from_diverged: Sequence[int] = ()) -> dict[str, Any]:
    """Per-level metrics as stored in ``<level>.json``: weight counts, percents, and the judge's summary.

    ``pruned_from_diverged`` names the seeds whose masks were pruned from a training that
    diverged (NaN/inf): their trials are flagged in the per-trial rows and left out of the
    per-role statistics, which say how many were left out."""
    net = lottery.network
    counts = {layer_name(p): int(np.sum(np.asarray(_at(masks, p)["kernel"])[0])) for p in net.layers()}
    totals = net.weight_counts()
    hidden = [n for n in totals if n != layer_name(net.output_layer())]
    trials = layout(lottery.procedure, level)
    return {
        "order": level.order, "level_id": level.level_id, "percent_nominal": level.value,
        "percent_hidden": 100.0 * sum(counts[n] for n in hidden) / max(1, sum(totals[n] for n in hidden)),
        "percent_overall": 100.0 * sum(counts.values()) / sum(totals.values()),
        "weights": counts, "weights_total": sum(counts.values()),
        "expected_weights": level.counts,
        "seconds": seconds, "device": str(jax.devices()[0].platform),
        **_judged(lottery.judge, outputs, trials, set(pruned_from_diverged)),
    }


def _judged(judge: Any, outputs: Mapping[str, np.ndarray], trials: list[Trial], bad: set[int]) -> dict[str, Any]:
    summary = judge.summarize(outputs, trials)
    if not bad:
        return summary
    keep = [i for i, t in enumerate(trials) if t.seed not in bad]
    clean = judge.summarize({k: np.asarray(v)[keep] for k, v in outputs.items()}, [trials[i] for i in keep])
    for role, stats in clean.get("roles", {}).items():
        stats["excluded_pruned_from_diverged"] = sum(1 for t in trials if t.role == role and t.seed in bad)
    for role, stats in summary.get("roles", {}).items():  # every trial of the role came from a diverged training
        if role not in clean.get("roles", {}):
            clean.setdefault("roles", {})[role] = {**_emptied(stats), "excluded_pruned_from_diverged": sum(
                1 for t in trials if t.role == role)}
    for row, t in zip(summary.get("trials", []), trials, strict=False):
        row["pruned_from_diverged"] = t.seed in bad
    return {**summary, "roles": clean["roles"], "pruned_from_diverged": sorted(bad)}


def _emptied(stats: Any) -> Any:
    """The statistics of no trials, in the shape of ``stats`` (counts 0, values None)."""
    if isinstance(stats, dict):
        return {k: _emptied(v) for k, v in stats.items()}
    return 0 if isinstance(stats, int) and not isinstance(stats, bool) else None


def diverged_sources(lottery: Lottery, path: Path, plan_: Sequence[Level], index: int) -> list[int]:
    """Seeds whose level-``index`` masks were pruned from a training that diverged: the original
    (one-shot) or the previous level's ticket (iterative) or chain (han)."""
    if index == 0:
        return []
    mode = lottery.procedure.mode
    source = plan_[0] if mode == "oneshot" else plan_[index - 1]
    role = "continue" if mode == "han" else "ticket"
    rows = store.load_level(path, source.name, arrays=False).metrics.get("trials", [])
    return sorted({r["seed"] for r in rows if r.get("role") == role and r.get("diverged_at") is not None})


# ---------------------------------------------------------------- reading results back


def records(path: str | Path, arrays: bool = False) -> Iterator[store.Record]:
    """The stored levels of a run in plan order (largest first)."""
    for name in store.levels(path):
        if name != INIT:
            yield store.load_level(path, name, arrays=arrays)


def stored_masks(masks_tree: PyTree) -> PyTree:
    """Masks as loaded from the store (numpy) back to bool jax arrays."""
    return jax.tree.map(lambda m: jnp.asarray(m, bool), masks_tree)


def kernel_fraction(masks: PyTree) -> float:
    """Fraction of kernel weights alive in one network's masks."""
    return float(masks_lib.kernel_density(masks))
