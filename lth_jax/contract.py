"""The training contract: how any Flax module is initialised, trained and evaluated.

A :class:`Contract` is read once from the module itself (traced under ``jax.eval_shape``,
nothing compiled) and says what the trainer must do with it:

- ``collections``: every variable collection besides ``params`` that the module creates
  (``batch_stats`` for ``nn.BatchNorm``, or any other name). It is the model's *state*:
  initialised with the params, carried through training (``mutable``), used in evaluation,
  stored beside the trained params, never masked or pruned.
- ``rngs``: every PRNG stream the module asks for in training (``dropout``, or any name). The
  stream ``name`` of the step drawing its batch with key ``k`` is ``fold_in(k, crc32(name))``
  (:func:`stream_key`), so a trial's randomness depends on its own batch key and step alone:
  vmapped among others, alone, or resumed, it draws the same numbers.
- ``takes_train``: the module's ``__call__`` takes ``train`` (the Flax examples' convention):
  ``train=True`` in training, ``train=False`` at initialisation and in evaluation.

A module that is not fit for training (it fails when applied, returns something other than
``(batch, classes)`` logits, or needs randomness in evaluation) is refused by
:func:`describe` with one :class:`ModelError` line naming the module and the problem, before
anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import zlib
from collections.abc import Callable
from typing import Any

import flax.errors
import jax
import jax.numpy as jnp
import optax

from lth_jax import conv

PyTree = Any
MAX_STREAMS = 16
_STREAM = re.compile(r'needs PRNG for "([^"]+)"')


class ModelError(ValueError):
    """A module the runner cannot train, named with its problem in one line."""


def stream_key(key: jax.Array, name: str) -> jax.Array:
    """The key of stream ``name`` (``dropout``, ``augment``, ...) derived from a step's key."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()))


def _takes_train(module: Any) -> bool:
    try:
        return "train" in inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return False


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return re.sub(r"\s*\(https?://\S+\)", "", line)


@dataclasses.dataclass(frozen=True)
class Contract:
    """How the trainer calls ``module`` on inputs of ``input_shape`` (one example's)."""

    module: Any
    input_shape: tuple[int, ...]
    collections: tuple[str, ...] = ()
    rngs: tuple[str, ...] = ()
    init_rngs: tuple[str, ...] = ()
    takes_train: bool = False
    classes: int = 0  # the width of the logits
    convolutional: bool = False  # it convolves or max-pools (what lth_jax.conv lays out for speed)

    @property
    def stateful(self) -> bool:
        """Whether training needs more than ``params`` and a batch (state or randomness)."""
        return bool(self.collections or self.rngs)

    def _kw(self, train: bool) -> dict[str, Any]:
        return {"train": train} if self.takes_train else {}

    def variables(self, key: jax.Array) -> dict[str, PyTree]:
        """Every collection of one network from ``key`` (``params`` drawn exactly as
        ``module.init(key, x)`` draws them)."""
        x = jnp.zeros((1, *self.input_shape), jnp.float32)
        rngs = {"params": key, **{n: stream_key(key, n) for n in self.init_rngs}} if self.init_rngs else key
        return dict(self.module.init(rngs, x, **self._kw(False)))

    def params(self, key: jax.Array) -> PyTree:
        return self.variables(key)["params"]

    def state(self, key: jax.Array) -> dict[str, PyTree]:
        """The model state of one network from ``key`` ({} for a stateless module)."""
        variables = self.variables(key)
        return {c: variables[c] for c in self.collections}

    def apply(self, params: PyTree, state: PyTree, x: jax.Array, *, train: bool,
              key: jax.Array | None = None) -> tuple[jax.Array, PyTree]:
        """``(logits, state)``: in training (``train=True``) the state collections are updated
        and the rng streams drawn from ``key``; in evaluation the state is read as it is."""
        variables = {"params": params, **(state or {})}
        kw = self._kw(train)
        if not train:
            return self.module.apply(variables, x, **kw), state
        rngs = {n: stream_key(key, n) for n in self.rngs} if self.rngs else None
        if not self.collections:
            return self.module.apply(variables, x, rngs=rngs, **kw), state
        logits, new = self.module.apply(variables, x, rngs=rngs, mutable=list(self.collections), **kw)
        return logits, {c: new[c] for c in self.collections}

    def losses(self, pipeline: Any = None, layout: str | None = None) -> tuple[Callable, Callable]:
        """``(loss, accuracy)`` as :func:`lth_jax.trainers.step.minibatch_segment` takes them with
        ``stateful=True``: mean softmax cross-entropy of a (augmented, normalised) batch, and
        the fraction of the test set classified correctly. ``layout`` (one of
        :data:`lth_jax.conv.BATCHED`) computes the model's convolutions and max poolings with
        :func:`lth_jax.conv.rewrite` (None: as written)."""
        return _losses(self, pipeline, layout)


@functools.lru_cache(maxsize=64)
def _losses(contract: Contract, pipeline: Any, layout: str | None) -> tuple[Callable, Callable]:
    def fast(fn: Callable) -> Callable:
        return fn if layout is None else conv.rewrite(fn, layout)

    def loss(params, state, batch, key):
        x, y = batch
        if pipeline is not None:
            x, y = pipeline.train(stream_key(key, "augment"), x, y)
        logits, state = fast(lambda p, s, x, k: contract.apply(p, s, x, train=True, key=k))(params, state, x, key)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y)), state

    def accuracy(params, state, data):
        x, y = data
        if pipeline is not None:
            x = pipeline.test(x)
        logits = fast(lambda p, s, x: contract.apply(p, s, x, train=False)[0])(params, state, x)
        return jnp.mean(jnp.argmax(logits, axis=-1) == y)

    return loss, accuracy


def _needed_streams(call: Callable[..., Any], *args: Any) -> tuple[str, ...]:
    """The rng streams ``call(rngs, *args)`` asks for (``args`` abstract shapes), found by tracing
    it until it asks for no more."""
    names: list[str] = []
    for _ in range(MAX_STREAMS):
        try:
            jax.eval_shape(lambda *a: call({n: jax.random.key(0) for n in names}, *a), *args)
            return tuple(names)
        except flax.errors.InvalidRngError as e:
            match = _STREAM.search(str(e))
            if match is None or match.group(1) in names:
                raise
            names.append(match.group(1))
    raise ModelError(f"asks for more than {MAX_STREAMS} rng streams")


@functools.lru_cache(maxsize=64)
def describe(module: Any, input_shape: tuple[int, ...]) -> Contract:
    """Read ``module``'s contract by tracing its init and its training and evaluation calls once;
    :class:`ModelError` (one line, naming the module) when it cannot be trained."""
    name = type(module).__name__
    try:
        return _describe(module, tuple(input_shape))
    except ModelError as e:
        raise ModelError(f"model {name}: {e}") from None
    except Exception as e:  # a user's module can fail in any way: name it in one line
        raise ModelError(f"model {name} fails on inputs of shape (batch, {', '.join(map(str, input_shape))}): "
                         f"{type(e).__name__}: {_first_line(e)}") from None


def _describe(module: Any, input_shape: tuple[int, ...]) -> Contract:
    takes_train = _takes_train(module)
    kw = {"train": False} if takes_train else {}
    x = jnp.zeros((2, *input_shape), jnp.float32)

    init_rngs = _needed_streams(lambda r: module.init({"params": jax.random.key(0), **r}, x, **kw))
    contract = Contract(module, input_shape, init_rngs=init_rngs, takes_train=takes_train)
    shapes = jax.eval_shape(contract.variables, jax.random.key(0))
    if "params" not in shapes:
        raise ModelError("has no parameters")
    collections = tuple(sorted(c for c in shapes if c != "params"))
    variables = dict(shapes)

    def train_call(rngs, variables):
        return module.apply(variables, x, rngs=rngs, mutable=list(collections) or False,
                            **({"train": True} if takes_train else {}))

    rngs = _needed_streams(train_call, variables)
    try:
        jax.eval_shape(lambda v: module.apply(v, x, **kw), variables)
    except flax.errors.InvalidRngError as e:
        raise ModelError(f"needs rng stream {_STREAM.search(str(e)).group(1)!r} in evaluation: give its "
                         "__call__ a train argument (train=False then makes evaluation deterministic)") from None
    contract = dataclasses.replace(contract, collections=collections, rngs=rngs)
    classes = None
    for train in (True, False):
        out = jax.eval_shape(lambda p, s, train=train: contract.apply(p, s, x, train=train, key=jax.random.key(0)),
                             shapes["params"], {c: shapes[c] for c in collections})[0]
        if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != 2:
            got = getattr(out, "shape", type(out).__name__)
            raise ModelError(f"returns {got} for a batch of 2 {'in training' if train else 'in evaluation'}; "
                             "the runner needs logits of shape (batch, classes)")
        classes = int(out.shape[1])
    convolutional = conv.uses_convolutions(lambda p, s: contract.apply(p, s, x, train=False)[0], shapes["params"],
                                           {c: shapes[c] for c in collections})
    return dataclasses.replace(contract, classes=classes, convolutional=convolutional)
