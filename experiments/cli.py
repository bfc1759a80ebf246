"""What every driver does at its edges: one-line errors instead of tracebacks."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import NoReturn


def fail(program: str, message: str, code: int = 2) -> NoReturn:
    """Print ``program: error: <first line of message>`` on stderr and exit with ``code``."""
    first = message.strip().splitlines()[0] if message.strip() else "error"
    sys.stderr.write(f"{program}: error: {first}\n")
    sys.exit(code)


def failer(program: str) -> Callable[..., NoReturn]:
    """``fail`` bound to one program's name."""
    return functools.partial(fail, program)


def flags_parser(program: str) -> Callable[[list[str]], list[str]]:
    """absl's flag parsing, but a bad flag is one line on stderr and exit code 2."""

    def parse(argv: list[str]) -> list[str]:
        from absl import flags

        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(program, str(e), 2)

    return parse


class UsageError(Exception):
    """A bad flag value: reported on one line, exit code 2."""


def guarded(program: str, main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """``main`` with the drivers' edges: XLA's CPU switch first, then a usage error, a bad
    data file or Ctrl-C become one line and an exit code instead of a traceback."""

    def run(argv: list[str]) -> None:
        from experiments import xla_cpu
        from lth_jax.data import DataError

        xla_cpu.speed_up_xla_cpu()
        try:
            main(argv)
        except UsageError as e:
            fail(program, str(e), 2)
        except DataError as e:
            fail(program, str(e), 1)
        except KeyboardInterrupt:
            fail(program, "interrupted; run the same command again to resume from the last stored level", 130)

    return run


def parse_list(name: str, values: list[str] | None, kind: Callable) -> tuple | None:
    """A comma-separated flag read with ``kind`` (None stays None: "use the preset's")."""
    if values is None:
        return None
    try:
        return tuple(kind(v) for v in values)
    except ValueError:
        raise UsageError(f"--{name}: cannot read {','.join(values)!r}") from None
