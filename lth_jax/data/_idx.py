"""MNIST-format data sets (MNIST, Fashion-MNIST): four IDX ``.gz`` files, checked byte for byte.

One implementation for both, parameterised by an :class:`IdxSet`: the title, the variable naming
a local folder, the download URL and each file's published size and checksums (:class:`FileSpec`).
After the size and SHA-256 check (and MD5 where the authors publish one), numpy parses the IDX
format directly: tfds' stock builders would need TensorFlow.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lth_jax.data._fetch import DataError, check_sums, tfds_download


class FileSpec(NamedTuple):
    size: int     # bytes of the .gz file
    sha256: str   # published SHA-256 of the .gz file
    magic: int    # IDX magic number: 0x0803 = uint8 3-D (images), 0x0801 = uint8 1-D (labels)
    count: int    # number of examples
    md5: str | None = None  # the MD5 the data set's authors publish, where they do


NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")
"""The four files of an MNIST-format data set, the same names for MNIST and Fashion-MNIST."""


@dataclasses.dataclass(frozen=True)
class IdxSet:
    """An MNIST-format data set: its ``title`` (in messages), the environment variable ``env`` naming
    a local folder, the ``url`` tfds downloads it from, and what each of its four files must be."""

    title: str
    env: str
    url: str
    files: Mapping[str, FileSpec]
    flag: str = ""  # how the drivers name the folder, in messages: " (drivers: --mnist_dir)"

    def __post_init__(self) -> None:
        if set(self.files) != set(NAMES):
            raise ValueError(f"{self.title}: files must give a FileSpec for each of {', '.join(NAMES)}, "
                             f"not {sorted(self.files)}")
        object.__setattr__(self, "files", {name: FileSpec(*self.files[name]) for name in NAMES})

    @property
    def folder(self) -> str:
        return f"a folder with the four original {self.title} .gz files"

    @property
    def fix(self) -> str:
        return (f"re-download it (e.g. unset {self.env} on a networked machine and let tensorflow-datasets "
                f"fetch it) or point {self.env} at {self.folder}")


MNIST_DIR_ENV = "LTH_MNIST_DIR"
"""Environment variable naming a folder with the four original MNIST ``.gz`` files."""

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
"""Where tfds downloads MNIST from (its ``url_checksums/mnist.txt``)."""

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
"""MNIST's files: sizes and SHA-256 as tfds registers them (``url_checksums/mnist.txt``)."""

MNIST_SET = IdxSet("MNIST", MNIST_DIR_ENV, MNIST_URL, FILES, " (drivers: --mnist_dir)")

FASHION_MNIST_DIR_ENV = "LTH_FASHION_MNIST_DIR"
"""Environment variable naming a folder with the four original Fashion-MNIST ``.gz`` files."""

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
"""Where the authors' README links the files, and tfds downloads them from."""

FASHION_MNIST_FILES: dict[str, FileSpec] = {
    "train-images-idx3-ubyte.gz": FileSpec(
        26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 0x0803, 60000,
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte.gz": FileSpec(
        29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 0x0801, 60000,
        "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte.gz": FileSpec(
        4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 0x0803, 10000,
        "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte.gz": FileSpec(
        5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 0x0801, 10000,
        "bb300cfdad3c16e7a12a480ee83cd310"),
}
"""Fashion-MNIST's files: sizes and SHA-256 from tfds' ``url_checksums/fashion_mnist.txt``
(tensorflow-datasets 4.9.10), MD5 from the authors' README (zalandoresearch/fashion-mnist,
"Get the Data"). Both are checked, so a file is held to the authors' own sum too."""

FASHION_MNIST_SET = IdxSet("Fashion-MNIST", FASHION_MNIST_DIR_ENV, FASHION_MNIST_URL, FASHION_MNIST_FILES)

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
"""Fashion-MNIST's labels 0..9, as its README names them."""

_FIX = MNIST_SET.fix


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


FashionMNIST = MNIST
"""Fashion-MNIST is a drop-in replacement for MNIST: the same layout, so the same tuple."""


def mnist(data_dir: str | os.PathLike | None = None, download: bool = True, *,
          cache_dir: str | os.PathLike | None = None, base_url: str = MNIST_URL,
          verify: bool = True, files: Mapping[str, FileSpec] | None = None) -> MNIST:
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
      files: what each file must be instead of :data:`FILES` (for files written by tests).
    """
    return load_idx(_with(MNIST_SET, files), data_dir, download, cache_dir=cache_dir, base_url=base_url,
                    verify=verify)


def fashion_mnist(data_dir: str | os.PathLike | None = None, download: bool = True, *,
                  cache_dir: str | os.PathLike | None = None, base_url: str = FASHION_MNIST_URL,
                  verify: bool = True, files: Mapping[str, FileSpec] | None = None) -> FashionMNIST:
    """Load Fashion-MNIST (Zalando's 28x28 article images, the same four-file format as MNIST).

    As :func:`mnist`, with ``$LTH_FASHION_MNIST_DIR`` for the folder; ``verify`` also checks the
    authors' MD5. ``files`` replaces :data:`FASHION_MNIST_FILES`: tests that write files in the
    official format give their sizes and sums there, so the real checks run on them.
    """
    return load_idx(_with(FASHION_MNIST_SET, files), data_dir, download, cache_dir=cache_dir,
                    base_url=base_url, verify=verify)


def _with(dataset: IdxSet, files: Mapping[str, FileSpec] | None) -> IdxSet:
    return dataset if files is None else dataclasses.replace(dataset, files=files)


def load_idx(dataset: IdxSet, data_dir: str | os.PathLike | None = None, download: bool = True, *,
             cache_dir: str | os.PathLike | None = None, base_url: str | None = None,
             verify: bool = True) -> MNIST:
    """Load an MNIST-format data set (see :func:`mnist` for the arguments; ``base_url`` defaults to
    ``dataset.url``). With ``verify``, each file must also hold its spec's number of examples."""
    if data_dir is None:
        data_dir = os.environ.get(dataset.env) or None
    fix = dataset.fix
    if data_dir is not None:
        paths = {name: Path(data_dir).expanduser() / name for name in dataset.files}
    elif download:
        paths = download_files(cache_dir, base_url or dataset.url, dataset)
        # tfds trusts its cache once a file is there: a file damaged since is caught below.
        fix = "delete it so that tensorflow-datasets downloads it again"
    else:
        raise DataError(f"no {dataset.title} folder given: pass data_dir{dataset.flag} or set {dataset.env} to a "
                        f"folder with {', '.join(dataset.files)}, or allow downloading (download=True)")
    for name, path in paths.items():  # all four before parsing any: a bad file fails fast
        if verify:
            verify_file(path, dataset.files[name], fix)
        elif not path.is_file():
            raise DataError(f"{path}: file not found; {fix}")
    arrays = {name: parse_idx(path, dataset.files[name].magic, dataset.fix) for name, path in paths.items()}
    if verify:  # implied by the SHA-256 of a published spec; a spec of its own (tests) may differ
        for name, a in arrays.items():
            if len(a) != dataset.files[name].count:
                raise DataError(f"{paths[name]}: {len(a)} examples, expected {dataset.files[name].count}; {fix}")
    return _assemble(arrays, paths, dataset.fix)


def verify_file(path: Path, spec: FileSpec, fix: str = _FIX) -> None:
    """Raise :class:`DataError` (ending in ``fix``) unless ``path`` has the published size and SHA-256
    (and MD5, where the spec has one)."""
    check_sums(Path(path), spec.size, spec.sha256, spec.md5, fix)


def parse_idx(path: str | os.PathLike, magic: int, fix: str = _FIX) -> np.ndarray:
    """The uint8 array in a gzipped IDX file whose magic number must be ``magic``.

    IDX: a big-endian int32 magic (0x08 = unsigned byte, low byte = number of
    dimensions), one big-endian int32 per dimension, then the data.
    """
    path = Path(path)
    try:
        packed = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); {fix}") from e
    try:
        raw = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; zlib.error: damaged deflate data
        kind = "zlib.error" if isinstance(e, zlib.error) else type(e).__name__
        raise DataError(f"{path}: not a readable gzip file ({kind}: {e}); {fix}") from e
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header; {fix}")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found:#010x}, expected {magic:#010x}; {fix}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header cut short; {fix}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, 4))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path}: IDX header says shape {shape} ({int(np.prod(shape))} bytes of data) "
                        f"but the file holds {len(raw) - header}; {fix}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _assemble(arrays: dict[str, np.ndarray], paths: dict[str, Path], fix: str = _FIX) -> MNIST:
    """Check the four arrays agree with each other, then scale and flatten."""
    out = []
    for split in ("train", "t10k"):
        img_name, lbl_name = f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz"
        images, labels = arrays[img_name], arrays[lbl_name]
        if images.shape[1:] != (28, 28):
            raise DataError(f"{paths[img_name]}: images of shape {images.shape[1:]}, expected (28, 28); {fix}")
        if len(images) != len(labels):
            raise DataError(f"{paths[img_name]} holds {len(images)} images but {paths[lbl_name]} "
                            f"{len(labels)} labels; {fix}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{paths[lbl_name]}: label {labels.max()} outside 0..9; {fix}")
        pixels = images.reshape(len(images), 784).astype(np.float32)
        pixels /= np.float32(255)  # in place: the float copy of the training set is 188 MB
        out += [pixels, labels.astype(np.int32)]
    return MNIST(*out)


def download_files(cache_dir: str | os.PathLike | None = None, base_url: str = MNIST_URL,
                   dataset: IdxSet = MNIST_SET) -> dict[str, Path]:
    """Download (or find in tfds' cache) the four files of ``dataset``, checksums verified by tfds."""
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    offline = f"on an offline machine set {dataset.env}{dataset.flag} to {dataset.folder}"
    return tfds_download(dataset.title, base_url, {name: base_url + name for name in dataset.files},
                         {name: (spec.size, spec.sha256) for name, spec in dataset.files.items()}, cache_dir,
                         offline, f"set {dataset.env} to {dataset.folder}")
