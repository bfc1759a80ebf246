"""The parts of a lottery-ticket experiment and their hashing: :class:`Network`, :class:`Procedure`,
the key scheme (:class:`Keys`, :class:`SeedKeys`), the rule / trainer / judge protocols, :class:`Lottery`,
the :class:`Level` and :class:`Trial` it is planned into, and the hooks a driver gets (:class:`Progress`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import contract as contract_lib
from lth_jax import datasets, store
from lth_jax.store.ondisk import INIT, INIT_STATE, SNAPSHOTS, STATE  # noqa: F401  (the runner's names for them)

PyTree = Any
MODES: tuple[str, ...] = ("oneshot", "iterative", "han")
ROLES: tuple[str, ...] = ("ticket", "reinit", "shuffle", "random", "continue")
CONTROLS: tuple[str, ...] = ("reinit", "shuffle", "random")
CONTINUE_SLOT = 1000
MAX_ROUNDS = 500


class Level(NamedTuple):
    """One level of the plan: what is trained and how it is named and stored."""

    name: str          # record name in the store: "p100", "p51.2" (one-shot) or "r00" (iterative/han)
    order: int         # sort key of the record (descending size)
    level_id: int      # enters the control keys (see SeedKeys)
    value: float       # the rule's level value (percent of hidden weights kept, units, ...)
    counts: dict[str, int] | None  # exact weights per layer the ticket masks keep, where the rule knows


class Trial(NamedTuple):
    role: str       # ticket | reinit | shuffle | random | continue
    seed: int
    replicate: int  # control number within its ticket (0 for tickets)


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
        return {layer_name(p): math.prod(at_path(shapes, p)["kernel"].shape) for p in self.layers()}


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


def at_path(tree: PyTree, path: Sequence[str]) -> PyTree:
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
        d.update(store.added_later(
            {"random": self.random, "rewind_step": self.rewind_step, "stop_at_convergence": self.stop_at_convergence,
             "paired_batches": self.paired_batches}, {"random": 0, "rewind_step": 0, "stop_at_convergence": False,
                                                      "paired_batches": False}))
        if self.stop_at_convergence:
            d["stop_every"] = self.stop_every
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
      ``fold_in(., t)`` (:func:`lth_jax.trainers.step.minibatch_segment`). Tickets are slot 0 at
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
