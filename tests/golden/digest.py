"""Content digests of stored runs, independent of the library's API.

A refactor keeps the numbers: ``digest_run(path)`` hashes every stored record of a run
directory (each npz array's name, dtype, shape and bytes; each JSON's metrics minus the
wall-clock, device and checksum entries), so a run made before a change and the same run
made after it can be compared by one string per record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

VOLATILE = {"seconds", "device", "checksum", "checksums", "group", "format"}


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def digest_arrays(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def digest_record(path: Path, name: str) -> dict[str, str]:
    with np.load(path / f"{name}.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    metrics = _clean(json.loads((path / f"{name}.json").read_text()))
    text = json.dumps(metrics, sort_keys=True, separators=(",", ":"))
    return {"arrays": digest_arrays(arrays), "metrics": hashlib.sha256(text.encode()).hexdigest()}


def digest_run(path: str | Path) -> dict[str, dict[str, str]]:
    """``{record name: {"arrays": sha256, "metrics": sha256}}`` for every complete record."""
    path = Path(path)
    names = sorted(p.stem for p in path.glob("*.json") if p.name != "settings.json" and not p.name.startswith(".")
                   and (path / f"{p.stem}.npz").exists())
    return {n: digest_record(path, n) for n in names}
