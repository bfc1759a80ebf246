"""The conv nets of the lottery-ticket literature on CIFAR-10, as plain Flax modules.

- :class:`ConvNet`: Conv-2 / Conv-4 / Conv-6 of the paper's later versions (Frankle & Carbin,
  Figure 2): pairs of 3x3 convolutions (64-64, then 128-128, then 256-256), each pair followed
  by 2x2 max pooling, then dense 256-256-10; Gaussian Glorot initialisation.
- :class:`VGG`: VGG-11/16/19 for CIFAR-10 as the follow-up work trains them (Frankle et al.
  2019, open_lth's ``cifar_vgg``): 3x3 convolutions with BatchNorm (optional), max pooling
  between stages, a global average pool and ONE dense layer to the classes; He initialisation.
- :class:`ResNet`: He et al.'s CIFAR ResNets (depth 6n + 2: ResNet-20, ResNet-56): a 3x3
  convolution of 16, three stages of n basic blocks with 16 / 32 / 64 filters (stride 2 into
  stages 2 and 3, where the shortcut is a 1x1 convolution with BatchNorm), global average pool,
  dense to the classes; He initialisation.

:func:`get` builds one by name (``conv2``, ``conv4``, ``conv6``, ``vgg11``, ``vgg16``, ``vgg19``
with ``_bn`` for BatchNorm, ``resnet20``, ``resnet56``). Layer names are Flax's defaults, so a
model's layers, masks and pruning rates follow its forward order. BatchNorm takes the trainer's
``train`` flag (its statistics are model state, :mod:`lth_jax.contract`).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

GLOROT = nn.initializers.glorot_normal()
HE = nn.initializers.kaiming_normal()

CONV_STAGES: dict[int, tuple[int, ...]] = {2: (64,), 4: (64, 128), 6: (64, 128, 256)}
VGG_STAGES: dict[int, tuple[tuple[int, ...], ...]] = {  # filters of each stage's convolutions
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


class ConvNet(nn.Module):
    """Conv-2 / 4 / 6: ``stages`` of two 3x3 convolutions and 2x2 max pooling, then ``dense``."""

    stages: Sequence[int] = (64,)
    dense: Sequence[int] = (256, 256)
    classes: int = 10

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for width in self.stages:
            for _ in range(2):
                x = nn.relu(nn.Conv(width, (3, 3), kernel_init=GLOROT)(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape((x.shape[0], -1))
        for width in self.dense:
            x = nn.relu(nn.Dense(width, kernel_init=GLOROT)(x))
        return nn.Dense(self.classes, kernel_init=GLOROT)(x)


class VGG(nn.Module):
    """VGG for CIFAR-10: ``stages`` of 3x3 convolutions (+ BatchNorm), max pooling between stages,
    global average pooling, one dense layer."""

    stages: Sequence[Sequence[int]] = VGG_STAGES[19]
    batch_norm: bool = True
    classes: int = 10

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        for i, stage in enumerate(self.stages):
            if i:
                x = nn.max_pool(x, (2, 2), (2, 2))
            for width in stage:
                x = nn.Conv(width, (3, 3), use_bias=not self.batch_norm, kernel_init=HE)(x)
                if self.batch_norm:
                    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
                x = nn.relu(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.classes, kernel_init=HE)(x)


class Block(nn.Module):
    """He et al.'s basic block: two 3x3 convolutions with BatchNorm; a 1x1 projection shortcut
    when the shape changes."""

    width: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        def norm(y: jnp.ndarray) -> jnp.ndarray:
            return nn.BatchNorm(use_running_average=not train, momentum=0.9)(y)

        y = nn.relu(norm(nn.Conv(self.width, (3, 3), (self.stride, self.stride), use_bias=False, kernel_init=HE)(x)))
        y = norm(nn.Conv(self.width, (3, 3), use_bias=False, kernel_init=HE)(y))
        if self.stride != 1 or x.shape[-1] != self.width:
            x = norm(nn.Conv(self.width, (1, 1), (self.stride, self.stride), use_bias=False, kernel_init=HE)(x))
        return nn.relu(x + y)


class ResNet(nn.Module):
    """A CIFAR ResNet of ``depth`` = 6n + 2 layers, stages of ``widths`` filters."""

    depth: int = 20
    widths: Sequence[int] = (16, 32, 64)
    classes: int = 10

    def __post_init__(self) -> None:
        if (self.depth - 2) % 6 or self.depth < 8:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, 110), not {self.depth}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = nn.Conv(self.widths[0], (3, 3), use_bias=False, kernel_init=HE)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        for i, width in enumerate(self.widths):
            for j in range((self.depth - 2) // 6):
                x = Block(width, stride=2 if i and not j else 1)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.classes, kernel_init=HE)(x)


NAMES: tuple[str, ...] = ("conv2", "conv4", "conv6", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
                          "resnet20", "resnet56")


def get(name: str, classes: int = 10) -> nn.Module:
    """The zoo's model ``name`` (one of :data:`NAMES`) for ``classes`` classes."""
    if name.startswith("conv") and name[4:].isdigit() and int(name[4:]) in CONV_STAGES:
        return ConvNet(CONV_STAGES[int(name[4:])], classes=classes)
    if name.startswith("vgg"):
        depth, _, bn = name[3:].partition("_")
        if depth.isdigit() and int(depth) in VGG_STAGES and bn in ("", "bn"):
            return VGG(VGG_STAGES[int(depth)], batch_norm=bn == "bn", classes=classes)
    if name.startswith("resnet") and name[6:] in ("20", "56"):
        return ResNet(int(name[6:]), classes=classes)
    raise ValueError(f"model must be one of {', '.join(NAMES)}, not {name!r}")

