"""Every driver's command line: flags generated from settings dataclasses, one vocabulary, one exit code table.

A driver is ``define -> run`` handed to :func:`main`::

    cli.main("xor_sweep", run, define)

:func:`main` defines the flags (``define``, plus ``--fast_xla_cpu``), parses them (a bad flag,
an unknown flag or a stray positional argument is one line and exit 2), switches XLA's CPU
fusions off (:mod:`experiments.xla_cpu`, before anything runs on the backend), quiets
absl/jax INFO logging, and calls ``run()``. What ``run`` raises becomes one line on stderr,
``<program>: error: <reason>``, never a traceback, with the same code in every driver:

====  =====================================================================================
2     usage: :class:`UsageError`, bad / unknown flags, positional arguments, settings
      that do not validate (``ValueError`` from the settings dataclass)
1     runtime failure: :class:`lth_jax.data.DataError`, :class:`lth_jax.store.StoreError`,
      any ``OSError`` (read-only, disk full, permission, a file where a folder belongs:
      ``"Read-only file system: /x/y"``)
130   Ctrl-C ("interrupted; run the same command again to resume")
====  =====================================================================================

Vocabulary (one across drivers):

- ``--lr`` learning rate, ``--iterations`` training iterations per network, ``--eval_every``,
  ``--std``, ``--optimizer``, ``--batch_size``, ``--hidden``, ``--rate``: the MNIST names.
- ``--seeds`` is a COUNT of winning tickets, seeds ``--first_seed`` .. ``--first_seed +
  --seeds - 1`` (:func:`define_seed_flags`), in ``mnist``, ``studies`` and ``examine``.
- XOR keeps ``--trials`` (networks per setting): its networks are not seeded one by one but
  all drawn from one ``--seed``, and ``python -m experiments.xor_sweep --trials=1000`` is the
  README's main command.
- ``--out_dir`` is where a driver writes, ``--runs_dir`` where it reads stored runs,
  ``--mnist_dir``, ``--progress``, ``--preset``, ``--dry_run``, ``--fast_xla_cpu``.

The old names stay as absl aliases (:data:`OLD_NAMES`, defined by :func:`main` for each
program once the new flag exists), so documented commands keep running: xor_sweep
``--steps``/``--learning_rate``; examine ``--runs``/``--seed``/``--steps``/``--learning_rate``;
report and reproduce_paper ``--out``.

Extra driver-only flags (``--out_dir``, ``--progress``, ``--mnist_dir``, ...) are defined by
the driver with :func:`define_flag`, which takes the same rules as keyword arguments.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NoReturn

from absl import app, flags, logging

from experiments import xla_cpu
from experiments.hparams import (
    Flag,
    UsageError,
    define_flag,
    define_flags,
    define_preset_flag,
    define_seed_flags,
    field,
    given,
    preset,
    seeds_from_flags,
    settings_from_flags,
)
from lth_jax.data import DataError
from lth_jax.store import StoreError

# The drivers' one entry point: the typed flags of experiments.hparams are used through it.
__all__ = ["FAILURE", "FLAGS", "INTERRUPTED", "INTERRUPTED_LINE", "OLD_NAMES", "USAGE", "UsageError", "check",
           "define_aliases", "define_flag", "define_flags", "define_preset_flag", "define_seed_flags", "fail", "field",
           "flag_error_line", "flags_parser", "given", "main", "one_line_errors", "os_error_line", "parse", "preset",
           "seeds_from_flags", "settings_from_flags"]


# Flags defined here belong to the driver that calls main (so ``--help`` lists them under it).
flags.disclaim_key_flags()

FLAGS = flags.FLAGS
USAGE, FAILURE, INTERRUPTED = 2, 1, 130
INTERRUPTED_LINE = "interrupted; run the same command again to resume"


# Old flag name -> today's, per program: defined as aliases by :func:`main`.
OLD_NAMES: dict[str, dict[str, str]] = {
    "xor_sweep": {"steps": "iterations", "learning_rate": "lr"},
    "examine": {"runs": "seeds", "seed": "first_seed", "steps": "iterations", "learning_rate": "lr"},
    "report": {"out": "out_dir"},
    "reproduce_paper": {"out": "out_dir"},
}


HELP = frozenset({"--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"})


def fail(program: str, message: str, code: int = USAGE) -> NoReturn:
    """Print ``program: error: <first line of message>`` on stderr and exit with ``code``."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()  # what was printed before the error comes before it
    first = message.strip().splitlines()[0] if message.strip() else "error"
    sys.stderr.write(f"{program}: error: {first}\n")
    sys.exit(code)


def os_error_line(e: OSError) -> str:
    """``"Read-only file system: /x/y"``: the reason and the path(s) of an ``OSError``."""
    if not e.strerror:
        return str(e)
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{e.strerror}: {' -> '.join(paths)}" if paths else e.strerror


@contextlib.contextmanager
def one_line_errors(program: str) -> Iterator[None]:
    """Turn the failures a user can cause or meet into one line and the exit code of the table above."""
    try:
        yield
    except (UsageError, app.UsageError) as e:
        fail(program, str(e), USAGE)
    except (DataError, StoreError) as e:
        fail(program, str(e), FAILURE)
    except OSError as e:
        fail(program, os_error_line(e), FAILURE)
    except KeyboardInterrupt:
        fail(program, INTERRUPTED_LINE, INTERRUPTED)


def flag_error_line(e: flags.Error, flag_values: flags.FlagValues = FLAGS) -> str:
    """absl's parse error as ``--flag: reason``."""
    if isinstance(e, flags.UnrecognizedFlagError):
        hint = str(e).partition("Did you mean: ")[2].rstrip(" ?")
        names = ", ".join(f"--{n.strip()}" for n in hint.split(",") if n.strip())
        return f"--{e.flagname}: unknown flag" + (f" (did you mean {names}?)" if names else "")
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    m = re.match(r"flag --([^=\s]+)=", text)
    if not m:
        return text
    name = m.group(1)
    cause = e.__context__
    if isinstance(cause, (ValueError, TypeError, OverflowError)):  # raised by a flag's parser
        first, *more = cause.args or ("",)
        return f"--{name}: {first}" + (f" ({', '.join(map(repr, more))})" if more else "")
    if name in flag_values:  # a validator's: "flag --name=<value>: reason"
        prefix = f"flag --{name}={flag_values[name].value}: "
        if text.startswith(prefix):
            return f"--{name}: {text[len(prefix):]}"
    return text.removeprefix("flag ")


def parse(argv: Sequence[str], flag_values: flags.FlagValues = FLAGS, positional: bool = False) -> list[str]:
    """Parse ``argv`` into ``flag_values``, refuse positional arguments (unless ``positional``), then
    check the ``exists`` rules; returns ``[program, *positional arguments]``.

    Raises ``flags.Error`` (bad or unknown flags) or :class:`UsageError` (a stray argument, a path
    that is not there).
    """
    rest = flag_values(list(argv))
    if len(rest) > 1 and not positional:
        raise UsageError(f"unexpected argument(s): {' '.join(rest[1:])} (flags are written --name=value)")
    for name in list(flag_values):
        flag = flag_values[name]
        if isinstance(flag, Flag):  # not its aliases
            flag.check_exists()
    return rest


def flags_parser(program: str, flag_values: flags.FlagValues = FLAGS) -> Callable[[list[str]], list[str]]:
    """absl's flag parsing, but a bad flag is one line on stderr and exit code 2."""

    def parse_or_fail(argv: list[str]) -> list[str]:
        try:
            return parse(argv, flag_values)
        except flags.Error as e:
            fail(program, flag_error_line(e, flag_values), USAGE)
        except UsageError as e:
            fail(program, str(e), USAGE)

    return parse_or_fail


def main(program: str, run: Callable[[], int | None], define: Callable[[], object] | None = None,
         argv: Sequence[str] | None = None) -> NoReturn:
    """Run a driver: define its flags, parse them, switch XLA's CPU fusions, call ``run()``.

    ``run`` reads the flags (through :func:`settings_from_flags` first, so bad settings
    stop before any data is read); what it returns is the exit status (None: 0). See the
    module docstring for the exit codes.
    """
    if define is not None:
        define()
    if "fast_xla_cpu" not in FLAGS:
        flags.DEFINE_boolean("fast_xla_cpu", True, "Turn off XLA's YNN fusions on the CPU (3-4x faster on "
                             "the XOR net; see experiments/xla_cpu.py).")
    define_aliases(OLD_NAMES.get(program, {}))

    def start(_: list[str]) -> int | None:  # positional arguments were refused by the parser
        if FLAGS.fast_xla_cpu:
            xla_cpu.speed_up_xla_cpu()
        if not FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # jax's INFO lines (e.g. no TPU) are noise here
        with one_line_errors(program):
            return run()

    args = list(sys.argv if argv is None else argv)
    try:
        app.run(start, argv=args, flags_parser=flags_parser(program))
    except SystemExit as e:
        if e.code == 1 and HELP.intersection(args[1:]):  # absl exits 1 after printing the help asked for
            sys.exit(0)
        raise
    raise AssertionError("app.run returns only by exiting")  # pragma: no cover


def define_aliases(old_names: Mapping[str, str], flag_values: flags.FlagValues = FLAGS) -> None:
    """``--old`` as an alias of ``--new`` for each pair, unless ``--old`` is already a flag."""
    for old, new in old_names.items():
        if old in flag_values:
            continue
        if new not in flag_values:
            raise ValueError(f"cannot alias --{old}: --{new} is not defined")
        flags.DEFINE_alias(old, new, flag_values=flag_values)


def check(ok: bool, flag: str, reason: str) -> None:
    """Raise ``UsageError("--flag: reason")`` unless ``ok`` (checks across flags, e.g. chunk sizes)."""
    if not ok:
        raise UsageError(f"--{flag}: {reason}")
