"""MNIST from the four original IDX ``.gz`` files, checked byte for byte.

Where the files come from:

- a local folder holding ``train-images-idx3-ubyte.gz`` and the other three
  (tensorflow-datasets' ``manual_dir`` convention): ``data_dir=...`` or the
  ``LTH_MNIST_DIR`` environment variable. Works offline; nothing is written.
- otherwise, on a networked machine, tensorflow-datasets' download manager
  fetches them into its download cache, verifying the published size and
  SHA-256 of each (a second call reuses the cache). Before it is asked to
  download, one TCP connection to the server (or proxy) is tried with a short
  timeout: offline, the loader fails in seconds with one line naming
  ``LTH_MNIST_DIR`` instead of waiting out tfds' retries with back-off.

tfds' stock ``mnist`` builder needs TensorFlow to build its records; we need
neither: after the size and SHA-256 check (the same sums tfds registers for
these URLs), numpy parses the IDX format directly. Any missing, truncated or
altered file raises one :class:`DataError` naming the file and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import threading
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

MNIST_DIR_ENV = "LTH_MNIST_DIR"
"""Environment variable naming a folder with the four original MNIST ``.gz`` files."""

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
"""Where tfds downloads MNIST from (its ``url_checksums/mnist.txt``)."""

PROBE_TIMEOUT = 5.0
"""Seconds the connectivity probe waits for the download server (or proxy) before giving up."""

_OFFLINE = (f"on an offline machine set {MNIST_DIR_ENV} (drivers: --mnist_dir) to a folder with the four "
            "original MNIST .gz files")


class FileSpec(NamedTuple):
    size: int     # bytes of the .gz file
    sha256: str   # published SHA-256 of the .gz file
    magic: int    # IDX magic number: 0x0803 = uint8 3-D (images), 0x0801 = uint8 1-D (labels)
    count: int    # number of examples


FILES: dict[str, FileSpec] = {
    "train-images-idx3-ubyte.gz": FileSpec(
        9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 0x0803, 60000),
    "train-labels-idx1-ubyte.gz": FileSpec(
        28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 0x0801, 60000),
    "t10k-images-idx3-ubyte.gz": FileSpec(
        1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 0x0803, 10000),
    "t10k-labels-idx1-ubyte.gz": FileSpec(
        4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 0x0801, 10000),
}

_FIX = (f"re-download it (e.g. unset {MNIST_DIR_ENV} on a networked machine and let tensorflow-datasets "
        f"fetch it) or point {MNIST_DIR_ENV} at a folder with the four original MNIST .gz files")


class DataError(Exception):
    """A data file is missing, truncated, altered or malformed; the message says which and what to do."""


class MNIST(NamedTuple):
    """Images flattened to 784 float32 pixels in [0, 1]; labels int32 in 0..9."""

    train_x: np.ndarray  # (60000, 784) float32
    train_y: np.ndarray  # (60000,) int32
    test_x: np.ndarray   # (10000, 784) float32
    test_y: np.ndarray   # (10000,) int32

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.train_x, self.train_y

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.test_x, self.test_y


def mnist(data_dir: str | os.PathLike | None = None, download: bool = True, *,
          cache_dir: str | os.PathLike | None = None, base_url: str = MNIST_URL,
          verify: bool = True) -> MNIST:
    """Load MNIST.

    Args:
      data_dir: folder with the four original ``.gz`` files. ``None`` reads
        ``$LTH_MNIST_DIR``; if that is unset too, the files are downloaded.
      download: if False, never touch the network (a folder is then required).
      cache_dir: tfds download cache (default ``~/tensorflow_datasets/downloads``,
        tfds' own, or ``$TFDS_DATA_DIR/downloads``).
      base_url: where to download from (a mirror; the checksums still apply).
      verify: check each file's size and SHA-256 before parsing. Only hand-made
        test files should ever turn this off; the IDX headers are checked regardless.
    """
    if data_dir is None:
        data_dir = os.environ.get(MNIST_DIR_ENV) or None
    fix = _FIX
    if data_dir is not None:
        paths = {name: Path(data_dir).expanduser() / name for name in FILES}
    elif download:
        paths = download_files(cache_dir, base_url)
        # tfds trusts its cache once a file is there: a file damaged since is caught below.
        fix = "delete it so that tensorflow-datasets downloads it again"
    else:
        raise DataError(f"no MNIST folder given: pass data_dir (drivers: --mnist_dir) or set {MNIST_DIR_ENV} to a "
                        f"folder with {', '.join(FILES)}, or allow downloading (download=True)")
    for name, path in paths.items():  # all four before parsing any: a bad file fails fast
        if verify:
            verify_file(path, FILES[name], fix)
        elif not path.is_file():
            raise DataError(f"{path}: file not found; {fix}")
    arrays = {name: parse_idx(path, FILES[name].magic) for name, path in paths.items()}
    return _assemble(arrays, paths)


def verify_file(path: Path, spec: FileSpec, fix: str = _FIX) -> None:
    """Raise :class:`DataError` (ending in ``fix``) unless ``path`` has the published size and SHA-256."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; {fix}")
    try:
        size = path.stat().st_size
        if size != spec.size:
            raise DataError(f"{path}: {size} bytes, expected {spec.size} (truncated or not the original file); "
                            f"{fix}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); {fix}") from e
    if digest != spec.sha256:
        raise DataError(f"{path}: SHA-256 mismatch (file altered or corrupted); {fix}")


def parse_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """The uint8 array in a gzipped IDX file whose magic number must be ``magic``.

    IDX: a big-endian int32 magic (0x08 = unsigned byte, low byte = number of
    dimensions), one big-endian int32 per dimension, then the data.
    """
    path = Path(path)
    try:
        packed = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); {_FIX}") from e
    try:
        raw = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; zlib.error: damaged deflate data
        kind = "zlib.error" if isinstance(e, zlib.error) else type(e).__name__
        raise DataError(f"{path}: not a readable gzip file ({kind}: {e}); {_FIX}") from e
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header; {_FIX}")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found:#010x}, expected {magic:#010x}; {_FIX}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header cut short; {_FIX}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, 4))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: IDX header says shape {shape} ({int(np.prod(shape))} bytes of data) "
                        f"but the file holds {len(raw) - header}; {_FIX}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _assemble(arrays: dict[str, np.ndarray], paths: dict[str, Path]) -> MNIST:
    """Check the four arrays agree with each other, then scale and flatten."""
    out = []
    for split in ("train", "t10k"):
        img_name, lbl_name = f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz"
        images, labels = arrays[img_name], arrays[lbl_name]
        if images.shape[1:] != (28, 28):
            raise DataError(f"{paths[img_name]}: images of shape {images.shape[1:]}, expected (28, 28); {_FIX}")
        if len(images) != len(labels):
            raise DataError(f"{paths[img_name]} holds {len(images)} images but {paths[lbl_name]} "
                            f"{len(labels)} labels; {_FIX}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{paths[lbl_name]}: label {labels.max()} outside 0..9; {_FIX}")
        pixels = images.reshape(len(images), 784).astype(np.float32)
        pixels /= np.float32(255)  # in place: the float copy of the training set is 188 MB
        out += [pixels, labels.astype(np.int32)]
    return MNIST(*out)


def download_files(cache_dir: str | os.PathLike | None = None, base_url: str = MNIST_URL) -> dict[str, Path]:
    """Download (or find in tfds' cache) the four files, checksums verified by tfds.

    Imported lazily: tensorflow-datasets is only needed on this path, and its
    download manager works without TensorFlow for http(s) URLs.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"downloading MNIST needs tensorflow-datasets ({e}); install it, or set {MNIST_DIR_ENV} "
                        "to a folder with the four original MNIST .gz files") from e
    if cache_dir is None:
        cache_dir = Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets")) / "downloads"
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    urls = {name: base_url + name for name in FILES}
    if not all(_cached(Path(cache_dir), urls[name], spec.sha256) for name, spec in FILES.items()):
        unreachable = probe(base_url)
        if unreachable:
            raise DataError(f"cannot download MNIST from {base_url}: {unreachable}; {_OFFLINE}")
    url_infos = {urls[name]: tfds.download.checksums.UrlInfo(size=tfds.core.units.Size(spec.size),
                                                            checksum=spec.sha256, filename=name)
                 for name, spec in FILES.items()}
    try:
        manager = tfds.download.DownloadManager(download_dir=cache_dir, url_infos=url_infos,
                                                force_checksums_validation=True)
        got = manager.download(urls)
    except Exception as e:  # network, HTTP or checksum failure: one clear error, whatever tfds raised
        raise DataError(f"downloading MNIST from {base_url} into {cache_dir} failed: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}; {_OFFLINE}") from e
    return {name: Path(os.fspath(got[name])) for name in FILES}


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

    thread = threading.Thread(target=attempt, name="mnist-probe", daemon=True)
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
