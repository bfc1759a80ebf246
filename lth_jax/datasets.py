"""The data set a lottery-ticket run trains on, as one frozen value.

A :class:`Dataset` holds its arrays (or a loader called once, on first use), an optional
augmentation and an optional per-channel normalisation. It sits in a frozen, hashable
experiment description by identity (``eq=False``); what enters a run directory's hash is
:meth:`Dataset.hashed`: the bare name for a *canonical* set (one whose loader checks its files
against published checksums, so the name pins the content: hashes of runs stored before stay),
else the name with a SHA-256 fingerprint of the arrays and the pipeline's description.

The trainer applies :meth:`Dataset.pipeline` inside its jitted, vmapped step: augmentation and
normalisation are pure, shape-preserving functions of ``(key, x, y)``, deterministic given the key.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lth_jax import data

Split = tuple[np.ndarray, np.ndarray]  # (x, y): examples on the leading axis
Splits = tuple[Split, Split]           # (train, test)
LABELS = ("int", "float")
"""Label kinds: ``int`` class indices (the default), ``float`` targets (XOR's 0/1 sigmoid targets)."""


@runtime_checkable
class Augmentation(Protocol):
    """A batch transform ``(key, x, y) -> (x, y)`` with a JSON-able description for the hash."""

    def __call__(self, key: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]: ...
    def hashed(self) -> dict[str, Any]: ...


# ---------------------------------------------------------------- augmentations


def _nhwc(x: jax.Array, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} needs NHWC images (rank 4), got x of shape {tuple(x.shape)}")


@dataclasses.dataclass(frozen=True)
class RandomCrop:
    """Zero-pad H and W by ``padding`` and take a random HxW window per image (the CIFAR standard)."""

    padding: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.padding, int | np.integer) or self.padding < 0:
            raise ValueError(f"padding must be a non-negative integer, not {self.padding!r}")
        object.__setattr__(self, "padding", int(self.padding))

    def __call__(self, key: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        _nhwc(x, "RandomCrop")
        n, h, w, c = x.shape
        p = self.padding
        padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))

        def crop(k: jax.Array, image: jax.Array) -> jax.Array:
            dy, dx = jax.random.randint(k, (2,), 0, 2 * p + 1)
            return lax.dynamic_slice(image, (dy, dx, 0), (h, w, c))

        return jax.vmap(crop)(jax.random.split(key, n), padded), y

    def hashed(self) -> dict[str, Any]:
        return {"kind": "random_crop", "padding": self.padding}


@dataclasses.dataclass(frozen=True)
class HorizontalFlip:
    """Mirror each NHWC image along W with probability ``p``."""

    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], not {self.p!r}")
        object.__setattr__(self, "p", float(self.p))

    def __call__(self, key: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        _nhwc(x, "HorizontalFlip")
        flip = jax.vmap(lambda k: jax.random.bernoulli(k, self.p))(jax.random.split(key, x.shape[0]))
        return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x), y

    def hashed(self) -> dict[str, Any]:
        return {"kind": "horizontal_flip", "p": self.p}


@dataclasses.dataclass(frozen=True)
class Compose:
    """Apply ``steps`` in order, step ``i`` with its own key ``fold_in(key, i)``."""

    steps: tuple[Augmentation, ...]

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        if not steps:
            raise ValueError("Compose needs at least one step")
        for s in steps:
            _check_augmentation(s)
        object.__setattr__(self, "steps", steps)

    def __call__(self, key: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        for i, step in enumerate(self.steps):
            x, y = step(jax.random.fold_in(key, i), x, y)
        return x, y

    def hashed(self) -> dict[str, Any]:
        return {"kind": "compose", "steps": [s.hashed() for s in self.steps]}


@dataclasses.dataclass(frozen=True)
class Augment:
    """A user's batch function ``fn(key, x, y) -> (x, y)``; its ``name`` stands for it in the hash,
    so a changed function needs a new name."""

    name: str
    fn: Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Augment needs a non-empty name (it enters the run hash), not {self.name!r}")
        if not callable(self.fn):
            raise ValueError(f"Augment {self.name!r}: fn must be callable, not {type(self.fn).__name__}")

    def __call__(self, key: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.fn(key, x, y)

    def hashed(self) -> dict[str, Any]:
        return {"kind": "function", "name": self.name}


def _check_augmentation(a: Any) -> None:
    if not isinstance(a, Augmentation):
        raise ValueError(f"an augmentation must be callable and have hashed(), not {type(a).__name__}; "
                         "wrap a plain function as Augment(name, fn)")


# ---------------------------------------------------------------- the pipeline


def _stats(mean: Sequence[float] | None, std: Sequence[float] | None
           ) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """``mean`` and ``std`` as tuples of floats, checked: both or neither, same length, std > 0."""
    if mean is None and std is None:
        return None, None
    if mean is None or std is None:
        raise ValueError("normalisation needs both mean and std (or neither)")
    mean, std = tuple(float(m) for m in np.ravel(mean)), tuple(float(s) for s in np.ravel(std))
    if not mean or len(mean) != len(std):
        raise ValueError(f"mean and std need the same non-zero length, got {len(mean)} and {len(std)}")
    if not all(math.isfinite(m) for m in mean) or not all(math.isfinite(s) and s > 0 for s in std):
        raise ValueError(f"mean must be finite and std positive and finite: mean={mean}, std={std}")
    return mean, std


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """What the trainer applies to each batch: augment (training only), then normalise the last axis
    of x (training and evaluation). Pure and traceable; hashable, so it can key compiled programs."""

    augment: Augmentation | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.augment is not None:
            _check_augmentation(self.augment)
        mean, std = _stats(self.mean, self.std)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def train(self, key: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A training batch: augmented with ``key``, then normalised."""
        if self.augment is not None:
            ax, ay = self.augment(key, x, y)
            if (ax.shape, ax.dtype, ay.shape, ay.dtype) != (x.shape, x.dtype, y.shape, y.dtype):
                raise ValueError(f"augmentation {self.augment.hashed()} changed the batch: x {x.shape} {x.dtype} "
                                 f"-> {ax.shape} {ax.dtype}, y {y.shape} {y.dtype} -> {ay.shape} {ay.dtype}")
            x, y = ax, ay
        return self.test(x), y

    def test(self, x: jax.Array) -> jax.Array:
        """An evaluation batch: normalised only."""
        if self.mean is None:
            return x
        return (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)

    def hashed(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.augment is not None:
            out["augment"] = self.augment.hashed()
        if self.mean is not None:
            out["mean"], out["std"] = list(self.mean), list(self.std)
        return out


def channel_stats(x: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (last axis) mean and standard deviation of ``x``, accumulated in float64:
    the ``mean`` and ``std`` a :class:`Dataset` normalises with."""
    x = np.asarray(x)
    axes = tuple(range(x.ndim - 1))
    mean, std = x.mean(axis=axes, dtype=np.float64), x.std(axis=axes, dtype=np.float64)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


# ---------------------------------------------------------------- the data set


def digest(arrays: Any) -> str:
    """16 hex digits of SHA-256 over the dtype, shape and bytes of every array of a pytree, in
    leaf order: the content fingerprint of data handed to the runner as arrays."""
    h = hashlib.sha256()
    for a in (np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(arrays))):
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(np.ascontiguousarray(a))
    return h.hexdigest()[:16]


def _check(name: str, splits: Any, labels: str) -> Splits:
    """The loaded ``((train_x, train_y), (test_x, test_y))`` as read-only numpy views, checked."""
    try:
        (train_x, train_y), (test_x, test_y) = splits
    except (TypeError, ValueError):
        raise ValueError(f"data set {name!r}: expected ((train_x, train_y), (test_x, test_y)), "
                         f"got {type(splits).__name__}") from None
    out = []
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        x, y = np.asarray(x), np.asarray(y)
        where = f"data set {name!r}, {split}"
        if x.ndim < 1 or len(x) == 0:
            raise ValueError(f"{where}: no examples (x of shape {x.shape})")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{where}: y must be 1-D with one label per example: x {x.shape}, y {y.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{where}: x must be floating point, not {x.dtype}")
        kind = np.integer if labels == "int" else np.floating
        if not np.issubdtype(y.dtype, kind):
            raise ValueError(f"{where}: labels must be {labels} (Dataset(labels=...)), not {y.dtype}")
        out.append(tuple(_read_only(a) for a in (x, y)))
    (tx, _), (sx, _) = out
    if tx.shape[1:] != sx.shape[1:]:
        raise ValueError(f"data set {name!r}: test examples of shape {sx.shape[1:]}, train {tx.shape[1:]}")
    return tuple(out)  # type: ignore[return-value]


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False  # the fingerprint is cached: the data set's arrays must not change
    return view


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A named data set: arrays (``train`` and ``test``) or a ``loader`` returning them, plus the
    pipeline the trainer applies. Equality and hash are identity; :meth:`hashed` is what a run's
    hash sees. ``labels="float"`` admits float targets (XOR); by default labels are class indices.
    Arrays are treated as immutable (they are handed out read-only): the fingerprint is cached."""

    name: str
    train: Split | None = dataclasses.field(default=None, repr=False)
    test: Split | None = dataclasses.field(default=None, repr=False)
    loader: Callable[[], Splits] | None = dataclasses.field(default=None, repr=False)
    augment: Augmentation | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    canonical: bool = False
    labels: str = "int"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a data set needs a non-empty name, not {self.name!r}")
        given = (self.train is not None, self.test is not None)
        if self.loader is None and given != (True, True) or self.loader is not None and any(given):
            raise ValueError(f"data set {self.name!r}: give train and test arrays, or a loader, not both or neither")
        if self.loader is not None and not callable(self.loader):
            raise ValueError(f"data set {self.name!r}: loader must be callable, not {type(self.loader).__name__}")
        if self.labels not in LABELS:
            raise ValueError(f"data set {self.name!r}: labels must be one of {', '.join(LABELS)}, not {self.labels!r}")
        if self.augment is not None:
            _check_augmentation(self.augment)
        mean, std = _stats(self.mean, self.std)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "canonical", bool(self.canonical))

    @functools.cached_property
    def _splits(self) -> Splits:
        splits = self.loader() if self.loader is not None else (self.train, self.test)
        splits = _check(self.name, splits, self.labels)
        if self.mean is not None and len(self.mean) not in (1, splits[0][0].shape[-1]):
            raise ValueError(f"data set {self.name!r}: {len(self.mean)} normalisation channels for x of shape "
                             f"{splits[0][0].shape[1:]} (the last axis has {splits[0][0].shape[-1]})")
        return splits

    def arrays(self) -> Splits:
        """``((train_x, train_y), (test_x, test_y))`` as read-only numpy arrays (loaded once)."""
        return self._splits

    def device_arrays(self) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        """:meth:`arrays` on the default device, the form trainers take (a new copy per call)."""
        return jax.device_put(self._splits)

    @functools.cached_property
    def _fingerprint(self) -> str:
        return digest(self._splits)

    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the arrays (dtype, shape, bytes); computed once."""
        return self._fingerprint

    @property
    def examples_shape(self) -> tuple[int, ...]:
        """The shape of one example x."""
        return tuple(self._splits[0][0].shape[1:])

    @functools.cached_property
    def classes(self) -> int:
        """Largest label (train and test) plus one."""
        (_, train_y), (_, test_y) = self._splits
        return int(max(train_y.max(), test_y.max())) + 1

    def pipeline(self) -> Pipeline | None:
        """The per-batch transform, or None when there is neither augmentation nor normalisation."""
        if self.augment is None and self.mean is None:
            return None
        return Pipeline(self.augment, self.mean, self.std)

    def hashed(self) -> str | dict[str, Any]:
        """What enters a run's hash: the name alone for a canonical set without a pipeline (so runs
        stored before keep their hashes), else name, fingerprint (unless canonical) and pipeline."""
        pipeline = self.pipeline()
        if self.canonical and pipeline is None:
            return self.name
        out: dict[str, Any] = {"name": self.name}
        if not self.canonical:
            out["fingerprint"] = self.fingerprint()
        return {**out, **(pipeline.hashed() if pipeline is not None else {})}


def is_dataset(x: Any) -> bool:
    return isinstance(x, Dataset)


def from_arrays(name: str, train: Split, test: Split, **kw: Any) -> Dataset:
    """A data set of in-memory arrays (``kw``: augment, mean, std, canonical, labels)."""
    return Dataset(name, train=train, test=test, **kw)


def mnist(data_dir: str | None = None, **kw: Any) -> Dataset:
    """MNIST (784 pixels in [0, 1], int32 labels), loaded on first use by :func:`lth_jax.data.mnist`,
    which checks the files' published SHA-256: canonical, so it hashes as ``"mnist"``."""

    def load() -> Splits:
        m = data.mnist(data_dir)
        return m.train, m.test

    return Dataset("mnist", loader=load, canonical=True, **kw)


def fashion_mnist(data_dir: str | None = None, **kw: Any) -> Dataset:
    """Fashion-MNIST (784 pixels in [0, 1], int32 labels; MNIST's drop-in replacement), loaded on
    first use by :func:`lth_jax.data.fashion_mnist`, which checks the files' published SHA-256 and
    MD5: canonical, so it hashes as ``"fashion_mnist"``."""

    def load() -> Splits:
        m = data.fashion_mnist(data_dir)
        return m.train, m.test

    return Dataset("fashion_mnist", loader=load, canonical=True, **kw)


CIFAR10_AUGMENT = Compose((RandomCrop(4), HorizontalFlip()))
"""CIFAR's standard training augmentation: a random 32x32 window of the image zero-padded by
4 pixels, then a horizontal flip with probability 1/2 (He et al. 2016; Frankle et al. 2019)."""


def cifar10(data_dir: str | None = None, *, augment: Augmentation | None = CIFAR10_AUGMENT,
            normalise: bool = True, **kw: Any) -> Dataset:
    """CIFAR-10 (NHWC 32x32x3 pixels in [0, 1], int32 labels), loaded on first use by
    :func:`lth_jax.data.cifar10`; canonical, so it hashes by name and pipeline (``"cifar10"`` alone
    with ``augment=None, normalise=False``).

    By default training batches get :data:`CIFAR10_AUGMENT` and every batch is normalised per
    channel with :data:`lth_jax.data.CIFAR10_MEAN` and ``CIFAR10_STD``, the training set's
    statistics as constants (so hashing needs no loading). ``normalise=False`` leaves pixels in
    [0, 1], or admits your own ``mean`` and ``std``. Only the archive has a published checksum: a
    folder of loose batches is held to CIFAR-10's documented structure, which pins less.
    """
    if normalise:
        if "mean" in kw or "std" in kw:
            raise ValueError("cifar10: pass normalise=False to normalise with your own mean and std")
        kw = {**kw, "mean": data.CIFAR10_MEAN, "std": data.CIFAR10_STD}

    def load() -> Splits:
        c = data.cifar10(data_dir)
        return c.train, c.test

    return Dataset("cifar10", loader=load, augment=augment, canonical=True, **kw)


def xor_points() -> tuple[jax.Array, jax.Array]:
    """The four XOR points and their classes: (0,0),(1,1) -> 0, (0,1),(1,0) -> 1 (paper section 2)."""
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
    y = jnp.array([0, 1, 1, 0], jnp.float32)
    return x, y


def xor() -> Dataset:
    """The four XOR points (float 0/1 targets) as both train and test set; hashes as ``"xor"``."""
    x, y = (np.asarray(a) for a in xor_points())
    return Dataset("xor", train=(x, y), test=(x, y), canonical=True, labels="float")
