"""The CIFAR-10 loader: the official binary version, from a folder, the archive or a download,
and one clear error line for any file that is not it.

The real data cannot be fetched here, so one module-scoped fixture writes the six batches in
the exact official format (10,000 records of 1 label byte + 1,024 red, 1,024 green, 1,024 blue
bytes each, balanced classes) with random pixels, and packs them as ``cifar-10-binary.tar.gz``
(stored blocks: the same gzip'd tar, written fast). Tests that need the real files read them
from ``$LTH_CIFAR10_DIR``; without it they are skipped.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import io
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pytest

from lth_jax import data
from lth_jax import datasets as ds

TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
BATCHES = (*TRAIN, "test_batch.bin")
BATCH_BYTES = 30_730_000

REAL_DIR = os.environ.get(data.CIFAR10_DIR_ENV)
needs_real = pytest.mark.skipif(
    not REAL_DIR, reason=f"set {data.CIFAR10_DIR_ENV} to a folder with cifar-10-binary.tar.gz or its six .bin files")


class Official(NamedTuple):
    unpacked: Path            # holds cifar-10-batches-bin/, as `tar xzf` leaves it
    folder: Path              # cifar-10-batches-bin/ itself
    archive: Path             # .../cifar-10-binary.tar.gz
    spec: data.ArchiveSpec    # its size and sums (the published ones are the real archive's)
    raw: dict[str, bytes]     # each batch file's bytes


def sums(path: Path) -> data.ArchiveSpec:
    blob = path.read_bytes()
    return data.ArchiveSpec(len(blob), hashlib.sha256(blob).hexdigest(), hashlib.md5(blob).hexdigest())


@pytest.fixture
def scratch(tmp_path) -> Iterator[Path]:
    """``tmp_path``, removed after the test: these files are tens of MB, and pytest keeps three sessions'."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Iterator[Official]:
    root = tmp_path_factory.mktemp("cifar10")
    rng = np.random.default_rng(0)
    folder = root / "unpacked" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    train_y = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), 5000))  # 5,000 of each class
    labels = {name: train_y[i * 10000:(i + 1) * 10000] for i, name in enumerate(TRAIN)}
    labels["test_batch.bin"] = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), 1000))
    raw = {}
    for name, y in labels.items():
        records = rng.integers(0, 256, (10000, 3073), dtype=np.uint8)
        records[:, 0] = y
        raw[name] = records.tobytes()
        (folder / name).write_bytes(raw[name])
    (folder / "batches.meta.txt").write_text("\n".join(data.CIFAR10_CLASSES) + "\n\n")
    archive = root / "archive" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz", compresslevel=0) as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    yield Official(folder.parent, folder, archive, sums(archive), raw)
    shutil.rmtree(root, ignore_errors=True)


def expected(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A batch file decoded as the authors document it: per record a label byte, then R, G, B planes."""
    records = np.frombuffer(raw, np.uint8).reshape(10000, 3073)
    red, green, blue = (records[:, 1 + 1024 * c:1 + 1024 * (c + 1)].reshape(10000, 32, 32) for c in range(3))
    return np.stack([red, green, blue], axis=-1).astype(np.float32) / np.float32(255), records[:, 0]


@pytest.fixture(scope="module")
def loaded(official) -> data.CIFAR10:
    """Loaded as a user of an unpacked archive would: the variable names the folder above
    ``cifar-10-batches-bin/`` (``data_dir=`` the batch folder itself is the data set test's)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.CIFAR10_DIR_ENV, str(official.unpacked))
        return data.cifar10(download=False)


def assert_same(a: data.CIFAR10, b: data.CIFAR10) -> None:
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def damaged(official: Official, tmp_path: Path, name: str, content: bytes | None) -> Path:
    """A folder of links to the six files, ``name`` replaced by ``content`` (None: left out)."""
    folder = tmp_path / "batches"
    folder.mkdir()
    for batch in BATCHES:
        if batch != name:
            (folder / batch).symlink_to(official.folder / batch)
    if content is not None:
        (folder / name).write_bytes(content)
    return folder


def with_label(raw: bytes, record: int, label: int) -> bytes:
    out = bytearray(raw)
    out[record * 3073] = label
    return bytes(out)


# ---------------------------------------------------------------- the official format


def test_a_folder_of_the_six_official_binary_batches_loads_as_50000_plus_10000_32x32x3_images(official, loaded):
    assert loaded.train_x.shape == (50000, 32, 32, 3) and loaded.train_x.dtype == np.float32
    assert loaded.train_y.shape == (50000,) and loaded.train_y.dtype == np.int32
    assert loaded.test_x.shape == (10000, 32, 32, 3) and loaded.test_x.dtype == np.float32
    assert loaded.test_y.shape == (10000,) and loaded.test_y.dtype == np.int32
    assert loaded.train == (loaded.train_x, loaded.train_y) and loaded.test == (loaded.test_x, loaded.test_y)
    for i, name in enumerate(BATCHES):
        x, y = (loaded.test_x, loaded.test_y) if name == "test_batch.bin" else (
            loaded.train_x[i * 10000:(i + 1) * 10000], loaded.train_y[i * 10000:(i + 1) * 10000])
        want_x, want_y = expected(official.raw[name])
        np.testing.assert_array_equal(x, want_x)  # batches in order, each pixel byte / 255
        np.testing.assert_array_equal(y, want_y)


def test_each_record_is_a_label_byte_then_red_green_and_blue_planes_each_row_major(official, loaded):
    raw = official.raw["data_batch_2.bin"]
    for r in (0, 1, 9999):
        base = r * 3073
        image = loaded.train_x[10000 + r]
        assert loaded.train_y[10000 + r] == raw[base]
        assert image[0, 0, 0] == raw[base + 1] / np.float32(255)         # red, row 0, column 0
        assert image[0, 1, 0] == raw[base + 2] / np.float32(255)         # red, row 0, column 1
        assert image[1, 0, 0] == raw[base + 1 + 32] / np.float32(255)    # red, row 1
        assert image[0, 0, 1] == raw[base + 1 + 1024] / np.float32(255)  # green
        assert image[31, 31, 2] == raw[base + 3072] / np.float32(255)    # blue, last pixel


def small_archive(path: Path, members: dict[str, bytes]) -> data.ArchiveSpec:
    """A .tar.gz of ``members`` (name -> bytes); its size and sums."""
    with tarfile.open(path, "w:gz", compresslevel=0) as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return sums(path)


def test_the_official_archive_is_read_in_memory_after_its_checksums_and_loads_the_same(official, loaded):
    before = sorted(official.archive.parent.iterdir())
    assert_same(data.cifar10(official.archive, archive=official.spec), loaded)  # data_dir: the archive itself
    batches = data.read_archive(official.archive, official.spec)
    assert {name: blob for name, (_, blob) in batches.items()} == official.raw  # each member, byte for byte
    assert sorted(official.archive.parent.iterdir()) == before  # nothing extracted


def test_a_folder_holding_an_archive_that_is_not_the_published_one_is_refused_by_its_size(official, scratch):
    with pytest.raises(data.DataError, match=r"cifar-10-binary.tar.gz: \d+ bytes, expected 170052171") as err:
        data.cifar10(official.archive.parent)  # the published size, SHA-256 and MD5 by default
    assert data.CIFAR10_DIR_ENV in str(err.value) and "\n" not in str(err.value)
    both = damaged(official, scratch, "none", None)  # the six loose files too: the checksummed archive wins
    (both / "cifar-10-binary.tar.gz").symlink_to(official.archive)
    with pytest.raises(data.DataError, match=r"cifar-10-binary.tar.gz: \d+ bytes, expected 170052171"):
        data.cifar10(both)


def test_one_altered_byte_of_the_archive_fails_its_sha256_and_its_md5(tmp_path):
    path = tmp_path / "cifar-10-binary.tar.gz"
    spec = small_archive(path, {"cifar-10-batches-bin/batches.meta.txt": b"airplane\n"})
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match=r"cifar-10-binary.tar.gz: SHA-256 mismatch"):
        data.cifar10(tmp_path, archive=spec)
    with pytest.raises(data.DataError, match=r"cifar-10-binary.tar.gz: MD5 mismatch"):
        data.cifar10(tmp_path, archive=spec._replace(sha256=sums(path).sha256))


def test_an_archive_without_one_of_the_six_batches_names_the_missing_member(official, scratch):
    path = scratch / "cifar-10-binary.tar.gz"
    members = {f"cifar-10-batches-bin/{name}": official.raw[name] for name in TRAIN[:2]}
    spec = small_archive(path, members)
    with pytest.raises(data.DataError, match=r"the archive has no cifar-10-batches-bin/data_batch_3.bin") as err:
        data.cifar10(path, archive=spec)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_a_member_of_the_wrong_size_is_named_inside_the_archive(official, scratch):
    path = scratch / "cifar-10-binary.tar.gz"
    spec = small_archive(path, {"cifar-10-batches-bin/data_batch_1.bin": official.raw["data_batch_1.bin"][:-3073]})
    with pytest.raises(data.DataError, match=r"cifar-10-binary.tar.gz \(cifar-10-batches-bin/data_batch_1.bin\): "
                                             r"30726927 bytes, expected 30730000"):
        data.cifar10(path, archive=spec)


# ---------------------------------------------------------------- loose files that are not the original


@pytest.mark.parametrize("name, damage, says", [
    ("data_batch_3.bin", "missing", r"data_batch_3.bin: file not found"),
    ("test_batch.bin", "truncated", r"test_batch.bin: 30729999 bytes, expected 30730000 .*truncated"),
    ("data_batch_1.bin", "one record too many", r"data_batch_1.bin: 30733073 bytes, expected 30730000"),
    ("data_batch_2.bin", "label 10", r"data_batch_2.bin: record 17 has label 10, outside 0..9"),
    ("test_batch.bin", "unbalanced test", r"test_batch.bin holds \[\d+, .*\] images .* exactly 1000 of each"),
    ("data_batch_4.bin", "unbalanced train", r"data_batch_1.bin .. data_batch_5.bin hold \[.*exactly 5000 of each"),
])
def test_a_missing_wrong_sized_or_wrongly_labelled_batch_is_one_line_naming_the_file(official, scratch, name,
                                                                                     damage, says):
    raw = official.raw[name]
    first_label = raw[0]
    content = {"missing": None, "truncated": raw[:-1], "one record too many": raw + raw[:3073],
               "label 10": with_label(raw, 17, 10),
               "unbalanced test": with_label(raw, 0, (first_label + 1) % 10),
               "unbalanced train": with_label(raw, 0, (first_label + 1) % 10)}[damage]
    folder = damaged(official, scratch, name, content)
    with pytest.raises(data.DataError, match=says) as err:
        data.cifar10(folder, download=False)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).endswith(f"or point {data.CIFAR10_DIR_ENV} at a folder with cifar-10-binary.tar.gz or "
                                   "the six .bin files it unpacks to")


def test_a_stray_bin_file_such_as_cifar_100s_is_refused_so_the_folder_holds_exactly_the_six(official, scratch):
    folder = damaged(official, scratch, "train.bin", b"\x00\x00" + bytes(3072))
    with pytest.raises(data.DataError, match=r"train.bin: not one of CIFAR-10's six binary batches"):
        data.cifar10(folder, download=False)


def test_a_folder_without_cifar_10_says_what_it_should_hold(tmp_path):
    with pytest.raises(data.DataError, match=r"no CIFAR-10 here: expected cifar-10-binary.tar.gz, its folder "
                                             r"cifar-10-batches-bin/ or the six files data_batch_1.bin"):
        data.cifar10(tmp_path)
    with pytest.raises(data.DataError, match=rf"nowhere: not found; point {data.CIFAR10_DIR_ENV} at"):
        data.cifar10(tmp_path / "nowhere")


def test_no_folder_and_no_download_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv(data.CIFAR10_DIR_ENV, raising=False)
    with pytest.raises(data.DataError, match=rf"no CIFAR-10 folder given: .* set {data.CIFAR10_DIR_ENV}"):
        data.cifar10(download=False)


# ---------------------------------------------------------------- downloading through tensorflow-datasets


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_a_download_is_verified_cached_reused_and_rechecked_on_every_load(official, loaded, scratch, monkeypatch):
    served = scratch / "served"
    served.mkdir()
    os.link(official.archive, served / "cifar-10-binary.tar.gz")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv(data.CIFAR10_DIR_ENV, raising=False)
    url, cache = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-binary.tar.gz", scratch / "cache"
    try:
        assert_same(data.cifar10(cache_dir=cache, url=url, archive=official.spec), loaded)
    finally:
        server.shutdown()
        server.server_close()
    again = data.cifar10(cache_dir=cache, url=url, archive=official.spec)  # from the cache alone
    np.testing.assert_array_equal(again.test_y, loaded.test_y)
    (cached,) = (p for p in cache.rglob("*cifar-10-binary*") if p.is_file() and not p.name.endswith(".INFO"))
    cached.write_bytes(cached.read_bytes()[:-1])  # tfds trusts its cache; the loader does not
    with pytest.raises(data.DataError, match=r"bytes, expected .*delete it so that tensorflow-datasets downloads"):
        data.cifar10(cache_dir=cache, url=url, archive=official.spec)


def test_offline_the_loader_fails_in_seconds_with_one_line_naming_the_local_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(data.CIFAR10_DIR_ENV, raising=False)
    t0 = time.monotonic()
    with pytest.raises(data.DataError) as err:  # .invalid never resolves (RFC 6761)
        data.cifar10(cache_dir=tmp_path / "cache", url="https://cifar.invalid/cifar-10-binary.tar.gz")
    assert time.monotonic() - t0 < 10
    message = str(err.value)
    assert message.startswith("cannot download CIFAR-10 from https://cifar.invalid/cifar-10-binary.tar.gz: "
                              "cifar.invalid:443 is unreachable") and "\n" not in message
    assert message.endswith(f"on an offline machine set {data.CIFAR10_DIR_ENV} to a folder with "
                            "cifar-10-binary.tar.gz or the six .bin files it unpacks to")
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- the published checksums


def tfds_checksums(name: str) -> list[list[str]]:
    """Rows of tensorflow-datasets' url_checksums/<name>.txt, read without importing tfds."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tensorflow-datasets is not installed: its registered checksums cannot be compared")
    path = Path(next(iter(spec.submodule_search_locations))) / "url_checksums" / f"{name}.txt"
    return [line.split("\t") for line in path.read_text().splitlines() if line.strip()]


def test_the_archive_checksums_are_the_authors_md5_and_tfds_size_and_sha256():
    # https://www.cs.toronto.edu/~kriz/cifar.html, "CIFAR-10 binary version (suitable for C programs)"
    assert data.CIFAR10_ARCHIVE.md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert data.CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    [[url, size, sha256, filename]] = tfds_checksums("cifar10")
    assert (url, int(size), sha256, filename) == (data.CIFAR10_URL, data.CIFAR10_ARCHIVE.size,
                                                  data.CIFAR10_ARCHIVE.sha256, "cifar-10-binary.tar.gz")


# ---------------------------------------------------------------- the data set value


def test_the_cifar10_data_set_is_canonical_with_the_standard_crop_flip_and_normalisation():
    d = ds.cifar10("/nonexistent")  # nothing is loaded to hash it
    assert d.name == "cifar10" and d.canonical
    assert d.hashed() == {"name": "cifar10",
                          "augment": {"kind": "compose", "steps": [{"kind": "random_crop", "padding": 4},
                                                                   {"kind": "horizontal_flip", "p": 0.5}]},
                          "mean": list(data.CIFAR10_MEAN), "std": list(data.CIFAR10_STD)}
    assert ds.cifar10(augment=None, normalise=False).hashed() == "cifar10"
    assert ds.cifar10(normalise=False).hashed() != d.hashed() != ds.cifar10(augment=None).hashed()
    with pytest.raises(ValueError, match="normalise=False"):
        ds.cifar10(mean=(0.5,) * 3, std=(0.25,) * 3)


def test_the_data_set_loads_nhwc_images_from_the_batch_folder_and_its_pipeline_keeps_their_shape(official, loaded):
    d = ds.cifar10(str(official.folder))
    assert d.examples_shape == (32, 32, 3) and d.classes == 10
    (x, y), (tx, ty) = d.arrays()
    assert_same(data.CIFAR10(x, y, tx, ty), loaded)
    out, out_y = jax.jit(d.pipeline().train)(jax.random.key(0), x[:8], y[:8])
    assert out.shape == (8, 32, 32, 3) and np.array_equal(out_y, y[:8])


# ---------------------------------------------------------------- the real data


@needs_real
def test_the_real_data_has_the_published_class_balance_and_channel_statistics():
    real = data.cifar10(REAL_DIR, download=False)
    assert real.train_x.shape == (50000, 32, 32, 3) and real.test_x.shape == (10000, 32, 32, 3)
    assert np.all(np.bincount(real.train_y) == 5000) and np.all(np.bincount(real.test_y) == 1000)
    mean, std = ds.channel_stats(real.train_x)
    np.testing.assert_allclose(mean, data.CIFAR10_MEAN, atol=1e-5)
    np.testing.assert_allclose(std, data.CIFAR10_STD, atol=1e-5)

