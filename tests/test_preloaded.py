"""tests/preloaded.py answers a command line as a fresh ``python`` process does: the same exit code,
stdout and stderr, for a driver's refusal, its help, a script's view of its argv, path, working
directory and environment, a message exit, an uncaught exception and ``-c`` code; and a command
past its timeout is killed, as ``subprocess.run`` kills it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import preloaded
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent("""
    import os, sys
    print(sys.argv, sys.path[0], os.getcwd(), os.environ.get("ONLY_HERE"), __name__, sys.stdin.read() == "")
    print("to stderr", file=sys.stderr)
    if sys.argv[1:] == ["message"]:
        sys.exit("stopped: a message")
    if sys.argv[1:] == ["bug"]:
        raise ValueError("a bug")
    sys.exit(int(sys.argv[1]) if sys.argv[1:] else None)
""")


def both(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, ...]:
    fresh = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
    return fresh, preloaded.run(args, cwd=cwd, env=env)


@pytest.mark.parametrize("argv", [("--lr=nan",), ("stray",), ("--help",)])
def test_a_driver_s_refusal_and_help_are_those_of_a_fresh_python(argv, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LTH_MNIST_DIR": str(tmp_path / "none"), "JAX_PLATFORMS": "cpu"}
    fresh, ours = both([sys.executable, "-m", "experiments.mnist", *argv], tmp_path, env)
    assert (ours.returncode, ours.stdout, ours.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode == (0 if argv == ("--help",) else 2)


@pytest.mark.parametrize("argv", [(), ("3",), ("message",), ("bug",)])
def test_a_script_sees_its_argv_path_folder_and_environment_and_ends_as_in_a_fresh_python(argv, tmp_path):
    (tmp_path / "sub").mkdir()
    script = tmp_path / "sub" / "script.py"
    script.write_text(SCRIPT)
    env = {"PATH": os.environ["PATH"], "ONLY_HERE": "yes"}
    fresh, ours = both([sys.executable, "sub/script.py", *argv], tmp_path, env)
    assert (ours.returncode, ours.stdout, ours.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode == {(): 0, ("3",): 3, ("message",): 1, ("bug",): 1}[argv]


def test_code_given_with_c_runs_as_in_a_fresh_python(tmp_path):
    code = "import sys; print(sys.argv, repr(sys.path[0]), __name__); sys.exit(4)"
    fresh, ours = both([sys.executable, "-c", code, "a", "b"], tmp_path, {"PATH": os.environ["PATH"]})
    assert (ours.returncode, ours.stdout, ours.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode == 4


def test_a_command_past_its_timeout_is_killed_with_what_it_started(tmp_path):
    started = tmp_path / "grandchild.pid"
    code = (f"import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); "
            f"open({str(started)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        preloaded.run([sys.executable, "-c", code], cwd=tmp_path, timeout=2)
    assert time.monotonic() - t0 < 20
    grandchild = int(started.read_text())
    for _ in range(100):  # killed with its process group (reaped by init shortly after)
        if not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"pid {grandchild} is still running")
