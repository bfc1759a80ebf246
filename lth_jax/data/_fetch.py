"""What every loader shares: the one error type, checksums, and downloading through tfds.

Downloading goes through tensorflow-datasets' download manager (imported lazily: it is only
needed on this path, and works without TensorFlow for http(s) URLs), which verifies the
published size and SHA-256 of each file and keeps them in its download cache. Before it is
asked to download, one TCP connection to the server (or proxy) is tried with a short timeout:
offline, a loader fails in seconds with one line naming its folder variable instead of waiting
out tfds' retries with back-off.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

PROBE_TIMEOUT = 5.0
"""Seconds the connectivity probe waits for the download server (or proxy) before giving up."""


class DataError(Exception):
    """A data file is missing, truncated, altered or malformed; the message says which and what to do."""

    __module__ = "lth_jax.data"  # the name a traceback shows: where users import it from


def digests(path: Path, fix: str) -> tuple[str, str]:
    """The SHA-256 and MD5 of ``path``, read in chunks (an archive is 170 MB)."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                sha256.update(chunk)
                md5.update(chunk)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); {fix}") from e
    return sha256.hexdigest(), md5.hexdigest()


def check_sums(path: Path, size: int, sha256: str, md5: str | None, fix: str) -> None:
    """Raise :class:`DataError` (ending in ``fix``) unless ``path`` has this size, SHA-256 and MD5 (if given)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; {fix}")
    try:
        found = path.stat().st_size
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); {fix}") from e
    if found != size:
        raise DataError(f"{path}: {found} bytes, expected {size} (truncated or not the original file); {fix}")
    got_sha256, got_md5 = digests(path, fix)
    if got_sha256 != sha256:
        raise DataError(f"{path}: SHA-256 mismatch (file altered or corrupted); {fix}")
    if md5 is not None and got_md5 != md5:
        raise DataError(f"{path}: MD5 mismatch (file altered or corrupted); {fix}")


def tfds_download(title: str, where: str, urls: Mapping[str, str], sums: Mapping[str, tuple[int, str]],
                  cache_dir: str | os.PathLike | None, offline: str, instead: str) -> dict[str, Path]:
    """Download ``urls`` (name -> URL) into tfds' cache, each checked against ``sums`` (name -> size,
    SHA-256), or find them there; the local path of each. ``where`` is probed first and named in
    errors, which end in ``offline`` (how to do without the network; ``instead`` without tfds)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"downloading {title} needs tensorflow-datasets ({e}); install it, or {instead}") from e
    if cache_dir is None:
        cache_dir = Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets")) / "downloads"
    if not all(_cached(Path(cache_dir), urls[name], sha256) for name, (_, sha256) in sums.items()):
        unreachable = probe(where)
        if unreachable:
            raise DataError(f"cannot download {title} from {where}: {unreachable}; {offline}")
    url_infos = {urls[name]: tfds.download.checksums.UrlInfo(size=tfds.core.units.Size(size), checksum=sha256,
                                                            filename=name)
                 for name, (size, sha256) in sums.items()}
    try:
        manager = tfds.download.DownloadManager(download_dir=cache_dir, url_infos=url_infos,
                                                force_checksums_validation=True)
        got = manager.download(dict(urls))
    except Exception as e:  # network, HTTP or checksum failure: one clear error, whatever tfds raised
        raise DataError(f"downloading {title} from {where} into {cache_dir} failed: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}; {offline}") from e
    return {name: Path(os.fspath(got[name])) for name in urls}


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None if a TCP connection to ``url``'s server (or the proxy the environment names for it)
    opens within ``timeout`` seconds, else why not, in a few words.

    Name resolution has no timeout of its own, so the attempt runs in a daemon thread
    that is abandoned when the time is up. Only http(s) URLs are probed.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    via = ""
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if p.hostname:
            host, port, via = p.hostname, p.port or 80, " (the proxy)"
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as e:
            outcome.append(f"{host}:{port}{via} is unreachable ({e.strerror or type(e).__name__})")

    thread = threading.Thread(target=attempt, name="data-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port}{via} gave no answer within {timeout:g} s"


def _cached(cache_dir: Path, url: str, sha256: str) -> bool:
    """Whether tfds' download cache already holds ``url`` (its file and its ``.INFO``), so no network is needed."""
    try:
        from tensorflow_datasets.core.download import resource

        cached = cache_dir / resource.get_dl_fname(url, sha256)
        return cached.is_file() and Path(os.fspath(resource.get_info_path(cached))).is_file()
    except Exception:  # a tfds without these helpers: assume not cached, so the probe runs
        return False
