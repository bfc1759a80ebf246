"""Run directories: one per setting hash, the settings beside them, light exported copies, and finding
runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lth_jax.store.files import CorruptRecord, NotStored, jsonable, mkdir, read_json, same_json, write_json
from lth_jax.store.ondisk import CURVES, EXPORT, EXPORT_MARK, INIT, SEP, SETTINGS
from lth_jax.store.records import CHECKSUM, levels, load_level, refuse_damaged, save_level


def settings_hash(settings: Mapping[str, Any], digits: int = 12) -> str:
    """Stable hash of a JSON-able mapping (key order and tuple/list spelling do not matter)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def added_later(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``values`` that differ from their ``defaults``: a setting added after runs
    were stored enters a hash only when it is set, so those runs keep their hashes (and folders)."""
    return {k: v for k, v in values.items() if v != defaults[k]}


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
    mkdir(path)
    write_json(path / SETTINGS, {"hash": settings_hash(settings), "settings": dict(settings),
                                        "extra": dict(extra or {})})
    return path


def load_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The ``settings.json`` of a run: ``{"hash", "settings", "extra"}``.

    Raises :class:`NotStored` if there is none and :class:`CorruptRecord` if it is damaged
    (running those settings again rewrites it).
    """
    file = Path(path) / SETTINGS
    if not file.exists():
        raise NotStored(f"{file}: not found ({Path(path)} is not a stored run)")
    s = read_json(file)
    if not isinstance(s, dict) or not isinstance(s.get("settings"), dict):
        raise CorruptRecord(f"{file}: not a run's settings (no \"settings\" object)")
    s.setdefault("extra", {})
    return s


def export_run(src: str | os.PathLike, dest_root: str | os.PathLike, keep: tuple[str, ...] = (CURVES + SEP,),
               skip: tuple[str, ...] = (INIT,)) -> Path:
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
    mkdir(dest)
    names = [n for n in levels(src) if n not in skip]
    for name in names:
        rec = load_level(src, name)
        save_level(dest, name, {k: v for k, v in rec.arrays.items() if k.startswith(keep)},
                   {**rec.metrics, "exported_from": {"run": src.name,
                                                     "checksum": read_json(src / f"{name}.json")[CHECKSUM]}})
    extra = {**settings["extra"], EXPORT: {"kept_arrays": list(keep), "left_out_records": list(skip),
                                           "levels": names, "source": str(src)}}
    write_json(dest / SETTINGS, {**settings, "extra": extra})
    return dest


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
        if all(same_json(s.get(k), v) for k, v in match.items()):
            out.append(p.parent)
    return out
