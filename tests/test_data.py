"""The MNIST loader: the real data as the paper uses it, and one clear error for any bad file.

Tests that need the real files read them from ``$LTH_MNIST_DIR`` (CI sets it to
``../shared/mnist``); without it they are skipped, never pointed at a guessed path.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lth_jax import data

REAL_DIR = os.environ.get(data.MNIST_DIR_ENV)
needs_real = pytest.mark.skipif(
    not REAL_DIR, reason=f"set {data.MNIST_DIR_ENV} to a folder with the four original MNIST .gz files")


@pytest.fixture(scope="module")
def real() -> data.MNIST:
    return data.mnist(REAL_DIR)


def copy_of_real(tmp_path: Path) -> Path:
    """A private copy of the real folder, safe to damage."""
    out = tmp_path / "mnist"
    out.mkdir()
    for name in data.FILES:
        shutil.copyfile(Path(REAL_DIR) / name, out / name)
    return out


# ---------------------------------------------------------------- the real data


@needs_real
def test_environment_variable_names_the_folder(monkeypatch, real):
    monkeypatch.setenv(data.MNIST_DIR_ENV, REAL_DIR)
    again = data.mnist(download=False)
    assert all(np.array_equal(a, b) for a, b in zip(again, real, strict=True))


@needs_real
def test_sixty_thousand_training_and_ten_thousand_test_images_of_784_pixels(real):
    assert real.train_x.shape == (60000, 784) and real.train_x.dtype == np.float32
    assert real.train_y.shape == (60000,) and real.train_y.dtype == np.int32
    assert real.test_x.shape == (10000, 784) and real.test_x.dtype == np.float32
    assert real.test_y.shape == (10000,) and real.test_y.dtype == np.int32
    assert real.train == (real.train_x, real.train_y) and real.test == (real.test_x, real.test_y)


@needs_real
def test_pixels_are_scaled_to_the_unit_interval(real):
    # (That each value is byte/255 exactly is specified on hand-made files below.)
    for x in (real.train_x, real.test_x):
        assert x.min() == 0.0 and x.max() == 1.0
    # The dataset's published training-set statistics (README of the MNIST folder).
    assert real.train_x.mean() == pytest.approx(0.1307, abs=1e-4)
    assert real.train_x.std() == pytest.approx(0.3081, abs=1e-4)


@needs_real
def test_every_digit_appears_in_roughly_a_tenth_of_each_split(real):
    for y in (real.train_y, real.test_y):
        counts = np.bincount(y, minlength=10)
        assert len(counts) == 10 and counts.sum() == len(y)
        assert np.all(counts > 0.08 * len(y)) and np.all(counts < 0.12 * len(y))


# ---------------------------------------------------------------- damaged files


@needs_real
def test_a_truncated_file_is_named_with_what_to_do(tmp_path):
    folder = copy_of_real(tmp_path)
    victim = folder / "t10k-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-1000])
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz") as err:
        data.mnist(folder)
    assert "truncated" in str(err.value) and data.MNIST_DIR_ENV in str(err.value)
    assert "\n" not in str(err.value)


@needs_real
def test_one_altered_byte_fails_the_checksum(tmp_path):
    folder = copy_of_real(tmp_path)
    victim = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match=r"train-labels-idx1-ubyte.gz: SHA-256 mismatch"):
        data.mnist(folder)


def test_a_missing_file_is_named_with_what_to_do(tmp_path):
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz: file not found") as err:
        data.mnist(tmp_path)
    assert data.MNIST_DIR_ENV in str(err.value)


def test_no_folder_and_no_download_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv(data.MNIST_DIR_ENV, raising=False)
    with pytest.raises(data.DataError, match=data.MNIST_DIR_ENV):
        data.mnist(download=False)


# ---------------------------------------------------------------- the IDX parser, on hand-made files


def write_idx(path: Path, magic: int, shape: tuple[int, ...], payload: bytes) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
    path.write_bytes(gzip.compress(header + payload))


def hand_made(folder: Path, rng: np.random.Generator, n_train: int = 3, n_test: int = 2) -> dict:
    """A tiny MNIST-shaped set with known bytes (only loadable with verify=False)."""
    made = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 27, 27] = 255, 0
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", 0x0803, images.shape, images.tobytes())
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", 0x0801, labels.shape, labels.tobytes())
        made[split] = images, labels
    return made


def test_parser_reads_idx_bytes_row_major_and_divides_by_255(tmp_path):
    made = hand_made(tmp_path, np.random.default_rng(0))
    got = data.mnist(tmp_path, verify=False)
    for (x, y), split in ((got.train, "train"), (got.test, "t10k")):
        images, labels = made[split]
        np.testing.assert_array_equal(x, images.reshape(len(images), 784) / np.float32(255))
        np.testing.assert_array_equal(y, labels)
        assert x[0, 0] == 1.0 and x[0, 783] == 0.0


def test_hand_made_files_fail_the_checksum_unless_verification_is_off(tmp_path):
    hand_made(tmp_path, np.random.default_rng(0))
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz"):
        data.mnist(tmp_path)


def test_a_wrong_magic_number_is_refused(tmp_path):
    hand_made(tmp_path, np.random.default_rng(0))
    labels = np.zeros(3, np.uint8)
    # An images magic number (3-D) where a labels file (1-D) belongs.
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x0803, (3, 1, 1), labels.tobytes())
    with pytest.raises(data.DataError, match=r"train-labels-idx1-ubyte.gz: IDX magic number 0x00000803, expected"):
        data.mnist(tmp_path, verify=False)


def test_a_header_that_disagrees_with_the_data_is_refused(tmp_path):
    hand_made(tmp_path, np.random.default_rng(0))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x0803, (2, 28, 28), bytes(28 * 28))  # one image, says two
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte.gz: IDX header says shape \(2, 28, 28\)"):
        data.mnist(tmp_path, verify=False)


def test_images_and_labels_must_agree_in_number(tmp_path):
    hand_made(tmp_path, np.random.default_rng(0))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x0801, (2,), bytes(2))
    with pytest.raises(data.DataError, match="3 images but .*train-labels-idx1-ubyte.gz 2 labels"):
        data.mnist(tmp_path, verify=False)


def test_a_label_outside_0_to_9_is_refused(tmp_path):
    hand_made(tmp_path, np.random.default_rng(0))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 0x0801, (2,), bytes([3, 10]))
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz: label 10 outside 0..9"):
        data.mnist(tmp_path, verify=False)


def test_a_file_that_is_not_gzip_is_refused(tmp_path):
    hand_made(tmp_path, np.random.default_rng(0))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not a gzip stream")
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz: not a readable gzip file"):
        data.mnist(tmp_path, verify=False)


# ---------------------------------------------------------------- downloading through tensorflow-datasets


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """An HTTP server on loopback serving a folder: the download path without the internet."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv(data.MNIST_DIR_ENV, raising=False)
    yield served, f"http://127.0.0.1:{server.server_address[1]}/", server
    server.shutdown()
    server.server_close()


@needs_real
def test_download_verifies_caches_and_reuses_the_original_files(tmp_path, mirror, real):
    served, url, server = mirror
    for name in data.FILES:
        shutil.copyfile(Path(REAL_DIR) / name, served / name)
    cache = tmp_path / "cache"
    got = data.mnist(cache_dir=cache, base_url=url)
    assert all(np.array_equal(a, b) for a, b in zip(got, real, strict=True))
    server.shutdown()  # the second load must come from the cache alone
    again = data.mnist(cache_dir=cache, base_url=url)
    np.testing.assert_array_equal(again.test_y, real.test_y)
    # tfds trusts its cache; the loader does not: a cached file damaged since is named, with the fix.
    cached = data.download_files(cache, url)["t10k-labels-idx1-ubyte.gz"]
    cached.write_bytes(cached.read_bytes()[:-1])
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte.*truncated.*delete it"):
        data.mnist(cache_dir=cache, base_url=url)


def test_a_download_with_the_wrong_checksum_is_refused(tmp_path, mirror):
    served, url, _ = mirror
    for name in data.FILES:
        (served / name).write_bytes(b"an impostor " + name.encode())
    with pytest.raises(data.DataError, match=r"NonMatchingChecksumError: Artifact .*-ubyte.gz.*has wrong checksum") \
            as err:
        data.mnist(cache_dir=tmp_path / "cache", base_url=url)
    assert data.MNIST_DIR_ENV in str(err.value)


@pytest.mark.parametrize("damage, says", [("deflate data", "not a readable gzip file (zlib.error: "),
                                          ("cut short", "not a readable gzip file (EOFError: "),
                                          ("a folder", "cannot read (Is a directory)")])
def test_an_unreadable_file_is_a_data_error_even_without_verification(tmp_path, damage, says):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    packed = gzip.compress((0x0801).to_bytes(4, "big") + (4096).to_bytes(4, "big") + bytes(range(256)) * 16)
    if damage == "deflate data":  # zlib.error inside gzip
        path.write_bytes(packed[:10] + b"\xff" * 20 + packed[30:])  # a reserved deflate block type
    elif damage == "cut short":  # EOFError inside gzip
        path.write_bytes(packed[:-20])
    else:
        path.mkdir()
    with pytest.raises(data.DataError) as err:
        data.parse_idx(path, 0x0801)
    assert str(err.value).startswith(f"{path}: {says}") and "\n" not in str(err.value)


# ---------------------------------------------------------------- offline


OFFLINE_FIX = f"set {data.MNIST_DIR_ENV} (drivers: --mnist_dir) to a folder with the four original MNIST .gz files"


def test_an_unresolvable_server_fails_in_seconds_with_one_line_naming_the_local_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(data.MNIST_DIR_ENV, raising=False)
    t0 = time.monotonic()
    with pytest.raises(data.DataError) as err:  # .invalid never resolves (RFC 6761), networked or not
        data.mnist(cache_dir=tmp_path / "cache", base_url="https://mnist.invalid/")
    assert time.monotonic() - t0 < 10
    assert str(err.value).startswith("cannot download MNIST from https://mnist.invalid/: mnist.invalid:443 is "
                                     "unreachable") and str(err.value).endswith(OFFLINE_FIX)
    assert not (tmp_path / "cache").exists()  # tfds was never started


def test_a_server_that_does_not_answer_is_given_up_after_the_probe_timeout(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(30))
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    t0 = time.monotonic()
    assert data.probe("https://example.org/mnist/", timeout=0.2) == "example.org:443 gave no answer within 0.2 s"
    assert time.monotonic() - t0 < 2


def test_without_a_folder_on_this_offline_machine_the_loader_stops_in_seconds(tmp_path):
    if data.probe(data.MNIST_URL) is None:
        pytest.skip(f"{data.MNIST_URL} is reachable from here: the offline case is specified with .invalid above")
    env = {k: v for k, v in os.environ.items() if k not in (data.MNIST_DIR_ENV, "TFDS_DATA_DIR")}
    env["HOME"] = str(tmp_path)  # no download cache of tfds to fall back on
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "from lth_jax import data; data.mnist()"], env=env, timeout=120,
                          capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert time.monotonic() - t0 < 30  # (importing JAX takes most of it)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith("lth_jax.data.DataError: cannot download MNIST")
    assert last.endswith(OFFLINE_FIX) and "Retrying" not in done.stderr
