"""CIFAR-10 from its official binary version: six fixed-size batch files, no pickle.

Each batch file is 10,000 records of 3,073 bytes: one label byte (0..9), then 3,072 pixel bytes,
1,024 red, 1,024 green, 1,024 blue, each channel row-major 32x32 (so exactly 30,730,000 bytes).

Where the files come from (``data_dir=...`` or ``$LTH_CIFAR10_DIR``; offline, nothing written):

- the official archive ``cifar-10-binary.tar.gz`` (the folder holds it, or ``data_dir`` is it),
  checked against its published size, MD5 (the authors' page) and SHA-256 (tfds'
  ``url_checksums/cifar10.txt``), then read in memory with :mod:`tarfile`: nothing is extracted.
  Preferred when a folder holds both it and loose files: only the archive has a published sum.
- the six loose ``.bin`` files, in the folder or in its ``cifar-10-batches-bin/``. No per-file
  checksum is published, so they are held to what the authors document: exactly the six files
  (a stray ``.bin``, e.g. CIFAR-100's ``train.bin``, is refused), each exactly 30,730,000
  bytes, every label 0..9, and the class balance (the test batch exactly 1,000 images of each
  class, the five training batches between them exactly 5,000).
- otherwise, on a networked machine, tensorflow-datasets' download manager fetches the archive
  (size and SHA-256 verified by tfds, MD5 and everything above by this loader), after the same
  offline probe as MNIST's.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lth_jax.data._fetch import DataError, check_sums, tfds_download

CIFAR10_DIR_ENV = "LTH_CIFAR10_DIR"
"""Environment variable naming a folder with ``cifar-10-binary.tar.gz`` or the six ``.bin`` batches."""

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
"""The binary version on the authors' page (https://www.cs.toronto.edu/~kriz/cifar.html), as tfds fetches it."""

ARCHIVE_NAME = "cifar-10-binary.tar.gz"
FOLDER_NAME = "cifar-10-batches-bin"
"""The folder the archive unpacks to."""

TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
BATCH_FILES = (*TRAIN_FILES, TEST_FILE)
RECORDS = 10_000     # records per batch file
RECORD_BYTES = 3073  # 1 label byte + 3 x 32 x 32 pixel bytes
BATCH_BYTES = RECORDS * RECORD_BYTES  # 30,730,000: every batch file is exactly this long


class ArchiveSpec(NamedTuple):
    size: int    # bytes of the .tar.gz
    sha256: str
    md5: str


CIFAR10_ARCHIVE = ArchiveSpec(170052171, "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                              "c32a1d4ab5d03f1284b67883e8d87530")
"""``cifar-10-binary.tar.gz``: size and SHA-256 from tfds' ``url_checksums/cifar10.txt``
(tensorflow-datasets 4.9.10), MD5 from the authors' page."""

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
"""Labels 0..9, as ``batches.meta.txt`` names them."""

CIFAR10_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR10_STD = (0.24703223, 0.24348513, 0.26158784)
"""Per-channel (R, G, B) mean and standard deviation of the 50,000 training images in [0, 1]: the
widely used values, over all pixels (the also quoted 0.2023, 0.1994, 0.2010 are not the
deviation over all pixels). Constants, so a data set's hash needs no loading; the real-data test
checks them against :func:`lth_jax.datasets.channel_stats` of the loaded training set."""

_FOLDER = f"a folder with {ARCHIVE_NAME} or the six .bin files it unpacks to"
_FIX = (f"re-download it (e.g. unset {CIFAR10_DIR_ENV} on a networked machine and let tensorflow-datasets "
        f"fetch it) or point {CIFAR10_DIR_ENV} at {_FOLDER}")
_OFFLINE = f"on an offline machine set {CIFAR10_DIR_ENV} to {_FOLDER}"


class CIFAR10(NamedTuple):
    """NHWC float32 images in [0, 1] (channels R, G, B); labels int32 in 0..9."""

    train_x: np.ndarray  # (50000, 32, 32, 3) float32
    train_y: np.ndarray  # (50000,) int32
    test_x: np.ndarray   # (10000, 32, 32, 3) float32
    test_y: np.ndarray   # (10000,) int32

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.train_x, self.train_y

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.test_x, self.test_y


Batches = dict[str, tuple[str, bytes]]  # batch file name -> (where, for messages; its bytes)


def cifar10(data_dir: str | os.PathLike | None = None, download: bool = True, *,
            cache_dir: str | os.PathLike | None = None, url: str = CIFAR10_URL,
            archive: ArchiveSpec = CIFAR10_ARCHIVE) -> CIFAR10:
    """Load CIFAR-10.

    Args:
      data_dir: a folder with the archive or the six batches (see the module), or the archive
        itself. ``None`` reads ``$LTH_CIFAR10_DIR``; if that is unset too, the archive is downloaded.
      download: if False, never touch the network (a folder is then required).
      cache_dir: tfds download cache (default ``~/tensorflow_datasets/downloads``).
      url: where to download the archive from (a mirror; the checksums still apply).
      archive: the size and sums the archive must have; only tests writing their own archive
        in the official format change it.
    """
    if data_dir is None:
        data_dir = os.environ.get(CIFAR10_DIR_ENV) or None
    if data_dir is not None:
        return _assemble(_local(Path(data_dir).expanduser(), archive), _FIX)
    if not download:
        raise DataError(f"no CIFAR-10 folder given: pass data_dir or set {CIFAR10_DIR_ENV} to {_FOLDER}, "
                        "or allow downloading (download=True)")
    got = tfds_download("CIFAR-10", url, {ARCHIVE_NAME: url}, {ARCHIVE_NAME: (archive.size, archive.sha256)},
                        cache_dir, _OFFLINE, f"set {CIFAR10_DIR_ENV} to {_FOLDER}")
    # tfds trusts its cache once a file is there: a file damaged since is caught here.
    fix = "delete it so that tensorflow-datasets downloads it again"
    return _assemble(read_archive(got[ARCHIVE_NAME], archive, fix), fix)


def _local(path: Path, archive: ArchiveSpec) -> Batches:
    """The six batches from ``path``: the archive, a folder holding it, or the loose files."""
    if path.is_file():
        return read_archive(path, archive)
    if not path.is_dir():
        raise DataError(f"{path}: not found; point {CIFAR10_DIR_ENV} at {_FOLDER}")
    if (path / ARCHIVE_NAME).exists():
        return read_archive(path / ARCHIVE_NAME, archive)
    if not any(path.glob("*.bin")) and (path / FOLDER_NAME).is_dir():
        path = path / FOLDER_NAME
    if not any(path.glob("*.bin")):
        raise DataError(f"{path}: no CIFAR-10 here: expected {ARCHIVE_NAME}, its folder {FOLDER_NAME}/ or the "
                        f"six files {', '.join(BATCH_FILES)}; {_FIX}")
    return read_folder(path)


def read_folder(folder: str | os.PathLike) -> Batches:
    """The six loose batch files of ``folder``, each exactly :data:`BATCH_BYTES` long; no other ``.bin``."""
    folder = Path(folder)
    stray = sorted(p.name for p in folder.glob("*.bin") if p.name not in BATCH_FILES)
    if stray:
        raise DataError(f"{folder / stray[0]}: not one of CIFAR-10's six binary batches ({', '.join(BATCH_FILES)}; "
                        f"CIFAR-100's binary version has train.bin and test.bin): move it elsewhere")
    for name in BATCH_FILES:  # all six before reading any: a bad file fails fast
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: file not found; {_FIX}")
        _length(str(path), path.stat().st_size)
    out = {}
    for name in BATCH_FILES:
        path = folder / name
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e}); {_FIX}") from e
        _length(str(path), len(raw))
        out[name] = str(path), raw
    return out


def read_archive(path: str | os.PathLike, spec: ArchiveSpec = CIFAR10_ARCHIVE, fix: str = _FIX) -> Batches:
    """The six batches inside ``cifar-10-binary.tar.gz``, read in memory once its size, SHA-256 and MD5 match."""
    path = Path(path)
    check_sums(path, spec.size, spec.sha256, spec.md5, fix)
    found: Batches = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:  # in order: a gzip stream reads forward
                folder, _, name = member.name.removeprefix("./").partition("/")
                if folder != FOLDER_NAME or name not in BATCH_FILES or name in found:
                    continue
                where = f"{path} ({FOLDER_NAME}/{name})"
                stream = tar.extractfile(member) if member.isfile() else None
                if stream is None:
                    raise DataError(f"{where}: not a regular file in the archive; {fix}")
                _length(where, member.size, fix)
                found[name] = where, stream.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable .tar.gz archive ({type(e).__name__}: {e}); {fix}") from e
    for name in BATCH_FILES:
        if name not in found:
            raise DataError(f"{path}: the archive has no {FOLDER_NAME}/{name}; {fix}")
        _length(found[name][0], len(found[name][1]), fix)
    return found


def _length(where: str, size: int, fix: str = _FIX) -> None:
    if size != BATCH_BYTES:
        raise DataError(f"{where}: {size} bytes, expected {BATCH_BYTES} ({RECORDS} records of {RECORD_BYTES} bytes; "
                        f"truncated or not CIFAR-10's binary version); {fix}")


def _assemble(batches: Batches, fix: str) -> CIFAR10:
    """Check every label and the class balance, then scale to [0, 1] and transpose to NHWC."""
    records = {}
    for name in BATCH_FILES:
        where, raw = batches[name]
        rows = np.frombuffer(raw, np.uint8).reshape(RECORDS, RECORD_BYTES)
        bad = np.flatnonzero(rows[:, 0] > 9)
        if bad.size:
            raise DataError(f"{where}: record {bad[0]} has label {rows[bad[0], 0]}, outside 0..9 (not CIFAR-10's "
                            f"binary version: CIFAR-100's has two label bytes); {fix}")
        records[name] = rows
    for names, each in ((TRAIN_FILES, 5000), ((TEST_FILE,), 1000)):
        counts = sum(np.bincount(records[n][:, 0], minlength=10) for n in names)
        if np.any(counts != each):
            first = batches[names[0]][0]
            which = f"{first} .. {names[-1]} hold" if len(names) > 1 else f"{first} holds"
            raise DataError(f"{which} {counts.tolist()} images of classes 0..9, CIFAR-10 exactly {each} of each "
                            f"(not the original files); {fix}")
    out = []
    for names in (TRAIN_FILES, (TEST_FILE,)):
        x = np.empty((len(names) * RECORDS, 32, 32, 3), np.float32)
        y = np.empty(len(names) * RECORDS, np.int32)
        for i, name in enumerate(names):
            rows, part = records[name], slice(i * RECORDS, (i + 1) * RECORDS)
            planes, pixels = rows[:, 1:].reshape(RECORDS, 3, 1024), x[part].reshape(RECORDS, 1024, 3)
            for channel in range(3):  # R, G, B planes -> HWC, plane by plane: far faster than one transpose
                # byte / 255 in float32, as MNIST's loader scales, in one pass over the 614 MB
                np.divide(planes[:, channel], np.float32(255), out=pixels[:, :, channel], dtype=np.float32)
            y[part] = rows[:, 0]
        out += [x, y]
    return CIFAR10(*out)
