"""Level records: one verified ``<name>.npz`` + ``<name>.json`` pair per level, checksummed, with the
flat array keys a pytree is stored under.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lth_jax.store.files import (
    CorruptRecord,
    NotStored,
    dumps,
    fs_error,
    plain_arrays,
    read_json,
    read_npz,
    write_json,
    write_npz,
)
from lth_jax.store.ondisk import SEP, SETTINGS

CHECKSUM = "checksum"
"""Key of a level JSON holding ``{"arrays": sha256 hex, "metrics": sha256 hex}``."""


def flatten(tree: Mapping[str, Any], prefix: str) -> dict[str, np.ndarray]:
    """``{"Dense_0": {"kernel": a}}`` -> ``{"prefix/Dense_0/kernel": np.asarray(a)}``."""
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}{SEP}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = np.asarray(value)
    return out


def subtree(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, Any]:
    """Inverse of :func:`flatten`: the nested dict stored under ``prefix``."""
    out: dict[str, Any] = {}
    head = prefix + SEP
    for key, value in arrays.items():
        if not key.startswith(head):
            continue
        node = out
        *parents, leaf = key[len(head):].split(SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    if not out:
        raise KeyError(f"no arrays stored under {prefix!r}")
    return out


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of each array's name, dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def metrics_digest(metrics: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of ``metrics`` without its checksum."""
    body = {k: v for k, v in metrics.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Record(NamedTuple):
    """One stored level: its metrics (the JSON, without the checksum) and its arrays (the npz, flat keys)."""

    name: str
    metrics: dict[str, Any]
    arrays: dict[str, np.ndarray]


def save_level(path: str | os.PathLike, name: str, arrays: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
    """Store one level: the arrays first, then the metrics with the checksum of both, which mark it done.

    A ``"checksum"`` key in ``metrics`` (say, of a record loaded, changed and saved again) is replaced.
    """
    path = Path(path)
    arrays = plain_arrays(arrays)
    write_npz(path / f"{name}.npz", arrays)
    body = json.loads(dumps({**metrics, "level": name}))  # exactly what a reader will parse
    body.pop(CHECKSUM, None)
    body[CHECKSUM] = {"arrays": arrays_digest(arrays), "metrics": metrics_digest(body)}
    write_json(path / f"{name}.json", body)


def done(path: str | os.PathLike, name: str) -> bool:
    """True only when level ``name`` is completely stored and matches its checksum.

    Reads the level's npz (once per process: a verified, unchanged file is
    remembered). An unreadable folder raises :class:`StoreError`.
    """
    try:
        _verified(Path(path), name, load_arrays=False)
    except (NotStored, CorruptRecord):
        return False
    return True


def problem(path: str | os.PathLike, name: str) -> str | None:
    """Why the *present* record ``name`` is unusable, in one line naming the file; None if it is
    fine or entirely absent."""
    try:
        _verified(Path(path), name, load_arrays=False)
    except NotStored:
        return None
    except CorruptRecord as e:
        return str(e)
    return None


def problems(path: str | os.PathLike) -> dict[str, str]:
    """Every present but unusable record of the run in ``path``: ``{name: problem line}``."""
    path = Path(path)
    out = {}
    for name in _record_names(path):
        line = problem(path, name)
        if line is not None:
            out[name] = line
    return out


def refuse_damaged(path: str | os.PathLike) -> None:
    """Raise :class:`CorruptRecord` (one line naming the file) if any record of the run in
    ``path`` is present but unusable; :func:`levels` alone would leave it out silently."""
    bad = problems(path)
    if bad:
        first = sorted(bad)[0]
        more = f" (and {len(bad) - 1} more damaged records in {Path(path).name})" if len(bad) > 1 else ""
        raise CorruptRecord(bad[first] + more)


def load_level(path: str | os.PathLike, name: str, arrays: bool = True) -> Record:
    """Read and verify level ``name`` of the run in ``path``; ``arrays=False`` returns no arrays
    (the npz is still verified, once per process).

    Raises :class:`NotStored` if neither file is there, :class:`CorruptRecord` if the record
    is unusable (see :func:`problem`).
    """
    metrics, stored = _verified(Path(path), name, load_arrays=arrays)
    return Record(name, metrics, stored if arrays else {})


def levels(path: str | os.PathLike) -> list[str]:
    """Names of the completely stored, verified levels, in the order they were computed
    (damaged ones are left out: :func:`problems` names them)."""
    path = Path(path)
    order = {}
    for name in _record_names(path):
        try:
            metrics, _ = _verified(path, name, load_arrays=False)
        except (NotStored, CorruptRecord):
            continue
        o = metrics.get("order", 0)
        order[name] = o if isinstance(o, int | float) and not isinstance(o, bool) else 0
    return sorted(order, key=lambda n: (order[n], n))


_VERIFIED: set[tuple] = set()
"""npz files verified by this process: (path, inode, size, mtime, ctime, digest)."""


_RACY_NS = 2 * 10**9
"""A file modified this recently may change again within the clock's granularity unnoticed; not remembered."""


def _verified(path: Path, name: str, load_arrays: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    jfile, nfile = path / f"{name}.json", path / f"{name}.npz"
    has_json, has_npz = jfile.exists(), nfile.exists()
    if not has_json and not has_npz:
        raise NotStored(f"{path}: record {name!r} is not stored")
    if not has_json:
        raise CorruptRecord(f"{jfile}: missing beside {nfile.name} (half stored: interrupted while writing)")
    if not has_npz:
        raise CorruptRecord(f"{nfile}: missing beside {jfile.name} (half stored)")
    metrics = read_json(jfile)
    if not isinstance(metrics, dict):
        raise CorruptRecord(f"{jfile}: not a record (JSON {type(metrics).__name__} where an object belongs)")
    checksum = metrics.pop(CHECKSUM, None)
    if checksum is None:
        raise CorruptRecord(f"{jfile}: no checksum (written by an older version of lth_jax; cannot be verified)")
    if not (isinstance(checksum, dict) and all(isinstance(checksum.get(k), str) for k in ("arrays", "metrics"))):
        raise CorruptRecord(f"{jfile}: malformed checksum")
    if metrics_digest(metrics) != checksum["metrics"]:
        raise CorruptRecord(f"{jfile}: contents do not match the checksum (altered or damaged)")
    if metrics.get("level") != name:
        raise CorruptRecord(f"{jfile}: holds level {metrics.get('level')!r}, not {name!r}")
    before = _stat_key(nfile, checksum["arrays"])
    if not load_arrays and before in _VERIFIED:
        return metrics, {}
    arrays = read_npz(nfile)
    if arrays_digest(arrays) != checksum["arrays"]:
        raise CorruptRecord(f"{nfile}: arrays do not match the checksum in {jfile.name} (altered, damaged "
                            "or from another record)")
    if _stat_key(nfile, checksum["arrays"]) == before and time.time_ns() - before[3] > _RACY_NS:
        if len(_VERIFIED) > 100_000:
            _VERIFIED.clear()
        _VERIFIED.add(before)
    return metrics, arrays


def _stat_key(file: Path, digest: str) -> tuple:
    try:
        st = file.stat()
    except OSError as e:
        raise fs_error("read", file, e) from e
    return (os.path.abspath(file), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)


def _record_names(path: Path) -> list[str]:
    """Stems of the record files present (either half), settings and hidden files aside."""
    try:
        files = [p for p in path.iterdir() if p.suffix in (".json", ".npz")]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise fs_error("read", path, e) from e
    return sorted({p.stem for p in files if p.name != SETTINGS and not p.name.startswith(".")})
