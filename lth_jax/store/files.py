"""Files that can be trusted: atomic writes, JSON and npz read back with one-line errors, and the
lock a run holds on its directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from lth_jax.store.ondisk import LOCK_FILE


class StoreError(Exception):
    """A stored file cannot be read or written; the message is one line naming the file."""


class CorruptRecord(StoreError):
    """A stored file is present but unusable: half stored, unparsable, altered, or unverifiable."""


class NotStored(StoreError, FileNotFoundError):
    """The record (or settings file) asked for is not there at all (also a ``FileNotFoundError``)."""


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
        raise fs_error("write", path, e) from e
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
            raise fs_error("write", path, e) from e
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN/inf become null)."""
    text = dumps(obj)
    atomic_write(path, lambda f: f.write(text.encode() + b"\n"))


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> None:
    """Atomically write a compressed ``.npz`` of plain numpy arrays (never object arrays)."""
    arrays = plain_arrays(arrays)
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
    mkdir(path)
    file = path / LOCK_FILE
    try:
        fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise fs_error("lock", file, e) from e
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
            raise fs_error("write", file, e) from e
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
            raise fs_error("remove", tmp, e) from e
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


def fs_error(action: str, path: str | os.PathLike, e: OSError) -> StoreError:
    return StoreError(f"cannot {action} {path}: {e.strerror or _first_line(e)}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotStored(f"{path}: not found") from None
    except OSError as e:
        raise fs_error("read", path, e) from e


def mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise fs_error("create", path, e) from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def plain_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in out.items():
        if v.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; only plain numeric/bool arrays are stored")
    return out


def dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), indent=1, sort_keys=True, default=jsonable, allow_nan=False)


def same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, default=jsonable) == json.dumps(b, default=jsonable)


def jsonable(x: Any) -> Any:
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
