"""Resumable result storage: one directory per setting, one record per level.

Layout (``root`` is the results folder, e.g. ``runs/``)::

    root/<prefix>-<hash>/settings.json      the settings the hash was taken of (+ extras)
    root/<prefix>-<hash>/<level>.npz        arrays: masks, trained weights, curves (no pickle)
    root/<prefix>-<hash>/<level>.json       metrics; its presence marks the level as done

``<hash>`` is the SHA-256 (first 12 hex digits) of the canonical JSON of the
settings that determine the results, so the same settings always land in the
same directory and a re-run finds what is already done. Every file is written
atomically (temporary file in the same directory, fsync, ``os.replace``): a
run killed at any moment leaves each file either complete or absent, never
partial. The ``.npz`` is written before the ``.json``, so a level whose JSON
exists is complete; one killed in between is simply recomputed.

Arrays of a nested dict (a params or masks pytree) are stored under
slash-joined keys (``masks/Dense_0/kernel``); :func:`subtree` rebuilds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

SEP = "/"


def settings_hash(settings: Mapping[str, Any], digits: int = 12) -> str:
    """Stable hash of a JSON-able mapping (key order and tuple/list spelling do not matter)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def run_dir(root: str | os.PathLike, settings: Mapping[str, Any], prefix: str = "run") -> Path:
    """The directory for ``settings`` under ``root`` (not created)."""
    return Path(root) / f"{prefix}-{settings_hash(settings)}"


def open_run(root: str | os.PathLike, settings: Mapping[str, Any], prefix: str = "run",
             extra: Mapping[str, Any] | None = None) -> Path:
    """Create (or reopen) the directory for ``settings`` and record them in ``settings.json``.

    ``extra`` is stored beside the hashed settings but not hashed (for example
    analysis parameters or the levels asked for so far).
    """
    path = run_dir(root, settings, prefix)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "settings.json", {"hash": settings_hash(settings), "settings": dict(settings),
                                        "extra": dict(extra or {})})
    return path


# ---------------------------------------------------------------- atomic writes


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it onto ``path``.

    If ``write`` raises (or the process dies), ``path`` keeps its old content or
    stays absent, and the temporary file is removed (or, after a kill, left with a
    ``.tmp`` suffix that no reader looks at).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN/inf become null)."""
    text = json.dumps(_clean(obj), indent=1, sort_keys=True, default=_jsonable, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode() + b"\n"))


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> None:
    """Atomically write a compressed ``.npz`` of plain numpy arrays (never object arrays)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; only plain numeric/bool arrays are stored")
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (``allow_pickle=False``: a pickled file is refused)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------- pytrees <-> flat keys


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


# ---------------------------------------------------------------- levels


class Record(NamedTuple):
    """One stored level: its metrics (the JSON) and its arrays (the npz, flat keys)."""

    name: str
    metrics: dict[str, Any]
    arrays: dict[str, np.ndarray]


def save_level(path: str | os.PathLike, name: str, arrays: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
    """Store one level: arrays first, then the metrics that mark it done."""
    path = Path(path)
    write_npz(path / f"{name}.npz", arrays)
    write_json(path / f"{name}.json", {**metrics, "level": name})


def done(path: str | os.PathLike, name: str) -> bool:
    """True once level ``name`` is completely stored."""
    path = Path(path)
    return (path / f"{name}.json").exists() and (path / f"{name}.npz").exists()


def load_level(path: str | os.PathLike, name: str, arrays: bool = True) -> Record:
    """Read level ``name`` of the run in ``path``; ``arrays=False`` skips the npz."""
    path = Path(path)
    if not done(path, name):
        raise FileNotFoundError(f"level {name!r} is not stored in {path}")
    return Record(name, read_json(path / f"{name}.json"), read_npz(path / f"{name}.npz") if arrays else {})


def levels(path: str | os.PathLike) -> list[str]:
    """Names of the completely stored levels, in the order they were computed."""
    path = Path(path)
    names = [p.stem for p in path.glob("*.json") if p.name != "settings.json" and not p.name.startswith(".")]
    names = [n for n in names if done(path, n)]
    return sorted(names, key=lambda n: (read_json(path / f"{n}.json").get("order", 0), n))


def load_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The ``settings.json`` of a run: ``{"hash", "settings", "extra"}``."""
    return read_json(Path(path) / "settings.json")


def find_runs(root: str | os.PathLike, **match: Any) -> list[Path]:
    """Run directories under ``root`` whose stored settings contain ``match`` (e.g. ``mode="oneshot"``)."""
    out = []
    for p in sorted(Path(root).glob("*/settings.json")):
        s = read_json(p)["settings"]
        if all(_same(s.get(k), v) for k, v in match.items()):
            out.append(p.parent)
    return out


# ---------------------------------------------------------------- JSON helpers


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, default=_jsonable) == json.dumps(b, default=_jsonable)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple | set | frozenset):
        return list(x)
    raise TypeError(f"cannot store {type(x).__name__} as JSON")


def _clean(obj: Any) -> Any:
    """Replace NaN/inf (which JSON lacks) by None, recursively; numpy scalars to Python."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
