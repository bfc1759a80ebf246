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

:func:`run` executes one lottery; :func:`run_groups` executes several that share a compiled
program (same network shape and trainer) together, as section 6's studies and the XOR sweep
need. Every level whose source level is stored (:func:`depends_on`: the originals for a
one-shot level, the previous round otherwise) trains in the next program (:func:`next_program`):
the originals first, then every one-shot level at once, iterative rounds one after another. A
program's trials (the winning tickets of all seeds and all their controls, of every level in
it) form ONE leading trial axis, trained as one vmapped :class:`lth_jax.programs.Program`
(identical trials, such as the unpruned round shared by several rates, are trained once),
split into chunks of at most ``memory_budget_mb`` of estimated device memory. Each level is
stored (:mod:`lth_jax.store`) the moment its trials are trained, so a killed run resumes where
it stopped and gives exactly the numbers an uninterrupted run gives.

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
2), then ``random`` controls per ticket (the random-mask control,
:func:`lth_jax.transforms.random_mask`), then (han) the continuing chain, seed-major within
each role. All of them train in one vmapped program.

Late rewinding (Frankle et al. 2019, "Stabilizing the lottery ticket hypothesis";
``Procedure.rewind_step = k``, one of ``Procedure.snapshot_steps``): the originals' training
(level 0) keeps a snapshot of every original network, params and optimiser state, after each
snapshot step (stored in the level-0 record as ``snapshots/<step>/params/...`` and
``snapshots/<step>/opt/<i>``, the i-th leaf of the optimiser state). Every later level then
starts from step ``k``: tickets from the step-``k`` snapshot under their masks
(:func:`lth_jax.transforms.rewind` of the snapshot), shuffle and random-mask controls from the
snapshot's values, reinit controls from fresh draws, and all of them train steps ``k`` ..
``iterations - 1`` with their usual batch order (a ticket sees at step ``t`` the batch its
original saw at step ``t``). The optimiser state at ``k`` (none for plain SGD) is the
snapshot's, moved like the weights: masked for tickets, permuted with the values for shuffle
controls, taken at the new positions for random-mask controls; a reinit control has no
history and starts from a fresh optimiser state. Curves keep absolute steps: evaluations
before ``k`` are NaN and ``curves/start_step`` holds ``k``, so a convergence iteration means
the same as the original's.

Level 0 does not depend on ``k``, so a run with ``rewind_step = k`` (its own directory: ``k``
enters the hash) trains no original: its level 0 is the level-0 record of its *base* run (the
same lottery with ``rewind_step = 0``, :func:`base_lottery`, in the same root), trained there
if it is not stored yet, and copied (verified, checksummed, only the step-``k`` snapshot kept)
into the run's own directory, so every reader sees a complete run. ``snapshot_steps`` is not
hashed (it changes no trained number), so a later run with another ``k`` finds the same base;
if the base's stored original lacks the step-``k`` snapshot, only the originals are trained
again, and only up to step ``k``, to add it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lth_jax import contract as contract_lib
from lth_jax import datasets, programs, rules, store, transforms
from lth_jax import devices as devices_lib
from lth_jax import masks as masks_lib

PyTree = Any
MODES: tuple[str, ...] = ("oneshot", "iterative", "han")
ROLES: tuple[str, ...] = ("ticket", "reinit", "shuffle", "random", "continue")
CONTROLS: tuple[str, ...] = ("reinit", "shuffle", "random")
CONTINUE_SLOT = 1000
INIT = "init"  # record holding the initial weights of every seed
INIT_STATE = "init_state"  # beside them in that record: the initial model state (modules with state only)
STATE = "state"  # trainer outputs: every trial's trained model state
SNAPSHOTS = "snapshots"  # prefix of the originals' snapshots in the level-0 record
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

    def contract(self) -> contract_lib.Contract:
        """How the trainer calls the module: its state collections, rng streams and ``train``
        flag (:func:`lth_jax.contract.describe`; a module unfit for training raises
        :class:`lth_jax.contract.ModelError` in one line)."""
        return contract_lib.describe(self.module, self.input_shape)

    def init(self, key: jax.Array) -> PyTree:
        """The ``params`` collection for one network from ``key``."""
        return self.contract().params(key)

    def init_state(self, key: jax.Array) -> dict[str, PyTree]:
        """The model state (every collection but ``params``) for one network from ``key``."""
        return self.contract().state(key)

    @property
    def stateful(self) -> bool:
        """Whether the module has state collections (BatchNorm's ``batch_stats``, ...)."""
        return bool(self.contract().collections)

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
    """The paper's procedure, independent of the network: which trainings a run consists of.

    ``random`` counts random-mask controls per ticket (:func:`lth_jax.transforms.random_mask`).
    ``rewind_step`` is late rewinding's ``k`` (0: the paper, rewind to the initialisation); it
    must be one of ``snapshot_steps``, the steps after which the originals' training keeps a
    snapshot (0, the initialisation, is always one; the others must be steps the trainer can
    stop at). ``snapshot_steps`` changes no trained number, so it is not hashed.
    """

    mode: str = "oneshot"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    reinit: int = 3                       # control 1: fresh draws per ticket
    shuffle: int = 3                      # control 2: shuffles per ticket
    levels: tuple[float, ...] = ()        # one-shot: the rule's level values (percent kept, units, ...)
    rounds: int | None = None             # iterative/han: prunings; None = until under min_remaining
    min_remaining: float = 1.0            # iterative/han: stop after the first level under this percent
    control_levels: tuple[float, ...] | None = None  # level values that get controls (None: every level)
    random: int = 0                       # control 3: random masks per ticket
    rewind_step: int = 0                  # late rewinding: reset to the originals' step-k snapshot
    snapshot_steps: tuple[int, ...] = (0,)  # steps after which each original is snapshotted
    stop_at_convergence: bool = False     # end measured trainings once converged (:func:`stoppable`)
    stop_every: int = 500                 # steps between those checks
    paired_batches: bool = False          # every control draws its ticket's batch order (not its own)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        if self.control_levels is not None:
            object.__setattr__(self, "control_levels", tuple(float(v) for v in self.control_levels))
        steps = tuple(int(k) for k in self.snapshot_steps)
        if len(set(steps)) != len(steps) or any(k < 0 for k in steps):
            raise ValueError(f"snapshot_steps must be distinct non-negative integers, not {steps}")
        object.__setattr__(self, "snapshot_steps", tuple(sorted({0, *steps})))
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers: {self.seeds}")
        if self.reinit < 0 or self.shuffle < 0 or self.random < 0:
            raise ValueError("control counts must be >= 0")
        if self.rounds is not None and not 0 <= self.rounds <= MAX_ROUNDS:
            raise ValueError(f"rounds must be in 0..{MAX_ROUNDS}, not {self.rounds}")
        if not 0 < self.min_remaining < 100:
            raise ValueError(f"min_remaining must be a percentage in (0, 100), not {self.min_remaining}")
        if self.rewind_step not in self.snapshot_steps:
            raise ValueError(f"rewind_step must be one of snapshot_steps "
                             f"({', '.join(map(str, self.snapshot_steps))}), not {self.rewind_step}")
        if self.rewind_step and self.mode == "han":
            raise ValueError("rewind_step must be 0 in han mode (its chain keeps training its trained weights)")
        if self.stop_every < 1:
            raise ValueError(f"stop_every must be at least 1, not {self.stop_every}")

    def hashed(self) -> dict[str, Any]:
        d = {"mode": self.mode, "seeds": list(self.seeds), "reinit": self.reinit, "shuffle": self.shuffle}
        if self.control_levels is not None:  # the trial layout of a level depends on it
            d["control_levels"] = list(self.control_levels)
        if self.rounds is not None:
            d["rounds"] = self.rounds
        # Added later: named only when set, so the runs stored before them keep their hashes.
        if self.random:
            d["random"] = self.random
        if self.rewind_step:
            d["rewind_step"] = self.rewind_step
        if self.stop_at_convergence:
            d.update(stop_at_convergence=True, stop_every=self.stop_every)
        if self.paired_batches:
            d["paired_batches"] = True
        return d

    def controls_at(self, value: float) -> bool:
        return self.control_levels is None or float(value) in self.control_levels

    def counts_at(self, value: float) -> tuple[int, int, int]:
        """(reinit, shuffle, random) controls per ticket at the level of ``value``."""
        return (self.reinit, self.shuffle, self.random) if self.controls_at(value) else (0, 0, 0)

    def snapshots(self) -> tuple[int, ...]:
        """The snapshot steps that are stored (step 0 is the ``init`` record)."""
        return tuple(k for k in self.snapshot_steps if k)


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
      shuffle control ``j`` slot ``1 + reinit + j``, random-mask control ``j`` slot
      ``1 + reinit + shuffle + j``, Han's continuing network slot ``1000 + round``; with
      ``Procedure.paired_batches`` every control is slot 0, its ticket's;
    - reinit control ``j``: ``fold_in(fold_in(fold_in(root, 2), level_id), j)``; shuffle
      control ``j``: the same with 3 in place of 2; random-mask control ``j``: with 4.
      ``level_id`` is the round (iterative, han) or ``round(value * 1000)`` (one-shot);
    - a rule that sees a batch (:meth:`prune`): stream 5, ``fold_in(fold_in(root, 5), level_id)``;
    - a module's own rng streams (dropout, ...) and the data set's augmentation at step ``t``:
      ``fold_in(fold_in(batch key, t), crc32(name))`` (:func:`lth_jax.contract.stream_key`).
    """

    STREAMS = {"reinit": 2, "shuffle": 3, "random": 4}

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

    def prune(self, seeds: jax.Array, code: jax.Array) -> jax.Array:
        """(n,) keys of a rule that sees a batch (:class:`lth_jax.rules.Context`) at the level
        numbered ``code``: ``fold_in(fold_in(root, 5), level_id)``; its batch is drawn with
        ``fold_in(., 0)``, its own key is ``fold_in(., 1)``, the loss's rng streams ``fold_in(., 2)``."""
        return jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(jax.random.key(s), 5), code))(seeds)

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
    ``outputs`` maps store keys (``curves/accuracy``, ``logits``, ...) to per-trial arrays.

    Late rewinding asks more of a trainer (:class:`lth_jax.trainers.Minibatch` has it):
    ``check_snapshot_steps(steps)`` (raise ``ValueError`` for steps it cannot stop at),
    ``init_state(params)`` (one trial's fresh optimiser state, traceable), and the keyword
    arguments ``snapshot_steps=`` (return ``snapshots/<step>/params/...`` and
    ``snapshots/<step>/opt/<i>`` after those steps), ``start_step=`` with ``opt_state=``
    (continue from that step and state) and ``stop_step=`` (stop early). The runner passes
    them only when a procedure uses them."""

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
    # The data: a lth_jax.datasets.Dataset (its name, content fingerprint, augmentation and
    # normalisation enter the hash) or, for arrays passed to run(), a name (checked against the
    # fingerprint stored with the run, so changed content is refused rather than reused).
    data: Any = "data"
    keys: Any = SeedKeys()      # Keys
    extra: tuple[tuple[str, Any], ...] = ()  # stored beside the hash, not hashed (e.g. flat settings)
    # Compile the set-up programs (control draws, pruning) at -O0 on CPU: fast to compile, and
    # what the stored MNIST runs used. XLA's truncated normal gives other bits at full
    # optimisation, so a configuration recorded that way (the XOR sweep) sets False.
    quick_setup: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", frozen(self.extra))
        p = self.procedure
        if p.snapshots():  # late rewinding needs a trainer that stops and restarts mid-training
            check = getattr(self.trainer, "check_snapshot_steps", None)
            if check is None:
                raise ValueError(f"snapshot_steps must be (0,) with {type(self.trainer).__name__}, which cannot "
                                 "stop and restart mid-training (use trainers.Minibatch)")
            if p.rewind_step >= self.trainer.iterations:
                raise ValueError(f"rewind_step must be below iterations ({self.trainer.iterations}), "
                                 f"not {p.rewind_step}")
            check(p.snapshots())
        if p.stop_at_convergence:
            if not hasattr(self.judge, "stop") or not hasattr(self.trainer, "check_snapshot_steps"):
                raise ValueError(f"stop_at_convergence needs a judge of convergence and a trainer that stops "
                                 f"mid-training, not {type(self.judge).__name__} and {type(self.trainer).__name__}")
            if p.stop_every % self.trainer.eval_every:
                raise ValueError(f"stop_every ({p.stop_every}) must be a multiple of eval_every "
                                 f"({self.trainer.eval_every})")

    def hashed(self) -> dict[str, Any]:
        """Everything that determines the trained numbers: the run directory's hash (with the
        convergence rule when trainings stop at convergence: where they stop depends on it)."""
        out = {**self.network.hashed(), **self.procedure.hashed(), **self.trainer.hashed(),
               **self.prune.hashed(self.procedure.mode), **self.keys.hashed(),
               "data": self.data.hashed() if datasets.is_dataset(self.data) else self.data}
        if self.procedure.stop_at_convergence:
            out["stop_rule"] = self.judge.extra()
        return out

    def unhashed(self) -> dict[str, Any]:
        p = self.procedure
        out = {"levels": list(p.levels), "min_remaining": p.min_remaining, **self.judge.extra(),
               "layers": [layer_name(x) for x in self.network.layers()], **thawed(self.extra)}
        if p.snapshots():
            out["snapshot_steps"] = list(p.snapshot_steps)
        return out

    def replace(self, **changes: Any) -> Lottery:
        return dataclasses.replace(self, **changes)

    def pipeline(self) -> Any:
        """The data set's augmentation and normalisation, traced inside each step (or None)."""
        return self.data.pipeline() if datasets.is_dataset(self.data) else None


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
    role: str       # ticket | reinit | shuffle | random | continue
    seed: int
    replicate: int  # control number within its ticket (0 for tickets)


def layout(procedure: Procedure, level: Level | None = None) -> list[Trial]:
    """The trial axis of a level: tickets, reinit controls, shuffle controls, random-mask
    controls, (continue)."""
    s = procedure.seeds
    controls = level is None or procedure.controls_at(level.value)
    out = [Trial("ticket", x, 0) for x in s]
    if controls:
        out += [Trial("reinit", x, j) for x in s for j in range(procedure.reinit)]
        out += [Trial("shuffle", x, j) for x in s for j in range(procedure.shuffle)]
        out += [Trial("random", x, j) for x in s for j in range(procedure.random)]
    if procedure.mode == "han":
        out += [Trial("continue", x, 0) for x in s]
    return out


@jax.jit
def _concat(trees: list[PyTree]) -> PyTree:
    """Stack trees along the trial axis: one compiled program per layout, not one per leaf and op."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *trees)


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
    return _init_program(lottery.network)(_seed_init_keys(lottery, seeds))


def initial_state(lottery: Lottery, seeds: Sequence[int] | None = None) -> PyTree | None:
    """Initial model state of ``seeds`` (drawn with their weights' keys), or None when stateless."""
    if not lottery.network.stateful:
        return None
    return jax.jit(jax.vmap(lottery.network.init_state))(_seed_init_keys(lottery, seeds))


def _seed_init_keys(lottery: Lottery, seeds: Sequence[int] | None) -> jax.Array:
    seeds = lottery.procedure.seeds if seeds is None else tuple(seeds)
    return _init_keys(lottery.keys)(jnp.asarray(seeds, jnp.uint32), jnp.uint32(lottery.keys.init_code()))


@functools.lru_cache(maxsize=64)
def _key_program(keys: Keys, seed_list: tuple[int, ...], n_re: int, n_sh: int, n_ra: int, han: bool,
                 paired: bool = False) -> Callable:
    """``code -> (reinit keys, shuffle keys, random keys, batch keys)`` of a level's trials, seed-major.
    ``paired``: every control draws its ticket's batches (slot 0) instead of its own.

    Integer arithmetic only (threefry), so the bits do not depend on the optimisation level."""
    seeds = jnp.asarray(seed_list, jnp.uint32)
    n = len(seed_list)

    def replicates(count):  # (seed, j) seed-major
        return jnp.repeat(seeds, count), jnp.tile(jnp.arange(count, dtype=jnp.uint32), n)

    def slot(first, j):  # a control's batch slot: its own, or its ticket's when paired
        return jnp.zeros_like(j) if paired else jnp.uint32(first) + j

    def program(code):
        batch = [keys.batches(seeds, jnp.uint32(0))]
        s, j = replicates(n_re)
        reinit = keys.control(s, "reinit", code, j) if n_re else None
        batch.append(keys.batches(s, slot(1, j)))
        s, j = replicates(n_sh)
        shuffle = keys.control(s, "shuffle", code, j) if n_sh else None
        batch.append(keys.batches(s, slot(1 + n_re, j)))
        random = None
        if n_ra:  # a key scheme without a random stream (XOR's) is never asked for one
            s, j = replicates(n_ra)
            random = keys.control(s, "random", code, j)
            batch.append(keys.batches(s, slot(1 + n_re + n_sh, j)))
        if han:
            batch.append(keys.batches(seeds, CONTINUE_SLOT + code))
        return reinit, shuffle, random, jnp.concatenate(batch)

    return jax.jit(program, compiler_options=quick_options())


def _repeat(n: int, tree: PyTree, count: int) -> PyTree:
    """Each of the ``n`` seeds' entries ``count`` times, seed-major."""
    return jax.tree.map(lambda a: a[jnp.repeat(jnp.arange(n), count)], tree)


def _reinit_rows(network: Network, n: int, n_re: int, masks: PyTree, reinit_keys: jax.Array,
                 fresh: PyTree | None) -> tuple[PyTree, PyTree]:
    if fresh is not None:  # drawn beforehand by the (cached) initialisation program
        return jax.vmap(lambda f, mm: transforms.reinit(None, lambda _: f, mm))(fresh, _repeat(n, masks, n_re))
    return jax.vmap(lambda k, mm: transforms.reinit(k, network.init, mm))(reinit_keys, _repeat(n, masks, n_re))


@functools.lru_cache(maxsize=32)
def _builder(network: Network, n: int, n_re: int, n_sh: int, n_ra: int, han: bool, quick: bool) -> Callable:
    """``(init, masks, chain, reinit keys, shuffle keys, random keys, fresh) -> (params, masks)`` of a
    level's trials."""

    def build(init, masks, chain, reinit_keys, shuffle_keys, random_keys, fresh):
        p, m = jax.vmap(transforms.rewind)(init, masks)
        params_l, masks_l = [p], [m]
        if n_re:
            p, m = _reinit_rows(network, n, n_re, masks, reinit_keys, fresh)
            params_l.append(p)
            masks_l.append(m)
        if n_sh:
            p, m = jax.vmap(transforms.shuffle)(shuffle_keys, _repeat(n, init, n_sh), _repeat(n, masks, n_sh))
            params_l.append(p)
            masks_l.append(m)
        if n_ra:
            p, m = jax.vmap(transforms.random_mask)(random_keys, _repeat(n, init, n_ra), _repeat(n, masks, n_ra))
            params_l.append(p)
            masks_l.append(m)
        if han:
            p, m = jax.vmap(transforms.carry_on)(chain, masks)
            params_l.append(p)
            masks_l.append(m)
        return _concat(params_l), _concat(masks_l)

    return jax.jit(build, compiler_options=quick_options(quick))


def _control_keys(lottery: Lottery, level: Level) -> tuple[tuple[int, int, int], tuple]:
    p = lottery.procedure
    counts = p.counts_at(level.value)
    keys = _key_program(lottery.keys, p.seeds, *counts, p.mode == "han", p.paired_batches)(
        jnp.uint32(lottery.keys.code(level)))
    return counts, keys


def build_trials(lottery: Lottery, init: PyTree, masks: PyTree, level: Level,
                 chain: PyTree | None = None) -> tuple[PyTree, PyTree, jax.Array]:
    """Params, masks and batch keys of every trial of a level (order of :func:`layout`),
    each trained from step 0.

    ``init`` and ``masks`` hold the seeds' initial weights and ticket masks on a leading
    axis; ``chain`` (han only) the continuing networks' trained weights.
    """
    p = lottery.procedure
    (n_re, n_sh, n_ra), (reinit_keys, shuffle_keys, random_keys, batch_keys) = _control_keys(lottery, level)
    build = _builder(lottery.network, len(p.seeds), n_re, n_sh, n_ra, p.mode == "han", lottery.quick_setup)
    # Without quick set-up the control draws are the initialisation program's own (full optimisation,
    # compiled once per network and trial count), as the XOR sweep's were.
    fresh = _init_program(lottery.network)(reinit_keys) if n_re and not lottery.quick_setup else None
    params, trial_masks = build(init, masks, chain, reinit_keys, shuffle_keys, random_keys, fresh)
    return params, trial_masks, batch_keys


@functools.lru_cache(maxsize=32)
def _state_builder(network: Network, n: int, n_re: int, n_sh: int, n_ra: int, han: bool) -> Callable:
    def build(start, chain, reinit_keys):
        rows = [start]
        if n_re:
            rows.append(jax.vmap(network.init_state)(reinit_keys))
        rows += [_repeat(n, start, count) for count in (n_sh, n_ra) if count]
        if han:
            rows.append(chain)
        return _concat(rows)

    return jax.jit(build)


def trial_states(lottery: Lottery, start: PyTree | None, level: Level, chain: PyTree | None = None) -> PyTree:
    """The model state every trial of a level starts from (order of :func:`layout`), or None for
    a stateless module. The state is not a weight, so it is never masked, pruned or shuffled:
    tickets and shuffle / random-mask controls start from ``start`` (the seeds' initial state, or
    the originals' step-k state when late rewinding, as a rewound checkpoint would), reinit
    controls from a fresh one drawn with their weights' keys, Han's chain from ``chain`` (its
    trained state)."""
    if start is None:
        return None
    p = lottery.procedure
    (n_re, n_sh, n_ra), (reinit_keys, *_) = _control_keys(lottery, level)
    return _state_builder(lottery.network, len(p.seeds), n_re, n_sh, n_ra, p.mode == "han")(
        start, start if chain is None else chain, reinit_keys)


def _moved_slots(state: PyTree, like: PyTree, move: Callable[[PyTree], PyTree]) -> PyTree:
    """``state`` (an optimiser state) with ``move`` applied to every sub-tree shaped like the
    params ``like`` (momentum, Adam's moments) and the rest (step counts) kept."""
    structure = jax.tree.structure(like)

    def is_slot(x: Any) -> bool:
        return jax.tree.structure(x) == structure

    return jax.tree.map(lambda x: move(x) if is_slot(x) else x, state, is_leaf=is_slot)


@functools.lru_cache(maxsize=32)
def _rewound_builder(network: Network, trainer: Any, n: int, n_re: int, n_sh: int, n_ra: int,
                     quick: bool) -> Callable:
    """``(snapshot, state, masks, reinit keys, shuffle keys, random keys, fresh) -> (params, masks,
    optimiser states)`` of a late-rewound level's trials (see the module docstring)."""

    def ticket(values, state, masks):
        p, m = transforms.rewind(values, masks)
        return p, m, _moved_slots(state, values, lambda t: masks_lib.apply(t, m))

    def shuffled(key, values, state, masks):
        p, m = transforms.shuffle(key, values, masks)
        perms = transforms.permutations(key, values)  # the ones shuffle drew: slots move with their weights
        return p, m, _moved_slots(state, values, lambda t: masks_lib.apply(transforms.permute(t, perms), m))

    def random(key, values, state, masks):
        p, m = transforms.random_mask(key, values, masks)
        return p, m, _moved_slots(state, values, lambda t: masks_lib.apply(t, m))  # the slots at the new places

    def build(values, state, masks, reinit_keys, shuffle_keys, random_keys, fresh):
        rows = [jax.vmap(ticket)(values, state, masks)]
        if n_re:
            p, m = _reinit_rows(network, n, n_re, masks, reinit_keys, fresh)
            rows.append((p, m, jax.vmap(trainer.init_state)(p)))  # a fresh draw has no optimiser history
        for count, keys, fn in ((n_sh, shuffle_keys, shuffled), (n_ra, random_keys, random)):
            if count:
                rows.append(jax.vmap(fn)(keys, _repeat(n, values, count), _repeat(n, state, count),
                                         _repeat(n, masks, count)))
        return tuple(_concat([r[i] for r in rows]) for i in range(3))

    return jax.jit(build, compiler_options=quick_options(quick))


def rewound_trials(lottery: Lottery, snapshot: tuple[PyTree, PyTree], masks: PyTree, level: Level
                   ) -> tuple[PyTree, PyTree, jax.Array, PyTree]:
    """Params, masks, batch keys and optimiser states of every trial of a late-rewound level
    (order of :func:`layout`), each to be trained from step ``procedure.rewind_step``.

    ``snapshot`` is the originals' ``(params, optimiser state)`` at that step (leading seed
    axis, :func:`original_snapshot`); ``masks`` the seeds' ticket masks.
    """
    p = lottery.procedure
    if p.mode == "han":
        raise ValueError("late rewinding does not apply to han mode")
    (n_re, n_sh, n_ra), (reinit_keys, shuffle_keys, random_keys, batch_keys) = _control_keys(lottery, level)
    build = _rewound_builder(lottery.network, lottery.trainer, len(p.seeds), n_re, n_sh, n_ra, lottery.quick_setup)
    fresh = _init_program(lottery.network)(reinit_keys) if n_re and not lottery.quick_setup else None
    params, trial_masks, states = build(*snapshot, masks, reinit_keys, shuffle_keys, random_keys, fresh)
    return params, trial_masks, batch_keys, states


def original_snapshot(lottery: Lottery, record: store.Record, step: int) -> tuple[PyTree, PyTree]:
    """The originals' ``(params, optimiser state)`` after ``step`` (leading seed axis), from a
    level-0 record that holds that snapshot; the state's structure is the trainer's
    ``init_state`` of one network."""
    prefix = f"{SNAPSHOTS}/{step}"
    if step not in record.metrics.get("snapshot_steps", []):
        raise store.StoreError(f"{record.name}: holds no snapshot at step {step} "
                               f"(has {record.metrics.get('snapshot_steps', [])})")
    params = _tree(record, f"{prefix}/params")
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), params)
    leaves, treedef = jax.tree.flatten(jax.eval_shape(lottery.trainer.init_state, one))
    state = treedef.unflatten([jnp.asarray(record.arrays[f"{prefix}/opt/{i}"]) for i in range(len(leaves))])
    return params, state


def snapshot_model_state(lottery: Lottery, record: store.Record, step: int) -> PyTree | None:
    """The originals' model state after ``step`` (leading seed axis; None when stateless)."""
    if not lottery.network.stateful:
        return None
    return _tree(record, f"{SNAPSHOTS}/{step}/{STATE}")


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


def ticket_masks(lottery: Lottery, path: Path, init: PyTree, level: Level, previous: Level | None,
                 data: Any = None) -> PyTree:
    """The ticket masks of ``level`` (per seed), derived from what the store holds (and, for a
    rule that sees a batch, ``data``)."""
    to_level, step, start = _pruners(lottery.network, lottery.prune, True)
    if previous is None:
        return start(init)
    if getattr(lottery.prune, "uses_context", False):
        return _context_masks(lottery, path, init, level, previous, data)
    if lottery.procedure.mode == "oneshot":
        original = store.load_level(path, plan(lottery)[0].name)
        return to_level(_tree(original, "trained"), _tree(original, "masks"), jnp.float32(level.value))
    prev = store.load_level(path, previous.name)
    source = "chain" if lottery.procedure.mode == "han" else "trained"
    return step(_tree(prev, source), _tree(prev, "masks"))


@functools.lru_cache(maxsize=32)
def _context_pruners(network: Network, rule: Any, pipeline: Any) -> tuple[Callable, Callable]:
    """Jitted, vmapped over seeds: ``(init, trained, masks, state, key, x, y[, value]) -> masks`` of a
    rule that sees a :class:`lth_jax.rules.Context`."""
    contract = network.contract()

    def context(init, trained, masks, state, key, x_all, y_all):
        idx = jax.random.randint(jax.random.fold_in(key, 0), (rule.batch_size,), 0, x_all.shape[0])
        x, y = x_all[idx], y_all[idx]
        if pipeline is not None:
            x = pipeline.test(x)

        def loss(params):
            logits, _ = contract.apply(masks_lib.apply(params, masks), state, x, train=True,
                                       key=jax.random.fold_in(key, 2))
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

        return rules.Context(init, trained, masks, (x, y), loss, jax.random.fold_in(key, 1))

    def to_level(init, trained, masks, state, key, x, y, value):
        return rule.to_level_ctx(network, context(init, trained, masks, state, key, x, y), value)

    def step(init, trained, masks, state, key, x, y):
        return rule.step_ctx(network, context(init, trained, masks, state, key, x, y))

    axes = (0, 0, 0, 0, 0, None, None)
    return (jax.jit(jax.vmap(to_level, in_axes=(*axes, None))), jax.jit(jax.vmap(step, in_axes=axes)))


def _context_masks(lottery: Lottery, path: Path, init: PyTree, level: Level, previous: Level,
                   data: Any) -> PyTree:
    """Masks of a context rule: from the initial weights (``at_init``) or the source level's trained
    ones, the source level's masks (all ones for one-shot), a batch and a key per seed drawn by
    :meth:`SeedKeys.prune`, the loss in training mode (BatchNorm on batch statistics, dropout drawn
    from the key; the state it computes is dropped)."""
    rule, p = lottery.prune, lottery.procedure
    if data is None:
        raise SetupError(f"rule {rule.name!r} sees a batch: the runner needs the training data")
    prune_keys = getattr(lottery.keys, "prune", None)
    if prune_keys is None:
        raise SetupError(f"rule {rule.name!r} sees a batch, which the key scheme {type(lottery.keys).__name__} "
                         "does not derive (it has no prune stream)")
    x, y = (data[0] if isinstance(data[0], tuple | list) else data)
    record = store.load_level(path, previous.name)  # the source level (depends_on)
    n = len(p.seeds)
    masks = jax.vmap(lambda q: rule.start(lottery.network, q))(init) if p.mode == "oneshot" else \
        _tree(record, "masks")
    if rule.at_init:
        trained, state = None, stored_init_state(lottery, path)
    else:
        trained = _tree(record, "chain" if p.mode == "han" else "trained")
        state = None if not lottery.network.stateful else jax.tree.map(lambda a: a[:n], _tree(record, STATE))
    keys = prune_keys(jnp.asarray(p.seeds, jnp.uint32), jnp.uint32(lottery.keys.code(level)))
    to_level, step = _context_pruners(lottery.network, rule, lottery.pipeline())
    if p.mode == "oneshot":
        return to_level(init, trained, masks, state, keys, x, y, jnp.float32(level.value))
    return step(init, trained, masks, state, keys, x, y)


# ---------------------------------------------------------------- running


class Progress:
    """Hooks the runner calls; drivers subclass it with progress bars. No-ops here."""

    def level_start(self, index: int, depth: int, runs: int, trials: int, steps: int) -> None: ...
    def steps(self, n: int) -> None: ...
    def level_end(self, index: int, stored: list[tuple[str, Level, dict[str, Any]]]) -> None: ...
    def trained(self, trials: int, seconds: float) -> None: ...  # after each program: distinct trials, time
    def note(self, message: str) -> None: ...


def run_dir(lottery: Lottery, root: str | Path) -> Path:
    """Where :func:`run` stores ``lottery`` under ``root``: ``<mode>-<hash>``."""
    return store.run_dir(root, lottery.hashed(), prefix=lottery.procedure.mode)


def stored_init(lottery: Lottery, path: str | Path, progress: Progress | None = None) -> PyTree:
    """The run's initial weights (leading seed axis): stored once as record ``init``, so
    analyses and resumed runs read the exact values the run started from."""
    if not store.done(path, INIT):
        _report_problem(path, INIT, progress)
        init = store.flatten(jax.device_get(initial_params(lottery)), "init")
        state = initial_state(lottery)
        if state is not None:
            init.update(store.flatten(jax.device_get(state), INIT_STATE))
        devices_lib.written(f"{path}/{INIT}", lambda: store.save_level(
            path, INIT, init, {"order": -10**9, "seeds": list(lottery.procedure.seeds)}))
    return _tree(store.load_level(path, INIT), "init")


def stored_init_state(lottery: Lottery, path: str | Path) -> PyTree | None:
    """The run's initial model state (leading seed axis) from its ``init`` record, or None for a
    stateless module."""
    if not lottery.network.stateful:
        return None
    return _tree(store.load_level(path, INIT), INIT_STATE)


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


def signature(lottery: Lottery) -> tuple:
    """Lotteries that can share one compiled program: same forward pass and trainer, the same
    rewind step and the same stopping rule (each keeps its own mode, plan and pruning rule)."""
    p = lottery.procedure
    stop = (p.stop_every, frozen(lottery.judge.extra())) if p.stop_at_convergence else None
    return (lottery.network.program(), lottery.trainer.signature(), p.rewind_step, stop, lottery.pipeline())


def stoppable(lottery: Lottery, plan_: Sequence[Level], index: int) -> np.ndarray:
    """Per trial of level ``index`` (:func:`layout` order): whether it stops at convergence.
    Only with ``stop_at_convergence``, and only trainings whose weights no later level is pruned
    from: every control, and the tickets of a level nothing is pruned from (every one-shot level
    after the originals, a chain's last round; han's measured tickets, not its chain). The
    paper prunes after the full training."""
    p = lottery.procedure
    roles = [t.role for t in layout(p, plan_[index])]
    if not p.stop_at_convergence:
        return np.zeros(len(roles), bool)
    source = any(depends_on(lottery, j) == index for j in range(len(plan_)))
    return np.asarray([not (source and role == source_role(lottery)) for role in roles])


def base_lottery(lottery: Lottery) -> Lottery:
    """The lottery whose level 0 (the trained originals and their snapshots) a late-rewound
    ``lottery`` uses: the same one with ``rewind_step = 0`` (itself when it is 0). Its run
    directory is :func:`run_dir` of it under the same root."""
    if not lottery.procedure.rewind_step:
        return lottery
    # Its originals always train the full length, so a stopping run shares them with one that does not.
    return lottery.replace(procedure=dataclasses.replace(lottery.procedure, rewind_step=0, stop_at_convergence=False))


class SetupError(ValueError):
    """A lottery that cannot run as given, named in one line before anything is written."""


def check(lottery: Lottery, data: Any = None) -> None:
    """Refuse, in one line, what would fail (or silently mislead) once training starts: a module
    that cannot be applied to its declared input with the trainer's collections, rngs and
    ``train`` flag, or whose output is not ``(batch, classes)``
    (:class:`lth_jax.contract.ModelError`); a judge that reads the curves on another grid than
    the trainer records them; data whose examples do not have the network's input shape or
    whose labels exceed its classes."""
    net, trainer, judge = lottery.network, lottery.trainer, lottery.judge
    contract = net.contract()
    every, judged = getattr(trainer, "eval_every", None), getattr(judge, "eval_every", None)
    if every is not None and judged is not None and every != judged:
        raise SetupError(f"the judge reads curves every {judged} steps but the trainer evaluates every {every}: "
                         "give both the same eval_every")
    if data is None:
        return
    splits = data if isinstance(data[0], tuple | list) else (data,)  # (train, test) or one (x, y)
    for name, (x, y) in zip(("training", "test"), splits, strict=False):
        if tuple(x.shape[1:]) != net.input_shape:
            raise SetupError(f"{name} examples have shape {tuple(x.shape[1:])}, the network's input_shape is "
                             f"{net.input_shape}")
        if jnp.issubdtype(y.dtype, jnp.integer) and int(jnp.max(y)) >= contract.classes:
            raise SetupError(f"{name} labels go up to {int(jnp.max(y))} but the network has {contract.classes} "
                             "outputs")


def _data_for(lotteries: Sequence[Lottery], data: Any) -> Any:
    """The arrays the trainers take: ``data`` as given, or the lotteries' data set on the device."""
    sets = {id(lt.data): lt.data for lt in lotteries if datasets.is_dataset(lt.data)}
    if datasets.is_dataset(data):
        sets.setdefault(id(data), data)
    if len(sets) > 1:
        raise SetupError("lotteries run together must share one data set: run each data set on its own")
    if sets:
        (dataset,) = sets.values()
        if data is not None and not datasets.is_dataset(data):
            raise SetupError(f"the lottery names data set {dataset.name!r}: pass no other arrays to run()")
        return dataset.device_arrays()
    if data is None:
        raise SetupError("no data: pass the arrays to run(), or give the lottery a lth_jax.datasets.Dataset")
    return data


_FINGERPRINTS: dict[tuple[int, ...], tuple[Any, str]] = {}


def _fingerprint(data: Any) -> str:
    """:func:`lth_jax.datasets.digest` of arrays handed to the runner, once per set of array objects."""
    key = tuple(id(leaf) for leaf in jax.tree.leaves(data))
    if key not in _FINGERPRINTS:
        if len(_FINGERPRINTS) >= 4:
            _FINGERPRINTS.pop(next(iter(_FINGERPRINTS)))
        _FINGERPRINTS[key] = (data, datasets.digest(data))  # the arrays are kept, so their ids stay theirs
    return _FINGERPRINTS[key][1]


def _check_named_data(lottery: Lottery, root: str | Path, fingerprint: str) -> None:
    """Arrays under a plain name: the run remembers their fingerprint and refuses other content."""
    settings = Path(run_dir(lottery, root)) / "settings.json"
    if not settings.exists():
        return
    try:
        stored = store.load_settings(settings.parent)["extra"].get("data_fingerprint")
    except store.StoreError:
        return  # a damaged settings file is rewritten
    if stored is not None and stored != fingerprint:
        raise SetupError(f"the arrays named {lottery.data!r} are not those {settings.parent} was trained on "
                         f"(fingerprint {fingerprint}, stored {stored}): name them differently, or pass a "
                         "lth_jax.datasets.Dataset, whose content enters the hash")


def run(lottery: Lottery, data: Any = None, root: str | Path = "runs", **kw: Any) -> Path:
    """Run (or resume) one lottery; returns its run directory under ``root``. See :func:`run_groups`."""
    return run_groups([lottery], data, root, **kw)[0]


def run_groups(lotteries: Sequence[Lottery], data: Any, root: str | Path, *, progress: Progress | None = None,
               memory_budget_mb: int | None = None,
               after_level: Callable[[Level, dict[str, Any]], None] | None = None,
               devices: int | Sequence[Any] | devices_lib.Placement | None = None,
               merge_levels: bool | None = None) -> list[Path]:
    """Run (or resume) several lotteries, level by level: those that share :func:`signature`
    train together, the others group by group. Every level whose source level is stored
    (:func:`depends_on`) trains in the next program (:func:`next_program`): all one-shot levels
    after the originals in one, iterative rounds one after another; ``merge_levels=False``
    trains one program per position of the plan instead (same numbers). The default merges on
    an accelerator and not on a CPU, where a program of 35 LeNets already fills the cores and
    wider ones ran slower (benchmarks/merged_levels.json: 0.76x on 2 cores). Each is stored exactly
    as if run alone (same directory, records, arrays and metrics, plus a ``group`` entry saying
    what trained with it when there were several). Returns the run directories, in the order
    given.

    ``data`` is what the trainer takes (e.g. :func:`lth_jax.mnist.device_data`'s pair). Levels
    already stored are skipped; each new level is stored before the next starts. A late-rewound
    lottery takes its level 0 from its :func:`base_lottery`'s run under the same ``root``
    (trained there first if it is not stored). ``after_level`` is called after each newly
    stored level (tests use it to simulate a kill).

    ``devices`` (a count, devices, or a :class:`lth_jax.devices.Placement`; default: every
    device) splits each program's trial axis across them, ``memory_budget_mb`` a device; the
    trial count is padded to a multiple of them and the padding dropped, so what is stored is
    what one device stores (up to the last bits where XLA's sums depend on the per-device
    width: :mod:`lth_jax.devices`).
    """
    if not lotteries:
        return []
    data = _data_for(lotteries, data)
    for lt in lotteries:  # before any folder, record or lock is written
        check(lt, data)
    named = [lt for lt in lotteries if not datasets.is_dataset(lt.data)]
    fingerprint = _fingerprint(data) if named else None
    for lt in named:
        _check_named_data(lt, root, fingerprint)
    progress = progress or Progress()
    if memory_budget_mb is not None and memory_budget_mb <= 0:
        raise ValueError(f"memory_budget_mb must be positive, not {memory_budget_mb}")
    budget = (memory_budget_mb or default_budget_mb()) * 2**20
    placement = devices_lib.split(devices)
    if placement is not None:
        data = placement.replicate(data)  # once: every trial reads the whole data set
    if merge_levels is None:
        merge_levels = jax.devices()[0].platform != "cpu"
    dirs = [run_dir(lt, root) for lt in lotteries]
    # A late-rewound run whose level 0 is not stored yet reads (or trains) its base run's.
    dirs += [run_dir(base_lottery(lt), root) for lt, d in zip(lotteries, list(dirs), strict=True)
             if lt.procedure.rewind_step and not store.done(d, plan(lt)[0].name)]
    for d in dirs:
        if store.is_export(d):  # its records hold no weights to prune or rewind from
            raise store.StoreError(f"{d} is an exported copy of a run (curves and metrics, no weights): "
                                   "train in another folder")
    # The lock comes before open_run, so a second run waiting for it cannot rewrite the
    # running one's settings file; a second run of *other* settings has its own directory.
    with _locks(dirs, progress):
        paths = [run_dir(lt, root) for lt in lotteries]
        devices_lib.written(f"{root}/open", lambda: [
            store.open_run(root, lt.hashed(), prefix=lt.procedure.mode, extra={
                **lt.unhashed(), **({} if datasets.is_dataset(lt.data) else {"data_fingerprint": fingerprint})})
            for lt in lotteries])
        classes: dict[tuple, dict[Path, Lottery]] = {}
        for lt, path in zip(lotteries, paths, strict=True):
            classes.setdefault(signature(lt), {})[path] = lt  # the same lottery twice runs once
        for members in classes.values():
            _run_locked(list(members.values()), list(members), data, progress, budget, after_level, placement,
                        merge_levels)
    return paths


class _locks:
    """Hold every run directory's lock for the whole run (in a fixed order: no deadlock)."""

    def __init__(self, paths: Sequence[Path], progress: Progress) -> None:
        self.paths, self.progress, self.held = sorted(set(paths)), progress, []

    def __enter__(self) -> _locks:
        if not devices_lib.is_writer():  # the other processes of a multi-host run write nothing
            return self
        for p in self.paths:
            cm = store.locked(p, wait=True, on_wait=self.progress.note)
            cm.__enter__()
            self.held.append(cm)
        return self

    def __exit__(self, *exc: Any) -> None:
        for cm in reversed(self.held):
            cm.__exit__(*exc)


class _Job(NamedTuple):
    """One level of one run to train: the run's lottery and directory (a late-rewound run's
    level 0 is its base run's) and the index of the lottery it serves."""

    g: int
    lottery: Lottery
    path: Path
    level: Level


def _base_path(lottery: Lottery, path: Path) -> Path:
    """The base run's directory (created with its settings file if it is not there yet)."""
    base = base_lottery(lottery)
    bpath = run_dir(base, path.parent)
    if not (bpath / "settings.json").exists():
        devices_lib.written(f"{bpath}/open", lambda: store.open_run(path.parent, base.hashed(),
                                                                      prefix=base.procedure.mode,
                                                                      extra=base.unhashed()))
    return bpath


def _original_jobs(lotteries: Sequence[Lottery], paths: list[Path], plans: list[list[Level]], todo: list[int],
                   data: Any, progress: Progress, budget: int,
                   placement: devices_lib.Placement | None = None) -> list[_Job]:
    """Level 0 of late-rewound runs: copy each base run's stored original (taking a missing
    snapshot first); the bases whose level 0 is not stored are returned as jobs to train."""
    jobs = []
    for g in todo:
        lt, level = lotteries[g], plans[g][0]
        base, bpath = base_lottery(lt), _base_path(lt, paths[g])
        if store.done(bpath, level.name):
            _add_snapshots(base, bpath, level, data, progress, budget, placement)
            devices_lib.written(f"{paths[g]}/copy", lambda g=g, bpath=bpath, lt=lt, level=level: copy_original(
                bpath, paths[g], level.name, lt.procedure.rewind_step))
        else:
            _report_problem(bpath, level.name, progress)
            jobs.append(_Job(g, base, bpath, level))
    return jobs


def depends_on(lottery: Lottery, index: int) -> int | None:
    """The level whose stored training level ``index`` of the plan is pruned from (None for the
    first): the originals for every one-shot level, the previous round otherwise."""
    if index == 0:
        return None
    return 0 if lottery.procedure.mode == "oneshot" else index - 1


def source_role(lottery: Lottery) -> str:
    """The trials of a level whose trained weights the next level is pruned from: the tickets,
    or Han et al.'s continuing chain."""
    return "continue" if lottery.procedure.mode == "han" else "ticket"


def next_program(lotteries: Sequence[Lottery], plans: Sequence[Sequence[Level]], stored: set[tuple[int, int]],
                 merge: bool = True) -> list[tuple[int, int]]:
    """The ``(lottery, level index)`` pairs to train in the next program: every level not
    ``stored`` whose source level is. Levels 0 (the originals, which take the snapshots) train
    in a program of their own; with ``merge=False`` only the shallowest ready levels train
    together (one program per level of the plan, as before levels merged)."""
    ready = [(g, i) for g, p in enumerate(plans) for i in range(len(p)) if (g, i) not in stored
             and (depends_on(lotteries[g], i) is None or (g, depends_on(lotteries[g], i)) in stored)]
    if not ready:
        return []
    if any(i == 0 for _, i in ready) or not merge:
        low = min(i for _, i in ready)
        return [(g, i) for g, i in ready if i == low]
    return ready


def _run_locked(lotteries: Sequence[Lottery], paths: list[Path], data: Any, progress: Progress, budget: int,
                after_level: Callable[[Level, dict[str, Any]], None] | None,
                placement: devices_lib.Placement | None = None, merge: bool = True) -> None:
    plans = [plan(lt) for lt in lotteries]
    inits: list[Any] = [None] * len(lotteries)
    snapshots: list[Any] = [None] * len(lotteries)
    for g, (lt, path) in enumerate(zip(lotteries, paths, strict=True)):
        if store.problem(path, INIT):  # every record is verified on resume, the initial weights too
            inits[g] = stored_init(lt, path, progress)
    stored = set()
    for g, p in enumerate(plans):
        for i, level in enumerate(p):
            if store.done(paths[g], level.name):
                stored.add((g, i))
            else:
                _report_problem(paths[g], level.name, progress)
    depth = max(len(p) for p in plans)
    announced: set[int] = set()
    news: dict[int, list[tuple[str, Level, dict[str, Any]]]] = {}

    def announce() -> None:  # a position of the plan is reported once all runs have stored it
        for i in range(depth):
            if i not in announced and all((g, i) in stored for g, p in enumerate(plans) if i < len(p)):
                announced.add(i)
                progress.level_end(i, news.pop(i, []))

    announce()
    while todo := next_program(lotteries, plans, stored, merge):
        k = lotteries[todo[0][0]].procedure.rewind_step  # one rewind step per class (signature)
        if k and todo[0][1] == 0:
            jobs = _original_jobs(lotteries, paths, plans, [g for g, _ in todo], data, progress, budget, placement)
            stored |= {(g, 0) for g, _ in todo} - {(job.g, 0) for job in jobs}  # copied from their base runs
        else:
            jobs = [_Job(g, lotteries[g], paths[g], plans[g][i]) for g, i in todo]
        if jobs:
            for g, i in _train_program(jobs, lotteries, paths, plans, inits, snapshots, data, progress, budget,
                                       after_level, placement, depth, news):
                stored.add((g, i))
        announce()


def _train_program(jobs: list[_Job], lotteries: Sequence[Lottery], paths: list[Path], plans: list[list[Level]],
                   inits: list[Any], snapshots: list[Any], data: Any, progress: Progress, budget: int,
                   after_level: Callable[[Level, dict[str, Any]], None] | None,
                   placement: devices_lib.Placement | None, depth: int,
                   news: dict[int, list[tuple[str, Level, dict[str, Any]]]]) -> Iterator[tuple[int, int]]:
    """Train ``jobs`` (levels of one class) as one :class:`lth_jax.programs.Program`, storing
    each level the moment its trials are trained; yields ``(lottery, level index)`` of each."""
    first = jobs[0].lottery
    k = lotteries[jobs[0].g].procedure.rewind_step  # a base run's job (level 0) has rewind step 0
    index = [plans[job.g].index(job.level) for job in jobs]
    rewound = bool(k and index[0])
    parts = []
    for job, i in zip(jobs, index, strict=True):
        lt, level, g = job.lottery, job.level, job.g
        if job.path != paths[g]:  # a base run's level 0
            init = stored_init(lt, job.path, progress)
        else:
            if inits[g] is None:
                inits[g] = stored_init(lt, paths[g], progress)
            init = inits[g]
        previous = plans[g][depends_on(lt, i)] if i else None
        masks = ticket_masks(lt, job.path, init, level, previous, data)
        if rewound:
            if snapshots[g] is None:
                level0 = store.load_level(paths[g], plans[g][0].name)
                snapshots[g] = (*original_snapshot(lt, level0, k), snapshot_model_state(lt, level0, k))
            states = trial_states(lt, snapshots[g][2], level)
            parts.append((job, masks, programs.Trials(*rewound_trials(lt, snapshots[g][:2], masks, level),
                                                      model_state=states)))
            continue
        chain = chain_state = None
        start_state = stored_init_state(lt, job.path)
        if lt.procedure.mode == "han":
            prev = None if previous is None else store.load_level(job.path, previous.name)
            chain = init if prev is None else _tree(prev, "chain")
            if start_state is not None and prev is not None:
                rows = slice(-len(lt.procedure.seeds), None)  # the chain's rows are the level's last
                chain_state = jax.tree.map(lambda a, rows=rows: a[rows], _tree(prev, STATE))
        states = trial_states(lt, start_state, level, chain_state)
        parts.append((job, masks, programs.Trials(*build_trials(lt, init, masks, level, chain), model_state=states)))
    sizes = [int(p[2].keys.shape[0]) for p in parts]
    stops = np.concatenate([stoppable(job.lottery, plans[job.g], i) for job, i in zip(jobs, index, strict=True)])
    stacked = [None if parts[0][2][f] is None else _concat([p[2][f] for p in parts]) for f in range(6)]
    stacked[4] = stops if stops.any() else None
    trials = programs.Trials(*stacked)
    program = programs.Program(first.trainer, first.network, trials, budget, placement, sizes)
    how: dict[str, Any] = {"start_step": k} if rewound else {}
    if first.pipeline() is not None:
        how["pipeline"] = first.pipeline()
    if stops.any():
        how["stop"] = first.judge.stop(first.procedure.stop_every)
    steps = sorted({s for job in jobs for s in job.lottery.procedure.snapshots()}) if index[0] == 0 else []
    if steps:
        how["snapshot_steps"] = tuple(steps)
    progress.level_start(min(index), depth, len({job.path for job in jobs}), program.rows,
                         (first.trainer.iterations - (k if rewound else 0)) * len(program.pieces))
    group = None
    if len(parts) > 1:  # what trained with each level (cost.py adds a program's levels up)
        members = [f"{job.path.name}/{job.level.name}" for job in jobs]
        group = {"program": hashlib.sha256("|".join(members).encode()).hexdigest()[:16],
                 "runs": len({job.path for job in jobs}), "levels": len(parts), "trials": program.rows,
                 "unique_trials": int(program.unique.size), "chunks": len(program.pieces),
                 "trained_trials": program.trained_trials, "members": members}
    seconds = 0.0
    for block in program.run(data, progress, **how):
        job, masks, _ = parts[block.index]
        lt, level, i = job.lottery, job.level, index[block.index]
        seconds += block.seconds
        judged = {key: v for key, v in block.outputs.items() if not key.startswith(SNAPSHOTS + store.SEP)}
        metrics = level_metrics(lt, level, masks, judged, block.seconds,
                                diverged_sources(lt, job.path, plans[job.g], i))
        if rewound:
            metrics["rewind_step"] = k
        if i and getattr(lt.prune, "at_init", False):  # masks from the initial weights, not from a training
            metrics["pruned_at_init"] = True
        if steps:
            metrics["snapshot_steps"] = steps
        if group is not None:
            metrics["group"] = group
        arrays = level_arrays(lt, masks, block.trained, block.outputs)
        devices_lib.written(f"{job.path}/{level.name}",
                            lambda job=job, level=level, arrays=arrays, metrics=metrics: store.save_level(
                                job.path, level.name, arrays, metrics))
        news.setdefault(i, []).append((job.path.name, level, metrics))
        if after_level:
            after_level(level, metrics)
        if job.path != paths[job.g]:  # the base's original, stored: now the rewound run's level 0
            devices_lib.written(f"{paths[job.g]}/copy", lambda job=job, level=level: copy_original(
                job.path, paths[job.g], level.name, k))
        yield job.g, i
    progress.trained(int(program.unique.size), seconds)


def copy_original(base: Path, path: Path, name: str, step: int) -> None:
    """Make the base run's ``init`` and level-0 record ``name`` (the trained originals) the
    late-rewound run's own: verified on reading, stored with fresh checksums, arrays and metrics
    unchanged except that only the step-``step`` snapshot is kept and ``copied_from`` names the
    source. Nothing is trained."""
    if not store.done(path, INIT):
        rec = store.load_level(base, INIT)
        store.save_level(path, INIT, rec.arrays, rec.metrics)
    rec = store.load_level(base, name)
    keep = f"{SNAPSHOTS}{store.SEP}{step}{store.SEP}"
    arrays = {key: a for key, a in rec.arrays.items()
              if not key.startswith(SNAPSHOTS + store.SEP) or key.startswith(keep)}
    store.save_level(path, name, arrays, {**rec.metrics, "snapshot_steps": [step],
                                          "copied_from": f"{base.name}/{name}"})


def _add_snapshots(lottery: Lottery, path: Path, level: Level, data: Any, progress: Progress, budget: int,
                   placement: devices_lib.Placement | None = None) -> None:
    """Give the stored originals of level 0 the snapshots ``lottery`` asks for that they lack:
    the originals (seeds only, no controls) are trained again from their initial weights with
    their own batch order up to the last missing step, and the record is stored again with
    the new snapshots beside everything it held. On one platform the same programs give the
    same bits as the originals' first training, so this takes k steps of the seeds' networks
    instead of a whole level (vmapped over other trial counts, conv nets may differ in the last
    bits, as tests/test_runner.py measures)."""
    record = store.load_level(path, level.name)
    have = set(record.metrics.get("snapshot_steps", []))
    missing = sorted(set(lottery.procedure.snapshots()) - have)
    if not missing:
        return
    progress.note(f"{path.name}/{level.name} holds no snapshot at step(s) {', '.join(map(str, missing))}: "
                  f"training its originals to step {missing[-1]} to take them")
    init = stored_init(lottery, path, progress)
    alone = lottery.replace(procedure=dataclasses.replace(lottery.procedure, reinit=0, shuffle=0, random=0))
    masks = ticket_masks(alone, path, init, level, None)
    params, tmasks, keys = build_trials(alone, init, masks, level)
    trials = programs.Trials(params, tmasks, keys, model_state=stored_init_state(alone, path))
    how = {} if lottery.pipeline() is None else {"pipeline": lottery.pipeline()}
    (block,) = programs.Program(lottery.trainer, lottery.network, trials, budget, placement).run(
        data, progress, snapshot_steps=tuple(missing), stop_step=missing[-1], **how)
    outputs = block.outputs
    new = {key: v for key, v in outputs.items() if key.startswith(SNAPSHOTS + store.SEP)}
    devices_lib.written(f"{path}/{level.name}/snapshots", lambda: store.save_level(
        path, level.name, {**record.arrays, **new}, {**record.metrics, "snapshot_steps": sorted(have | set(missing))}))


def level_arrays(lottery: Lottery, masks: PyTree, trained: PyTree, outputs: Mapping[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """What a level stores: ticket masks, the tickets' trained weights, the trainer's outputs
    (of the originals alone for their snapshots), and (han) the continuing chain's trained weights."""
    n = len(lottery.procedure.seeds)
    arrays = {**store.flatten(jax.device_get(masks), "masks"),
              **store.flatten(jax.tree.map(lambda x: np.asarray(x)[:n], trained), "trained"),
              **{k: np.asarray(v)[:n] if k.startswith(SNAPSHOTS + store.SEP) else np.asarray(v)
                 for k, v in outputs.items()}}
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
    source = depends_on(lottery, index)
    if source is None:
        return []
    role = source_role(lottery)
    rows = store.load_level(path, plan_[source].name, arrays=False).metrics.get("trials", [])
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

