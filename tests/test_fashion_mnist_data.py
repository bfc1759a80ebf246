"""The Fashion-MNIST loader: MNIST's four-file IDX format, held to the authors' published sums,
and one clear error line for any file that is not the original.

The real files cannot be fetched here, so the tests write files in the exact official format
(gzipped IDX, the official names, magic numbers and 28x28 images) with their own content, and
pass the loader those files' sizes and sums (``files=``): the same checks then run on them as on
the real files against the published sums. Tests that need the real files read them from
``$LTH_FASHION_MNIST_DIR``; without it they are skipped.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import importlib.util
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lth_jax import data
from lth_jax import datasets as ds

ENV = data.FASHION_MNIST_DIR_ENV
NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")
FIX = f"or point {ENV} at a folder with the four original Fashion-MNIST .gz files"
N = {"train": 20, "t10k": 10}  # examples written per split

REAL_DIR = os.environ.get(ENV)
needs_real = pytest.mark.skipif(not REAL_DIR, reason=f"set {ENV} to a folder with the four Fashion-MNIST .gz files")


def write_idx(path: Path, magic: int, shape: tuple[int, ...], payload: bytes) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
    path.write_bytes(gzip.compress(header + payload))


def official_format(folder: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four files as the authors lay them out, with random 28x28 images and every class."""
    rng = np.random.default_rng(seed)
    made = {}
    for split, n in N.items():
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.permutation(np.arange(n, dtype=np.uint8) % 10)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", 0x0803, images.shape, images.tobytes())
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", 0x0801, labels.shape, labels.tobytes())
        made[split] = images, labels
    return made


def spec_of(folder: Path) -> dict[str, data.FileSpec]:
    """What the four files in ``folder`` are: the role of the published sums, for written files."""
    out = {}
    for name in NAMES:
        blob = (folder / name).read_bytes()
        split, kind = name.split("-")[:2]
        out[name] = data.FileSpec(len(blob), hashlib.sha256(blob).hexdigest(), 0x0803 if kind == "images" else 0x0801,
                                  N[split], hashlib.md5(blob).hexdigest())
    return out


# ---------------------------------------------------------------- the official format


def test_a_folder_in_the_official_format_loads_as_784_pixels_in_the_unit_interval_and_int_labels(tmp_path):
    made = official_format(tmp_path)
    got = data.fashion_mnist(tmp_path, files=spec_of(tmp_path))
    for (x, y), split in ((got.train, "train"), (got.test, "t10k")):
        images, labels = made[split]
        assert x.shape == (N[split], 784) and x.dtype == np.float32 and y.dtype == np.int32
        np.testing.assert_array_equal(x, images.reshape(-1, 784) / np.float32(255))  # row-major, byte / 255
        np.testing.assert_array_equal(y, labels)


def test_the_environment_variable_names_the_folder(tmp_path, monkeypatch):
    official_format(tmp_path)
    monkeypatch.setenv(ENV, str(tmp_path))
    monkeypatch.delenv(data.MNIST_DIR_ENV, raising=False)  # not MNIST's variable
    got = data.fashion_mnist(download=False, files=spec_of(tmp_path))
    assert got.train_x.shape == (N["train"], 784)


def test_files_in_the_official_format_that_are_not_the_originals_fail_the_published_sums(tmp_path):
    official_format(tmp_path)
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz: \d+ bytes, expected 26421880") as err:
        data.fashion_mnist(tmp_path)
    assert str(err.value).endswith(FIX) and "\n" not in str(err.value)


# ---------------------------------------------------------------- damage: one line naming the file


def cut(blob: bytes) -> bytes:
    return blob[:-10]


def flip(blob: bytes) -> bytes:
    out = bytearray(blob)
    out[len(out) // 2] ^= 0x01
    return bytes(out)


# (file, damage, whether the spec is taken from the damaged files: the sums pass, the structure must not, says)
DAMAGE = [
    ("t10k-labels-idx1-ubyte.gz", "missing", False, r"t10k-labels-idx1-ubyte.gz: file not found"),
    ("train-images-idx3-ubyte.gz", "truncated", False,
     r"train-images-idx3-ubyte.gz: \d+ bytes, expected \d+ \(truncated or not the original file\)"),
    ("train-labels-idx1-ubyte.gz", "one altered byte", False, r"train-labels-idx1-ubyte.gz: SHA-256 mismatch"),
    ("train-labels-idx1-ubyte.gz", "wrong magic number", True,
     r"train-labels-idx1-ubyte.gz: IDX magic number 0x00000803, expected 0x00000801"),
    ("t10k-images-idx3-ubyte.gz", "header count disagrees with the data", True,
     r"t10k-images-idx3-ubyte.gz: IDX header says shape \(11, 28, 28\)"),
    ("train-labels-idx1-ubyte.gz", "wrong count", True, r"train-labels-idx1-ubyte.gz: 19 examples, expected 20"),
    ("t10k-labels-idx1-ubyte.gz", "label 10", True, r"t10k-labels-idx1-ubyte.gz: label 10 outside 0..9"),
    ("t10k-images-idx3-ubyte.gz", "not gzip", True, r"t10k-images-idx3-ubyte.gz: not a readable gzip file"),
]


@pytest.mark.parametrize("name, damage, resum, says", DAMAGE, ids=[d[1] for d in DAMAGE])
def test_each_kind_of_damage_is_one_data_error_line_naming_the_file_and_the_fix(tmp_path, name, damage, resum, says):
    official_format(tmp_path)
    files = spec_of(tmp_path)
    path = tmp_path / name
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(cut(path.read_bytes()))
    elif damage == "one altered byte":
        path.write_bytes(flip(path.read_bytes()))
    elif damage == "wrong magic number":
        write_idx(path, 0x0803, (20, 1, 1), bytes(20))  # an images header on a labels file
    elif damage == "header count disagrees with the data":
        write_idx(path, 0x0803, (11, 28, 28), bytes(10 * 28 * 28))
    elif damage == "wrong count":
        write_idx(path, 0x0801, (19,), bytes(19))
    elif damage == "label 10":
        write_idx(path, 0x0801, (10,), bytes([3] * 9 + [10]))
    else:
        path.write_bytes(b"not a gzip stream")
    if resum:
        files = {**files, name: spec_of(tmp_path)[name]}
    with pytest.raises(data.DataError, match=says) as err:
        data.fashion_mnist(tmp_path, download=False, files=files)
    assert str(err.value).startswith(str(path)) and str(err.value).endswith(FIX) and "\n" not in str(err.value)


def test_the_authors_md5_is_checked_as_well_as_the_sha256(tmp_path):
    official_format(tmp_path)
    files = spec_of(tmp_path)
    files["t10k-images-idx3-ubyte.gz"] = files["t10k-images-idx3-ubyte.gz"]._replace(md5="0" * 32)
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte.gz: MD5 mismatch"):
        data.fashion_mnist(tmp_path, files=files)


def test_a_spec_must_name_the_four_files(tmp_path):
    with pytest.raises(ValueError, match="a FileSpec for each of train-images-idx3-ubyte.gz"):
        data.fashion_mnist(tmp_path, files={"train-images-idx3-ubyte.gz": data.FASHION_MNIST_FILES[NAMES[0]]})


def test_no_folder_and_no_download_names_the_fashion_mnist_variable(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(data.DataError, match=rf"no Fashion-MNIST folder given: pass data_dir or set {ENV}"):
        data.fashion_mnist(download=False)


# ---------------------------------------------------------------- the published checksums


README_MD5 = {  # https://github.com/zalandoresearch/fashion-mnist#get-the-data
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def tfds_checksums(name: str) -> list[list[str]]:
    """Rows of tensorflow-datasets' url_checksums/<name>.txt, read without importing tfds."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tensorflow-datasets is not installed: its registered checksums cannot be compared")
    path = Path(next(iter(spec.submodule_search_locations))) / "url_checksums" / f"{name}.txt"
    return [line.split("\t") for line in path.read_text().splitlines() if line.strip()]


def test_the_published_sums_are_the_authors_md5_and_tfds_sizes_and_sha256():
    files = data.FASHION_MNIST_FILES
    assert {name: spec.md5 for name, spec in files.items()} == README_MD5
    rows = tfds_checksums("fashion_mnist")
    assert {url: (int(size), sha256, filename) for url, size, sha256, filename in rows} == {
        data.FASHION_MNIST_URL + name: (spec.size, spec.sha256, name) for name, spec in files.items()}
    assert {name: (spec.magic, spec.count) for name, spec in files.items()} == {
        name: (spec.magic, spec.count) for name, spec in data.FILES.items()}  # MNIST's layout exactly


# ---------------------------------------------------------------- downloading through tensorflow-datasets


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """An HTTP server on loopback serving a folder: the download path without the internet."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv(ENV, raising=False)
    yield served, f"http://127.0.0.1:{server.server_address[1]}/", server
    server.shutdown()
    server.server_close()


def test_a_download_is_verified_by_tfds_cached_and_reused(tmp_path, mirror):
    served, url, server = mirror
    made = official_format(served)
    files, cache = spec_of(served), tmp_path / "cache"
    got = data.fashion_mnist(cache_dir=cache, base_url=url, files=files)
    np.testing.assert_array_equal(got.test_y, made["t10k"][1])
    server.shutdown()  # the second load must come from the cache alone
    again = data.fashion_mnist(cache_dir=cache, base_url=url, files=files)
    np.testing.assert_array_equal(again.train_x, got.train_x)


def test_a_download_with_the_wrong_checksum_is_refused_naming_the_variable(tmp_path, mirror):
    served, url, _ = mirror
    official_format(served)
    files = {name: spec._replace(sha256="0" * 64) for name, spec in spec_of(served).items()}
    with pytest.raises(data.DataError, match=r"NonMatchingChecksumError: Artifact .*-ubyte.gz.*has wrong checksum") \
            as err:
        data.fashion_mnist(cache_dir=tmp_path / "cache", base_url=url, files=files)
    assert ENV in str(err.value) and "\n" not in str(err.value)


def test_offline_the_loader_fails_in_seconds_with_one_line_naming_the_local_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    t0 = time.monotonic()
    with pytest.raises(data.DataError) as err:  # .invalid never resolves (RFC 6761)
        data.fashion_mnist(cache_dir=tmp_path / "cache", base_url="https://fashion.invalid/")
    assert time.monotonic() - t0 < 10
    assert str(err.value).startswith("cannot download Fashion-MNIST from https://fashion.invalid/: fashion.invalid:443 "
                                     "is unreachable")
    assert str(err.value).endswith(f"on an offline machine set {ENV} to a folder with the four original "
                                   "Fashion-MNIST .gz files")
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- the data set value


def test_the_fashion_mnist_data_set_is_canonical_and_loads_through_the_checked_loader(tmp_path, monkeypatch):
    assert ds.fashion_mnist("/nonexistent").hashed() == "fashion_mnist"  # nothing is loaded to hash it
    made = official_format(tmp_path)
    monkeypatch.setattr(data, "fashion_mnist", functools.partial(data.fashion_mnist, files=spec_of(tmp_path)))
    d = ds.fashion_mnist(str(tmp_path))
    (x, y), _ = d.arrays()
    assert d.examples_shape == (784,) and d.classes == 10 and d.canonical
    np.testing.assert_array_equal(y, made["train"][1])


def test_the_published_sums_refuse_written_files_when_the_data_set_is_loaded(tmp_path):
    official_format(tmp_path)
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz"):
        ds.fashion_mnist(str(tmp_path)).arrays()


# ---------------------------------------------------------------- the real data


@needs_real
def test_the_real_files_hold_60000_and_10000_images_6000_and_1000_of_each_class():
    real = data.fashion_mnist(REAL_DIR, download=False)
    assert real.train_x.shape == (60000, 784) and real.test_x.shape == (10000, 784)
    assert np.all(np.bincount(real.train_y) == 6000) and np.all(np.bincount(real.test_y) == 1000)
    assert real.train_x.min() == 0.0 and real.train_x.max() == 1.0
