"""Driver command lines run from one preloaded interpreter: ``python -m experiments.<driver> ...``
without paying for the interpreter's start each time.

A driver's command line is refused or answered in a few milliseconds once its imports are done,
but starting ``python -m experiments.<driver>`` imports JAX, Flax and the library first (2-3 s on
a 2-core machine), and the suite runs well over a hundred such commands. :func:`run` hands each
command to one server process (this file run as a script) that has imported all of that once; for
each command the server forks a child that does what a fresh ``python`` would do with it:

- ``[sys.executable, "-m", module, *argv]`` runs ``module`` as ``__main__`` (``runpy``, as ``-m``
  does), ``[sys.executable, script, *argv]`` runs the script's file as ``__main__``;
- in the command's working directory, with exactly its environment, ``sys.argv`` and
  ``sys.path[0]`` as the interpreter sets them, stdin from /dev/null and its own stdout/stderr;
- and it ends as the interpreter ends: ``SystemExit``'s code (a message: printed, code 1), an
  uncaught exception's traceback and code 1, atexit handlers run, output flushed.

The server never starts a JAX backend (importing jax does not start one) nor a thread, so a child
can start its own. JAX reads its ``JAX_*`` variables when it is imported, in the server: a child
sets ``jax_platforms`` from its own ``JAX_PLATFORMS`` again (the only one the suite sets). A
command running past its timeout is killed with its process group and raises
``subprocess.TimeoutExpired``, as ``subprocess.run`` does. When a repository file the server
imported has changed since (someone edits the checkout while the suite runs), the server is
started again before the command runs, so a command never meets code older than its files.

tests/test_preloaded.py checks that the answers are those of a real ``python`` process.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = ("jax", "jax.numpy", "flax.linen", "optax", "numpy", "absl.app", "absl.flags", "matplotlib",
           "matplotlib.pyplot", "lth_jax", "experiments.cli")


# ---------------------------------------------------------------- the client (pytest's side)


class _Server:
    def __init__(self) -> None:
        self.log = tempfile.TemporaryFile()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, cwd=ROOT, env=env)
        atexit.register(self.close)

    def ask(self, request: dict, wait: float) -> dict:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], wait)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.close()
            self.log.seek(0)
            raise RuntimeError(f"the preloaded interpreter stopped answering:\n{self.log.read().decode()[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)


_server: _Server | None = None


def run(args: list[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """What ``subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)``
    gives, with ``args[0]`` the test's own interpreter (``sys.executable``)."""
    global _server
    if args[0] != sys.executable:
        raise ValueError(f"{args[0]!r} is not this interpreter ({sys.executable})")
    if _server is None or _server.proc.poll() is not None:
        _server = _Server()
    request = {"args": [str(a) for a in args[1:]], "cwd": str(Path(cwd or os.getcwd()).resolve()),
               "env": dict(os.environ if env is None else env), "timeout": timeout}
    answer = _server.ask(request, wait=timeout + 120)   # the first answer waits for the imports too
    if answer.get("stale"):  # a file it imported changed since: a new server imports it afresh
        _server.close()
        _server = _Server()
        answer = _server.ask(request, wait=timeout + 120)
    if answer["timed_out"]:
        raise subprocess.TimeoutExpired(args, timeout, answer["stdout"], answer["stderr"])
    return subprocess.CompletedProcess(args, answer["returncode"], answer["stdout"], answer["stderr"])


# ---------------------------------------------------------------- the server


def _preload() -> None:
    """Import what the drivers import, and the drivers themselves (their flags are defined by
    ``cli.main``, not on import; a flag some module defines on import is deleted again, so the
    child that runs that module defines it afresh)."""
    import importlib

    from absl import flags

    drivers = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if "__main__" in p.read_text())
    for name in [*PRELOAD, *(f"experiments.{d}" for d in drivers)]:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  the child meets the same error, as a fresh python would
            pass
    for module, defined in flags.FLAGS.flags_by_module_dict().items():
        if module.split(".")[0] in ("experiments", "lth_jax"):
            for flag in defined:
                delattr(flags.FLAGS, flag.name)


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1


def _print_uncaught(e: BaseException) -> None:
    """The traceback the interpreter prints, from the command's first frame (not this file's or runpy's:
    for ``-m`` the interpreter shows two frames of runpy first)."""
    import traceback

    tb = e.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename == __file__ or "runpy" in tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(e), e, tb)


def _run_as_main(source: str, filename: str) -> None:
    """Run ``source`` as the ``__main__`` module, as the interpreter runs a script or ``-c`` code."""
    import types

    main = types.ModuleType("__main__")
    if filename != "<string>":
        main.__file__ = filename
    sys.modules["__main__"] = main
    exec(compile(source, filename, "exec"), main.__dict__)


def _child(request: dict, out: int, err: int) -> None:
    """Become the command (never returns)."""
    import importlib.util
    import runpy

    code = 1
    try:
        os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if "jax" in sys.modules:  # jax read JAX_PLATFORMS when the server imported it: read it again
            sys.modules["jax"].config.update("jax_platforms", os.environ.get("JAX_PLATFORMS") or None)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        target, *argv = request["args"]
        pythonpath = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        if target == "-m":
            module, *argv = argv
            sys.path[:] = [request["cwd"], *pythonpath, *_BASE_PATH]
            sys.argv = ["-m", *argv]
            sys.modules.pop(module, None)  # preloaded for its imports; -m runs a fresh copy as __main__
            run = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa: E731
            if importlib.util.find_spec(module) is None:
                run = lambda: sys.exit(f"{sys.executable}: No module named {module}")  # noqa: E731
        elif target == "-c":
            source, *argv = argv
            sys.path[:] = ["", *pythonpath, *_BASE_PATH]
            sys.argv = ["-c", *argv]
            run = lambda: _run_as_main(source, "<string>")  # noqa: E731
        else:
            script = Path(request["cwd"], target).resolve()
            sys.path[:] = [str(script.parent), *pythonpath, *_BASE_PATH]
            sys.argv = [target, *argv]
            run = lambda: _run_as_main(script.read_text(), str(script))  # noqa: E731
        try:
            run()
            code = 0
        except SystemExit as e:
            code = _exit_code(e)
        except KeyboardInterrupt as e:
            _print_uncaught(e)
            code = -signal.SIGINT
        except BaseException as e:  # noqa: BLE001  what the interpreter prints for an uncaught exception
            _print_uncaught(e)
            code = 1
        try:
            atexit._run_exitfuncs()
        except SystemExit as e:
            code = _exit_code(e)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        if code < 0:  # an uncaught Ctrl-C: the interpreter ends by the signal
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code)


def _answer(request: dict) -> dict:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, out.fileno(), err.fileno())
        deadline, status = time.monotonic() + request["timeout"], None
        while status is None and time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            status = st if done else time.sleep(0.002)
        timed_out = status is None
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the command and whatever it started
            _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


def _sources() -> dict[str, int]:
    """Modification times of the repository's files this process has imported."""
    files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    return {f: os.stat(f).st_mtime_ns for f in files if f and f.startswith(str(ROOT)) and os.path.exists(f)}


def serve() -> None:
    _preload()
    imported = _sources()
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    for line in requests:
        if _sources() != imported:  # a fresh python would run the changed code: stop, be started again
            answers.write(b'{"stale": true}\n')
            answers.flush()
            return
        answers.write(json.dumps(_answer(json.loads(line))).encode() + b"\n")
        answers.flush()


if __name__ == "__main__":
    _own = {str(Path(__file__).parent), *os.environ.get("PYTHONPATH", "").split(os.pathsep)}
    _BASE_PATH = [p for p in sys.path if p not in _own]
    serve()
