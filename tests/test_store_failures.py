"""Stored results can be trusted: damage is named in one line, a run directory has one writer,
killed writes leave nothing that lasts, and file-system failures are one line naming the path.

Processes that take locks or get killed load the ``lth_jax/store`` package on its own (it needs
only numpy), so each starts in a fraction of a second instead of importing JAX.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lth_jax import store

STORE_DIR = Path(store.__file__).parent
PRELUDE = f"""
import importlib, json, os, sys, time, types
from pathlib import Path
import numpy as np
package = types.ModuleType("lth_jax")  # the package's folder without its __init__ (which imports JAX)
package.__path__ = [{str(STORE_DIR.parent)!r}]
sys.modules["lth_jax"] = package
store = importlib.import_module("lth_jax.store")
assert "jax" not in sys.modules
"""


def level_record(path: Path) -> None:
    """A record shaped like an MNIST level: masks, trained weights and curves, with its metrics."""
    rng = np.random.default_rng(0)
    params = {"Dense_0": {"kernel": rng.normal(size=(2, 6, 4)).astype(np.float32),
                          "bias": np.zeros((2, 4), np.float32)}}
    masks = {"Dense_0": {"kernel": rng.random((2, 6, 4)) < 0.5}}
    arrays = {**store.flatten(masks, "masks"), **store.flatten(params, "trained"),
              "curves/accuracy": rng.random((2, 3, 5)), "curves/diverged_at": np.full((2, 3), -1)}
    store.save_level(path, "p50", arrays, {"order": -50000, "percent_nominal": 50.0, "roles": {"ticket": {}}})


def init_record(path: Path) -> None:
    """A record shaped like a run's ``init``: the initial weights per seed."""
    init = {"Dense_0": {"kernel": np.random.default_rng(1).normal(size=(2, 6, 4)).astype(np.float32)}}
    store.save_level(path, "init", store.flatten(init, "init"), {"order": -10**9, "seeds": [0, 1]})


RECORDS = {"p50": level_record, "init": init_record}


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])


def garbage(file: Path) -> None:
    file.write_bytes(b"\xff" + np.random.default_rng(2).bytes(file.stat().st_size))


def empty(file: Path) -> None:
    file.write_bytes(b"")


def wrong_checksum(file: Path) -> None:
    """Well-formed content that differs from what the checksum was taken of."""
    if file.suffix == ".json":
        body = json.loads(file.read_text())
        body["order"] += 1
        file.write_text(json.dumps(body))
    else:
        arrays = store.read_npz(file)
        key = sorted(arrays)[0]
        arrays[key] = np.logical_not(arrays[key]) if arrays[key].dtype == bool else arrays[key] + 1
        np.savez_compressed(file, **arrays)


CORRUPTIONS = {  # damage -> what the line says, for the .json and for the .npz
    "truncated": (truncate, "cut short", "truncated or damaged zip archive"),
    "garbage": (garbage, "not JSON text (garbage bytes)", "not an npz archive (garbage bytes)"),
    "empty": (empty, "empty file", "empty file"),
    "wrong checksum": (wrong_checksum, "contents do not match the checksum", "arrays do not match the checksum"),
}


@pytest.mark.parametrize("record", sorted(RECORDS))
@pytest.mark.parametrize("suffix", [".json", ".npz"])
@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_each_damage_to_either_file_is_named_in_one_line_and_a_fresh_save_is_trusted_again(
        tmp_path, record, suffix, damage):
    RECORDS[record](tmp_path)
    assert store.done(tmp_path, record) and store.problem(tmp_path, record) is None
    corrupt, says_json, says_npz = CORRUPTIONS[damage]
    file = tmp_path / f"{record}{suffix}"
    corrupt(file)
    line = store.problem(tmp_path, record)
    assert line.startswith(f"{file}: {says_json if suffix == '.json' else says_npz}") and "\n" not in line
    assert not store.done(tmp_path, record)
    assert record not in store.levels(tmp_path) and store.problems(tmp_path) == {record: line}
    for arrays in (True, False):  # reading only the metrics still refuses a damaged npz
        with pytest.raises(store.CorruptRecord) as err:
            store.load_level(tmp_path, record, arrays=arrays)
        assert str(err.value) == line
    RECORDS[record](tmp_path)  # what a resumed run does: store the record again
    assert store.done(tmp_path, record) and store.problem(tmp_path, record) is None
    assert store.levels(tmp_path) == [record]


def test_a_pickle_in_place_of_the_arrays_is_refused_unread(tmp_path):
    init_record(tmp_path)
    np.savez(tmp_path / "init.npz", x=np.array([{"a": 1}], dtype=object))
    assert store.problem(tmp_path, "init") == (f"{tmp_path / 'init.npz'}: holds pickled (object) data, "
                                               "which the store never writes")


def test_a_half_stored_record_is_named_and_an_absent_one_is_no_problem(tmp_path):
    level_record(tmp_path)
    (tmp_path / "p50.json").unlink()  # killed between the npz and the json
    assert store.problem(tmp_path, "p50").startswith(f"{tmp_path / 'p50.json'}: missing beside p50.npz")
    (tmp_path / "p50.npz").unlink()
    assert store.problem(tmp_path, "p50") is None and not store.done(tmp_path, "p50")


def test_a_garbage_json_does_not_stop_the_listing_of_the_good_records(tmp_path):
    level_record(tmp_path)
    init_record(tmp_path)
    (tmp_path / "p50.json").write_bytes(b"\x00\x9f garbage")
    assert store.levels(tmp_path) == ["init"]


def test_a_damage_after_verification_is_still_seen_by_the_same_process(tmp_path):
    level_record(tmp_path)
    old = time.time() - 60  # files as a resumed run finds them: written a while ago
    os.utime(tmp_path / "p50.npz", (old, old))
    assert store.done(tmp_path, "p50")  # verified (and remembered as verified while unchanged)
    wrong_checksum(tmp_path / "p50.npz")
    assert not store.done(tmp_path, "p50")
    with pytest.raises(store.CorruptRecord, match="arrays do not match"):
        store.load_level(tmp_path, "p50", arrays=False)


# ---------------------------------------------------------------- one run per directory


def holder(path: Path, *extra: str) -> subprocess.Popen:
    """A process that takes the lock of ``path``, says "held", and keeps it until its stdin closes."""
    code = PRELUDE + textwrap.dedent(f"""
        with store.locked({str(path)!r}, wait=False):
            print("held", flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def test_a_second_run_of_the_same_settings_is_told_the_holders_pid_or_waits_for_it(tmp_path):
    run = tmp_path / "oneshot-abc"
    proc = holder(run)
    try:
        assert (run / ".lock").read_text().strip() == str(proc.pid)
        with pytest.raises(store.StoreError, match=f"^{run} is in use by another run \\(pid {proc.pid}\\)$"):
            with store.locked(run, wait=False):
                pass
        with store.locked(tmp_path / "oneshot-def", wait=False):  # other settings proceed meanwhile
            pass
        said, entered = [], threading.Event()

        def second_run():
            with store.locked(run, on_wait=said.append):
                entered.set()

        waiter = threading.Thread(target=second_run)
        waiter.start()
        assert not entered.wait(0.5)  # still waiting while the first run holds the directory
        assert said == [f"waiting for the other run of {run} (pid {proc.pid}) to finish"]
    finally:
        proc.stdin.close()
        proc.wait(10)
    waiter.join(10)
    assert entered.is_set() and said == [f"waiting for the other run of {run} (pid {proc.pid}) to finish"]


def test_a_killed_holder_releases_the_directory(tmp_path):
    proc = holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with store.locked(tmp_path, wait=False):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def test_the_lock_is_reentrant_within_a_process_and_released_by_the_outermost_exit(tmp_path):
    with store.locked(tmp_path, wait=False):
        with store.locked(tmp_path, wait=False):  # a second flock from this process would wait for itself
            pass
        probe = subprocess.run([sys.executable, "-c", PRELUDE + f"store.locked({str(tmp_path)!r}, wait=False)"
                                ".__enter__()"], capture_output=True, text=True, timeout=30)
        assert probe.returncode == 1 and f"in use by another run (pid {os.getpid()})" in probe.stderr
    with store.locked(tmp_path, wait=False):
        pass


# ---------------------------------------------------------------- temporary files of killed writes


def test_temporary_files_of_killed_writes_are_removed_by_the_next_holder_of_the_lock(tmp_path):
    level_record(tmp_path)
    code = PRELUDE + textwrap.dedent(f"""
        def stalls(f):
            f.write(b"PK half an archive")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        store.atomic_write(Path({str(tmp_path)!r}) / "p25.npz", stalls)
    """)
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    (tmp,) = tmp_path.glob(".p25.npz.*.tmp")
    assert f".{writer.pid}." in tmp.name
    (tmp_path / ".p25.json.oldstyle.tmp").write_text("{")  # left by a version that did not record the pid
    with store.locked(tmp_path):  # its writer is alive: its file is kept
        assert tmp.exists() and not (tmp_path / ".p25.json.oldstyle.tmp").exists()
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    assert tmp.exists() and not store.done(tmp_path, "p25") and store.levels(tmp_path) == ["p50"]
    with store.locked(tmp_path):
        assert not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "p50.json", "p50.npz"]


# ---------------------------------------------------------------- file-system failures


def test_writing_where_a_file_or_nothing_is_gives_one_line_naming_the_path(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    with pytest.raises(store.StoreError, match=f"^cannot create {blocker / 'oneshot-[0-9a-f]+'}: Not a directory$"):
        store.open_run(blocker, {"mode": "oneshot"}, "oneshot")
    with pytest.raises(store.StoreError, match=f"^cannot write {tmp_path / 'missing' / 'p50.npz'}: No such file"):
        store.save_level(tmp_path / "missing", "p50", {"x": np.zeros(1)}, {})
    (tmp_path / "p50.json").mkdir()
    with pytest.raises(store.StoreError, match=f"^cannot write {tmp_path / 'p50.json'}: Is a directory$"):
        store.save_level(tmp_path, "p50", {"x": np.zeros(1)}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "p50.json", "p50.npz"]  # no temporary file


CATCH = """
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = None
    except store.StoreError as e:
        out[name] = str(e)
"""


def in_private_tmpfs(tmp_path: Path, size: str, read_only: bool, snippet: str) -> dict:
    """Run ``snippet`` (given ``DIR``, ``attempt(name, fn)`` and the dict ``out``) with ``DIR`` a fresh tmpfs
    of ``size``, remounted read-only after ``DIR/run`` is made if asked, in a private mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = PRELUDE + CATCH + f"DIR = Path({str(mnt)!r})\n" + textwrap.dedent(snippet) + textwrap.dedent("""
        out["left"] = sorted(str(p.relative_to(DIR)) for p in DIR.rglob("*"))
        print(json.dumps(out))
    """)
    remount = f" && mount -o remount,ro {mnt}" if read_only else ""
    shell = f"mount -t tmpfs -o size={size} tmpfs {mnt} && mkdir {mnt}/run{remount} && exec \"$0\" -c \"$1\""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {mnt}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private mount namespace here: {probe.stderr.decode().strip()}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", shell, sys.executable, code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_a_read_only_folder_gives_one_line_naming_the_path(tmp_path):
    out = in_private_tmpfs(tmp_path, "1m", True, """
        attempt("open", lambda: store.open_run(DIR, {"mode": "oneshot"}, "oneshot"))
        attempt("save", lambda: store.save_level(DIR / "run", "p50", {"x": np.zeros(3)}, {"order": 1}))
        attempt("lock", lambda: store.locked(DIR / "run").__enter__())
    """)
    mnt = tmp_path / "mnt"
    assert out["open"].startswith(f"cannot create {mnt}/oneshot-") and out["open"].endswith(": Read-only file system")
    assert out["save"] == f"cannot write {mnt}/run/p50.npz: Read-only file system"
    assert out["lock"] == f"cannot lock {mnt}/run/.lock: Read-only file system"
    assert out["left"] == ["run"]


def test_a_full_folder_gives_one_line_naming_the_path_and_leaves_no_temporary_file(tmp_path):
    out = in_private_tmpfs(tmp_path, "64k", False, """
        noise = np.random.default_rng(0).random(100_000)  # 800 kB that do not compress
        store.save_level(DIR / "run", "p100", {"x": np.zeros(3)}, {"order": 0})
        attempt("npz", lambda: store.save_level(DIR / "run", "p50", {"x": noise}, {"order": 1}))
        attempt("json", lambda: store.write_json(DIR / "run" / "big.json", {"x": noise}))
        out["still_done"] = store.done(DIR / "run", "p100")
    """)
    mnt = tmp_path / "mnt"
    assert out["npz"] == f"cannot write {mnt}/run/p50.npz: No space left on device"
    assert out["json"] == f"cannot write {mnt}/run/big.json: No space left on device"
    assert out["still_done"] and out["left"] == ["run", "run/p100.json", "run/p100.npz"]
