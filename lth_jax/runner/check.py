"""Everything refused before a file is written: the model, its output, the data, the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from lth_jax import datasets, store
from lth_jax.runner.spec import Lottery, run_dir
from lth_jax.store import ondisk


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


def data_for(lotteries: Sequence[Lottery], data: Any) -> Any:
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


def data_fingerprint(data: Any) -> str:
    """:func:`lth_jax.datasets.digest` of arrays handed to the runner, once per set of array objects."""
    key = tuple(id(leaf) for leaf in jax.tree.leaves(data))
    if key not in _FINGERPRINTS:
        if len(_FINGERPRINTS) >= 4:
            _FINGERPRINTS.pop(next(iter(_FINGERPRINTS)))
        _FINGERPRINTS[key] = (data, datasets.digest(data))  # the arrays are kept, so their ids stay theirs
    return _FINGERPRINTS[key][1]


def check_named_data(lottery: Lottery, root: str | Path, fingerprint: str) -> None:
    """Arrays under a plain name: the run remembers their fingerprint and refuses other content."""
    settings = Path(run_dir(lottery, root)) / ondisk.SETTINGS
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
