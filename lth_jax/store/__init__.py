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

The package is the one layer that owns the on-disk format: :mod:`~lth_jax.store.ondisk` names every
record and array key (``trained/...``, ``chain/...``, ``snapshots/<k>/opt/<i>``, ``curves/...``),
:mod:`~lth_jax.store.files` the trusted files and locks, :mod:`~lth_jax.store.records` the
verified level records, :mod:`~lth_jax.store.runs` the run directories and exports. It needs only
numpy, so a process can load it without JAX.
"""

from lth_jax.store import ondisk
from lth_jax.store.files import (
    CorruptRecord,
    NotStored,
    StoreError,
    atomic_write,
    locked,
    read_json,
    read_npz,
    remove_stale_temps,
    write_json,
    write_npz,
)
from lth_jax.store.ondisk import EXPORT, EXPORT_MARK, LOCK_FILE, SEP
from lth_jax.store.records import (
    CHECKSUM,
    Record,
    arrays_digest,
    done,
    flatten,
    levels,
    load_level,
    metrics_digest,
    problem,
    problems,
    refuse_damaged,
    save_level,
    subtree,
)
from lth_jax.store.runs import (
    added_later,
    export_run,
    exported_from,
    find_runs,
    is_export,
    load_settings,
    open_run,
    run_dir,
    settings_hash,
)

__all__ = [
    "CHECKSUM", "EXPORT", "EXPORT_MARK", "LOCK_FILE", "SEP", "CorruptRecord", "NotStored", "Record", "StoreError",
    "added_later", "arrays_digest", "atomic_write", "done", "export_run", "exported_from", "find_runs", "flatten",
    "is_export", "levels", "load_level", "load_settings", "locked", "metrics_digest", "ondisk", "open_run",
    "problem", "problems", "read_json", "read_npz", "refuse_damaged", "remove_stale_temps", "run_dir", "save_level",
    "settings_hash", "subtree", "write_json", "write_npz",
]
