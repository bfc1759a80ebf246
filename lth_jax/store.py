"""Resumable result storage: one directory per setting, one verified record per level.

Layout (``root`` is the results folder, e.g. ``runs/``)::

    root/<prefix>-<hash>/settings.json      the settings the hash was taken of (+ extras)
    root/<prefix>-<hash>/<level>.npz        arrays: masks, trained weights, curves (no pickle)
    root/<prefix>-<hash>/<level>.json       metrics + "checksum"; its presence marks the level as written
    root/<prefix>-<hash>/.lock              advisory lock of a run in progress (holds its pid)

``<hash>`` is the SHA-256 (first 12 hex digits) of the canonical JSON of the
settings that determine the results, so the same settings always land in the
same directory and a re-run finds what is already done.

Why a record can be trusted:

- Every file is written atomically (temporary ``.<name>.<pid>.<random>.tmp`` in the
  same directory, fsync, ``os.replace``): a kill leaves each file complete or absent.
- The ``.npz`` is written before the ``.json``, and the JSON carries
  ``"checksum": {"arrays": ..., "metrics": ...}``: the SHA-256 of the npz arrays (each
  array's name, dtype, shape and bytes, in sorted name order) and of the canonical JSON of
  the metrics (sorted keys, no spaces, without the checksum itself). So the JSON vouches for
  the pair, and :func:`done` / :func:`load_level` accept a record only when both files are
  there, parse, and match it. Anything else (half stored, truncated, garbage, empty,
  altered, pickled data, or no checksum because an older version wrote it) is
  :class:`CorruptRecord` with a one-line message naming the file; :func:`problem` returns
  that line, so a runner can say why it recomputes a level, and :func:`problems` lists them all.
  A record that is not there at all is :class:`NotStored` (also a ``FileNotFoundError``).
- A run holds :func:`locked` on its directory, so two runs of the same settings never train
  the same level twice; taking the lock removes the temporary files a killed run left.
- File-system failures (read-only, disk full, permission, a file where a folder belongs)
  are :class:`StoreError` ``"cannot write <path>: <reason>"`` / ``"cannot read <path>: <reason>"``.

Arrays of a nested dict (a params or masks pytree) are stored under
slash-joined keys (``masks/Dense_0/kernel``); :func:`subtree` rebuilds them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

SEP = "/"
CHECKSUM = "checksum"
"""Key of a level JSON holding ``{"arrays": sha256 hex, "metrics": sha256 hex}``."""
LOCK_FILE = ".lock"


class StoreError(Exception):
    """A stored file cannot be read or written; the message is one line naming the file."""


class CorruptRecord(StoreError):
    """A stored file is present but unusable: half stored, unparsable, altered, or unverifiable."""


class NotStored(StoreError, FileNotFoundError):
    """The record (or settings file) asked for is not there at all (also a ``FileNotFoundError``)."""


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
    analysis parameters or the levels asked for so far). A runner that locks the
    directory calls this inside :func:`locked` (which creates the directory), so a
    waiting second run does not rewrite the extras of the running one.
    """
    path = run_dir(root, settings, prefix)
    _mkdir(path)
    write_json(path / "settings.json", {"hash": settings_hash(settings), "settings": dict(settings),
                                        "extra": dict(extra or {})})
    return path


# ---------------------------------------------------------------- atomic writes


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it onto ``path``.

    If ``write`` raises, ``path`` keeps its old content (or stays absent) and the
    temporary file is removed; an ``OSError`` (disk full, read-only, missing folder)
    becomes ``StoreError("cannot write <path>: <reason>")``, anything else is re-raised.
    After a kill the temporary file ``.<name>.<pid>.<random>.tmp`` stays behind, unread,
    until :func:`locked` removes it.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as e:
        raise _fs_error("write", path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _fs_error("write", path, e) from e
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN/inf become null)."""
    text = _dumps(obj)
    atomic_write(path, lambda f: f.write(text.encode() + b"\n"))


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> None:
    """Atomically write a compressed ``.npz`` of plain numpy arrays (never object arrays)."""
    arrays = _plain(arrays)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; :class:`CorruptRecord` if it is empty, not text or not valid JSON."""
    path = Path(path)
    raw = _read_bytes(path)
    if not raw.strip():
        raise CorruptRecord(f"{path}: empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptRecord(f"{path}: not JSON text (garbage bytes)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"{e.msg}: line {e.lineno} column {e.colno}"
        if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string"):  # the text ends too early
            raise CorruptRecord(f"{path}: cut short (truncated JSON: {where})") from None
        raise CorruptRecord(f"{path}: not valid JSON ({where})") from None


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz``; :class:`CorruptRecord` if it is not a complete archive of plain arrays
    (``allow_pickle=False``: pickled data is refused, never run)."""
    path = Path(path)
    raw = _read_bytes(path)
    if not raw:
        raise CorruptRecord(f"{path}: empty file")
    if raw[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise CorruptRecord(f"{path}: not an npz archive (garbage bytes)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except zipfile.BadZipFile as e:
        raise CorruptRecord(f"{path}: truncated or damaged zip archive ({e})") from None
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickled" in str(e):
            raise CorruptRecord(f"{path}: holds pickled (object) data, which the store never writes") from None
        raise CorruptRecord(f"{path}: damaged array ({_first_line(e)})") from None
    except MemoryError:
        raise
    except Exception as e:  # zlib.error, EOFError, struct.error...: the bytes inside the archive are damaged
        raise CorruptRecord(f"{path}: damaged zip archive ({type(e).__name__}: {_first_line(e)})") from None


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


# ---------------------------------------------------------------- checksums


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


# ---------------------------------------------------------------- levels


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
    arrays = _plain(arrays)
    write_npz(path / f"{name}.npz", arrays)
    body = json.loads(_dumps({**metrics, "level": name}))  # exactly what a reader will parse
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


def load_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The ``settings.json`` of a run: ``{"hash", "settings", "extra"}``.

    Raises :class:`NotStored` if there is none and :class:`CorruptRecord` if it is damaged
    (running those settings again rewrites it).
    """
    file = Path(path) / "settings.json"
    if not file.exists():
        raise NotStored(f"{file}: not found ({Path(path)} is not a stored run)")
    s = read_json(file)
    if not isinstance(s, dict) or not isinstance(s.get("settings"), dict):
        raise CorruptRecord(f"{file}: not a run's settings (no \"settings\" object)")
    s.setdefault("extra", {})
    return s


EXPORT = "export"
"""Key of ``settings.json``'s extras in an exported copy of a run (:func:`export_run`)."""


def export_run(src: str | os.PathLike, dest_root: str | os.PathLike, keep: tuple[str, ...] = ("curves/",),
               skip: tuple[str, ...] = ("init",)) -> Path:
    """A light copy of the run in ``src`` under ``dest_root`` (same directory name): its
    ``settings.json`` with ``extra["export"]`` saying what was left out and where it came from
    (``source``: where a command retraining it writes), and every level's
    record, verified on reading and stored anew (checksummed) with the arrays whose names start
    with one of ``keep`` (the curves: what the report and plots read) and the metrics
    unchanged; records named in ``skip`` (the initial weights) are left out. A copy is read as
    any run is, but holds no weights, so a runner refuses to continue training in it. A
    damaged source record raises :class:`CorruptRecord` naming it, before anything is written."""
    src = Path(src)
    settings = load_settings(src)
    refuse_damaged(src)
    dest = Path(dest_root) / src.name
    _mkdir(dest)
    names = [n for n in levels(src) if n not in skip]
    for name in names:
        rec = load_level(src, name)
        save_level(dest, name, {k: v for k, v in rec.arrays.items() if k.startswith(keep)},
                   {**rec.metrics, "exported_from": {"run": src.name,
                                                     "checksum": read_json(src / f"{name}.json")[CHECKSUM]}})
    extra = {**settings["extra"], EXPORT: {"kept_arrays": list(keep), "left_out_records": list(skip),
                                           "levels": names, "source": str(src)}}
    write_json(dest / "settings.json", {**settings, "extra": extra})
    return dest


EXPORT_MARK = "export.json"
"""At the top of a folder of exported copies (``experiments.export``): ``{"source": the folder copied}``."""


def exported_from(path: str | os.PathLike) -> Path | None:
    """Where ``path`` (a file or folder in a folder of exported copies, :data:`EXPORT_MARK`) was
    copied from, at the same relative place; None if it is not in one."""
    path = Path(path)
    for top in (path, *path.parents):
        if (top / EXPORT_MARK).is_file():
            mark = read_json(top / EXPORT_MARK)
            if not isinstance(mark, dict) or not isinstance(mark.get("source"), str):
                raise CorruptRecord(f"{top / EXPORT_MARK}: not an export mark (no \"source\" folder)")
            return Path(mark["source"]) / path.relative_to(top)
    return None


def is_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds an exported copy of a run (:func:`export_run`)."""
    try:
        return EXPORT in load_settings(path)["extra"]
    except NotStored:
        return False


def find_runs(root: str | os.PathLike, **match: Any) -> list[Path]:
    """Run directories under ``root`` whose stored settings contain ``match`` (e.g. ``mode="oneshot"``).

    A damaged ``settings.json`` raises :class:`CorruptRecord` naming it rather than being
    skipped: a run that silently drops out of a report is worse than a one-line error.
    """
    out = []
    for p in sorted(Path(root).glob("*/settings.json")):
        s = load_settings(p.parent)["settings"]
        if all(_same(s.get(k), v) for k, v in match.items()):
            out.append(p.parent)
    return out


# ---------------------------------------------------------------- verification


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
        raise _fs_error("read", file, e) from e
    return (os.path.abspath(file), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)


def _record_names(path: Path) -> list[str]:
    """Stems of the record files present (either half), settings and hidden files aside."""
    try:
        files = [p for p in path.iterdir() if p.suffix in (".json", ".npz")]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise _fs_error("read", path, e) from e
    return sorted({p.stem for p in files if p.name != "settings.json" and not p.name.startswith(".")})


# ---------------------------------------------------------------- locking


_HELD: dict[str, int] = {}
"""Run directories this process holds the lock of -> nesting depth (flock is per open file, so a
second flock of the same file from the same process would wait for itself forever)."""
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def locked(path: str | os.PathLike, wait: bool = True,
           on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the advisory lock of run directory ``path`` (created if missing) for the ``with`` block.

    Another holder makes ``wait=False`` raise ``StoreError("<path> is in use by another run
    (pid N)")``; ``wait=True`` calls ``on_wait("waiting for the other run of <path> (pid N)
    to finish")`` once, then blocks until it is released. Once held, the holder's pid is in
    ``<path>/.lock`` and temporary files left by killed writers (``.<name>.<pid>.*.tmp``
    whose process is gone, or older ones without a pid) are removed.

    The lock is ``fcntl.flock`` on ``.lock`` (local file systems; released by the kernel when
    the holder dies, so there are no stale locks). It is per process and re-entrant: a nested
    ``locked`` of the same directory in the same process (any thread) returns at once.
    Runs of other settings use other directories and do not wait for each other.
    """
    path = Path(path)
    key = os.path.realpath(path)
    with _HELD_GUARD:
        nested = key in _HELD
        if nested:
            _HELD[key] += 1
    if nested:
        try:
            yield path
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
        return
    _mkdir(path)
    file = path / LOCK_FILE
    try:
        fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise _fs_error("lock", file, e) from e
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise StoreError(f"{path} is in use by another run ({holder})") from None
            if on_wait is not None:
                on_wait(f"waiting for the other run of {path} ({holder}) to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        held = True
        with _HELD_GUARD:
            _HELD[key] = 1
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise _fs_error("write", file, e) from e
        remove_stale_temps(path)
        yield path
    finally:
        if held:
            with _HELD_GUARD:
                _HELD.pop(key, None)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of writers that are gone; returns them. Call only while holding
    :func:`locked` (which does): a live writer's file carries its pid and is kept regardless."""
    path = Path(path)
    removed = []
    for tmp in path.glob(".*.tmp"):
        pid = _writer_pid(tmp.name)
        if pid is not None and _alive(pid):
            continue
        try:
            tmp.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise _fs_error("remove", tmp, e) from e
        removed.append(tmp)
    return removed


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def _writer_pid(tmp_name: str) -> int | None:
    """The pid in ``.<name>.<pid>.<random>.tmp`` (None for a name without one)."""
    parts = tmp_name[1:-len(".tmp")].rsplit(".", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- file-system and JSON helpers


def _fs_error(action: str, path: str | os.PathLike, e: OSError) -> StoreError:
    return StoreError(f"cannot {action} {path}: {e.strerror or _first_line(e)}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotStored(f"{path}: not found") from None
    except OSError as e:
        raise _fs_error("read", path, e) from e


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _fs_error("create", path, e) from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _plain(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in out.items():
        if v.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; only plain numeric/bool arrays are stored")
    return out


def _dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), indent=1, sort_keys=True, default=_jsonable, allow_nan=False)


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
