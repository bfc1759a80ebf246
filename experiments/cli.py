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
