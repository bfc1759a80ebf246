"""The lottery ticket's conv nets on CIFAR-10 (the paper's later versions): Conv-2/4/6, VGG and
ResNet from :mod:`lth_jax.zoo` as configurations of the runner, like :mod:`mnist`.

Pruning follows the later versions: the conv nets prune each layer at its kind's rate
(convolutions ``conv_rate``, dense layers ``rate``, the output layer at ``output_rate_factor``
of it); VGG and ResNet prune globally (``pruning="global"``), the output layer left out.
``synthetic=True`` trains on random CIFAR-shaped images whose labels a fixed random linear map
decides (learnable, so curves move): named ``cifar10-synthetic`` in the hash, the run directory
and every table and plot, so it is never mistaken for CIFAR-10.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

import numpy as np

from lth_jax import datasets, judges, optimizers, rules, runner, trainers, zoo

SHAPE = (32, 32, 3)
SYNTHETIC = "cifar10-synthetic"
OPTIMIZERS: tuple[str, ...] = ("adam", "momentum")
PRUNING: tuple[str, ...] = ("layerwise", "global")


def _help(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that defines a CIFAR-10 lottery experiment (defaults: Conv-2 at the paper's settings)."""

    model: str = field(default="conv2", metadata=_help("A model of lth_jax.zoo.", choices=zoo.NAMES))
    mode: str = field(default="iterative", metadata=_help("oneshot or iterative.", choices=("oneshot", "iterative")))
    optimizer: str = field(default="adam", metadata=_help("adam, or momentum (SGD, momentum 0.9).",
                                                           choices=OPTIMIZERS))
    lr: float = field(default=2e-4, metadata=_help("Learning rate (Conv-2: Adam 2e-4).", above=0))
    milestones: tuple[int, ...] = field(default=(), metadata=_help(
        "Iterations at which the learning rate drops 10x (SGD schedules).", min=1, unique=True, empty_ok=True))
    warmup: int = field(default=0, metadata=_help("Linear learning-rate warm-up iterations.", min=0))
    weight_decay: float = field(default=0.0, metadata=_help("Coupled weight decay (SGD).", min=0))
    batch_size: int = field(default=60, metadata=_help("Mini-batch size (conv nets: 60).", min=1))
    iterations: int = field(default=20_000, metadata=_help("Training iterations (Conv-2: 20,000).", min=1))
    eval_every: int = field(default=500, metadata=_help("Test accuracy every this many iterations.", min=1))
    seeds: tuple[int, ...] = field(default=(0,), metadata=_help("Seeds of the winning tickets.", min=0, unique=True))
    reinit: int = field(default=1, metadata=_help("Reinitialised copies per ticket.", min=0))
    shuffle: int = field(default=1, metadata=_help("Shuffled copies per ticket.", min=0))
    random: int = field(default=0, metadata=_help("Random-mask copies per ticket.", min=0))
    pruning: str = field(default="layerwise", metadata=_help(
        "layerwise (conv nets: each kind at its rate) or global (VGG, ResNet; the output layer left out).",
        choices=PRUNING))
    rate: float = field(default=0.2, metadata=_help("Dense layers' (global: all layers') rate a round.",
                                                     above=0, below=1))
    conv_rate: float = field(default=0.1, metadata=_help("Convolutions' rate a round (layerwise).",
                                                          above=0, below=1))
    output_rate_factor: float = field(default=0.5, metadata=_help("Output layer at this fraction of --rate.",
                                                                   min=0, max=1))
    levels: tuple[float, ...] = field(default=(100, 51.2, 26.2, 13.4, 6.9), metadata=_help(
        "One-shot: percents of each dense hidden layer to keep.", above=0, max=100))
    min_remaining: float = field(default=2.0, metadata=_help(
        "Iterative: stop after the first level under this percent of all weights.", above=0, below=100))
    rewind_step: int = field(default=0, metadata=_help("Late rewinding: reset tickets to this step.", min=0))
    snapshot_steps: tuple[int, ...] = field(default=(0,), metadata=_help(
        "Steps whose weights are kept for --rewind_step.", min=0, unique=True))
    augment: bool = field(default=True, metadata=_help("Random 4-pixel-padded crops and horizontal flips."))
    synthetic: bool = field(default=False, metadata=_help(
        "Random CIFAR-shaped data (named cifar10-synthetic everywhere), for a machine without CIFAR-10."))
    average_over: int = field(default=2000, metadata=_help("Convergence: moving-average window.", min=1))
    stable_for: int = field(default=2000, metadata=_help("Convergence: iterations the average stays put.", min=1))

    def __post_init__(self) -> None:
        for name, kind in (("seeds", int), ("levels", float), ("milestones", int), ("snapshot_steps", int)):
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))
        object.__setattr__(self, "snapshot_steps", tuple(sorted({0, *self.snapshot_steps})))
        if any(m >= self.iterations for m in self.milestones):
            raise ValueError(f"milestones must be below iterations ({self.iterations}): {self.milestones}")
        if self.warmup >= self.iterations:
            raise ValueError(f"warmup ({self.warmup}) must be below iterations ({self.iterations})")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def data_name(self) -> str:
        return SYNTHETIC if self.synthetic else "cifar10"


def optimizer(s: Settings) -> Any:
    """The optimiser spec: Adam or SGD with momentum 0.9, on a constant / step / warmed-up rate."""
    lr: Any = optimizers.StepDecay(s.lr, s.milestones) if s.milestones else s.lr
    if s.warmup:
        lr = optimizers.Warmup(s.warmup, lr if optimizers.is_schedule(lr) else optimizers.Constant(lr))
    if s.optimizer == "adam":
        return optimizers.Adam(lr)
    return optimizers.SGD(lr, momentum=0.9, weight_decay=s.weight_decay)


def prune_rule(s: Settings) -> Any:
    if s.pruning == "layerwise":
        return rules.LayerwiseMagnitude(s.rate, s.output_rate_factor, conv_rate=s.conv_rate)
    return rules.GlobalMagnitude(s.rate, exclude=("output",))


def synthetic_arrays(train: int = 5000, test: int = 1000, seed: int = 0) -> tuple:
    """Random 32x32x3 images in [0, 1]; each label is the argmax of a fixed random linear map of
    the image (so a network can learn it). Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(int(np.prod(SHAPE)), 10)).astype(np.float32)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.random((n, *SHAPE), dtype=np.float32)
        return x, np.argmax((x.reshape(n, -1) - 0.5) @ w, axis=1).astype(np.int32)

    return split(train), split(test)


def dataset(s: Settings, data_dir: str | None = None) -> datasets.Dataset:
    """CIFAR-10 (``data_dir``, else ``$LTH_CIFAR10_DIR``, else a download), or the synthetic set."""
    augment = datasets.CIFAR10_AUGMENT if s.augment else None
    if s.synthetic:
        (train, test) = synthetic_arrays()
        mean, std = datasets.channel_stats(train[0])
        return datasets.Dataset(SYNTHETIC, train=train, test=test, augment=augment, mean=mean, std=std)
    return datasets.cifar10(data_dir, augment=augment)


def lottery(s: Settings, data: datasets.Dataset | None = None, chunk_steps: int | None = None) -> runner.Lottery:
    """:class:`Settings` as the runner's :class:`~lth_jax.runner.Lottery`."""
    return runner.Lottery(
        network=runner.Network(zoo.get(s.model), SHAPE),
        procedure=runner.Procedure(mode=s.mode, seeds=s.seeds, reinit=s.reinit, shuffle=s.shuffle, random=s.random,
                                   levels=s.levels, min_remaining=s.min_remaining, rewind_step=s.rewind_step,
                                   snapshot_steps=s.snapshot_steps),
        prune=prune_rule(s),
        trainer=trainers.Minibatch(optimizer(s), batch_size=s.batch_size, iterations=s.iterations,
                                   eval_every=s.eval_every, chunk_steps=chunk_steps),
        judge=judges.Convergence(s.eval_every, s.average_over, s.stable_for),
        data=data if data is not None else dataset(s))
