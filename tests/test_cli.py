"""Specs of experiments.cli: flags generated from a settings dataclass, their checks, and the exit codes.

Flag definitions go to a fresh ``flags.FlagValues()`` per test (never the global FLAGS);
the exit codes are checked on a toy driver run as a script (``python toy_driver.py ...``, through
tests/preloaded.py: a child of one interpreter that has imported JAX already, answering as a
fresh one does).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Literal

import preloaded
import pytest
from absl import flags

from experiments import cli

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Toy:
    """A settings dataclass with one field of every supported form."""

    steps: int = cli.field(100, "Training iterations.", min=1)
    lr: float = cli.field(0.1, "Learning rate.", above=0)
    tag: str = "run"
    optimizer: Literal["sgd", "adam"] = "sgd"
    reinit: bool = True
    widths: tuple[int, ...] = cli.field((4, 2), "Hidden widths.", min=1)
    heuristics: tuple[str, ...] = cli.field(("input",), "Heuristics.", choices=("input", "output", "product"))
    levels: tuple[float, ...] = cli.field((100.0, 50.0), "Percent kept.", above=0, max=100)
    controls: tuple[int, int] = cli.field((3, 3), "reinit,shuffle.", min=0)
    sizes: tuple[tuple[int, ...], ...] = ((300, 100),)
    budget_mb: int | None = cli.field(None, "Memory budget.", min=1)
    # the lth_jax convention: plain metadata, no import of experiments
    std: float = dataclasses.field(default=0.1, metadata={"help": "Init std.", "above": 0})

    def __post_init__(self) -> None:
        if self.steps % 10:
            raise ValueError(f"steps must be a multiple of 10, not {self.steps}")


def define(defaults=None, **kw) -> flags.FlagValues:
    fv = flags.FlagValues()
    cli.define_flags(Toy, defaults, flag_values=fv, **kw)
    return fv


def settings(argv: list[str], preset=None, **kw) -> Toy:
    fv = define(**{k: v for k, v in kw.items() if k in ("renames", "skip")})
    cli.parse(["prog", *argv], fv)
    return cli.settings_from_flags(Toy, preset, flag_values=fv, **kw)


def error_line(argv: list[str], **kw) -> str:
    """The one line a driver would print for ``argv`` (flag errors and usage errors)."""
    try:
        settings(argv, **kw)
    except flags.Error as e:
        return cli.flag_error_line(e)
    except cli.UsageError as e:
        return str(e)
    raise AssertionError(f"{argv} was accepted")


# ---------------------------------------------------------------- one flag per field, of the field's type


def test_every_field_becomes_one_flag_of_its_type():
    s = settings(["--steps=30", "--lr=0.5", "--tag=x", "--optimizer=adam", "--noreinit", "--widths=6,3,1",
                  "--heuristics=output,product", "--levels=100,7.5", "--controls=0,1", "--sizes=600-200,900-300",
                  "--budget_mb=512", "--std=0.2"])
    assert s == Toy(steps=30, lr=0.5, tag="x", optimizer="adam", reinit=False, widths=(6, 3, 1),
                    heuristics=("output", "product"), levels=(100.0, 7.5), controls=(0, 1),
                    sizes=((600, 200), (900, 300)), budget_mb=512, std=0.2)
    assert isinstance(s.levels[0], float) and isinstance(s.widths[0], int)


def test_help_text_comes_from_the_field_metadata_and_lists_the_choices():
    fv = define()
    assert fv["steps"].help == "Training iterations."
    assert fv["std"].help == "Init std."          # plain dataclasses.field metadata
    assert "input, output, product" in fv["heuristics"].help
    assert "sgd, adam" in fv["optimizer"].help    # choices of a Literal
    assert fv["tag"].help == "Toy.tag"            # no help given: the field's name


def test_flag_defaults_show_the_given_preset_else_the_field_defaults():
    fv = define({"steps": 500})
    assert fv["steps"].default == 500 and fv["lr"].default == 0.1
    assert "'4,2'" in fv.get_help() and "'300-100'" in fv.get_help()


def test_an_unsupported_field_type_is_refused_when_the_flags_are_defined():
    @dataclasses.dataclass(frozen=True)
    class Odd:
        table: dict[str, int] = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="Odd.table"):
        cli.define_flags(Odd, flag_values=flags.FlagValues())
    cli.define_flags(Odd, skip=("table",), flag_values=flags.FlagValues())  # skipped: the driver's business


# ---------------------------------------------------------------- presets


def test_a_flag_left_unset_takes_the_presets_value_and_a_given_flag_wins():
    preset = {"steps": 20, "widths": (8,)}
    assert settings([], preset) == Toy(steps=20, widths=(8,))
    assert settings(["--steps=40"], preset) == Toy(steps=40, widths=(8,))
    # a flag given with the value of the displayed default still counts as given
    assert settings(["--steps=100"], preset).steps == 100


def test_values_computed_by_the_driver_override_flags_and_preset():
    assert settings(["--tag=a"], {"tag": "b"}, values={"tag": "c"}).tag == "c"


def test_a_preset_key_that_is_no_field_is_a_mistake_unless_the_driver_skips_it():
    with pytest.raises(TypeError, match="seed_count"):
        settings([], {"seed_count": 5})
    assert settings([], {"seed_count": 5, "steps": 20}, skip=("seed_count",)).steps == 20


def test_a_preset_may_be_an_instance_of_the_settings():
    assert settings(["--lr=0.3"], Toy(steps=70)) == Toy(steps=70, lr=0.3)


# ---------------------------------------------------------------- renames and old names


def test_a_renamed_field_answers_to_its_new_flag_and_to_its_old_name():
    kw = {"renames": {"steps": "iterations"}}
    assert settings(["--iterations=20"], **kw).steps == 20
    assert settings(["--steps=30"], **kw).steps == 30
    assert error_line(["--iterations=5"], **kw) == "--iterations: must be a multiple of 10, not 5"


def test_old_flag_names_are_aliases_of_the_new_ones():
    fv = define()
    cli.define_aliases({"learning_rate": "lr", "tag": "lr"}, flag_values=fv)  # --tag exists: left alone
    cli.parse(["prog", "--learning_rate=0.25"], fv)
    assert cli.settings_from_flags(Toy, flag_values=fv).lr == 0.25
    with pytest.raises(ValueError, match="--nothing"):
        cli.define_aliases({"old": "nothing"}, flag_values=fv)


def test_every_renamed_vocabulary_entry_points_at_a_name_of_the_one_vocabulary():
    vocabulary = {"lr", "iterations", "seeds", "first_seed", "out_dir"}
    for program, renamed in cli.OLD_NAMES.items():
        assert set(renamed.values()) <= vocabulary, program
        assert not set(renamed) & vocabulary, program


def test_seeds_is_a_count_starting_at_first_seed():
    fv = flags.FlagValues()
    cli.define_seed_flags(5, flag_values=fv)
    cli.parse(["prog"], fv)
    assert cli.seeds_from_flags(3, fv) == (0, 1, 2)  # unset: the preset's count
    fv = flags.FlagValues()
    cli.define_seed_flags(5, flag_values=fv)
    cli.parse(["prog", "--seeds=2", "--first_seed=7"], fv)
    assert cli.seeds_from_flags(3, fv) == (7, 8)


# ---------------------------------------------------------------- every flag is checked


@pytest.mark.parametrize("argv, line", [
    (["--lr=nan"], "--lr: must be a finite number, not nan"),
    (["--lr=inf"], "--lr: must be a finite number, not inf"),
    (["--std=-inf"], "--std: must be a finite number, not -inf"),
    (["--levels=50,nan"], "--levels: must be a finite number, not nan"),
    (["--lr=0"], "--lr: must be > 0, not 0"),
    (["--steps=0"], "--steps: must be at least 1, not 0"),
    (["--steps=2.5"], "--steps: expected an integer, not '2.5'"),
    (["--controls=-1,3"], "--controls: must be at least 0, not -1"),
    (["--controls=3"], "--controls: takes 2 comma-separated values, not 1"),
    (["--levels=150"], "--levels: must be at most 100, not 150"),
    (["--widths="], "--widths: needs at least one value"),
    (["--heuristics="], "--heuristics: needs at least one value"),
    (["--widths=4,,2"], "--widths: expected an integer, not ''"),
    (["--heuristics=input,magic"], "--heuristics: unknown value 'magic'; choose from input, output, product"),
    (["--optimizer=rmsprop"], "--optimizer: unknown value 'rmsprop'; choose from sgd, adam"),
    (["--tag="], "--tag: must not be empty"),
    (["--sizes=600-"], "--sizes: expected widths joined by '-' (e.g. 300-100), not '600-'"),
    (["--budget_mb=0"], "--budget_mb: must be at least 1, not 0"),
    (["--reinit=maybe"], "--reinit: Non-boolean argument to boolean flag ('maybe')"),
    (["--step=10"], "--step: unknown flag (did you mean --steps?)"),
    (["--steps=15"], "--steps: must be a multiple of 10, not 15"),  # the dataclass's own check
])
def test_a_bad_value_is_one_line_naming_the_flag(argv, line):
    assert error_line(argv) == line


def test_a_bad_preset_value_is_caught_by_the_dataclass():
    with pytest.raises(cli.UsageError, match="--steps: must be a multiple of 10"):
        settings([], {"steps": 15})


def test_empty_lists_and_strings_pass_where_the_rules_allow_them():
    fv = flags.FlagValues()
    cli.define_flag("only", tuple[str, ...], None, "Steps.", choices=("a", "b"), empty_ok=True, flag_values=fv)
    cli.parse(["prog", "--only="], fv)
    assert fv.only == ()


def test_paths_that_must_exist_are_checked_after_parsing(tmp_path):
    (tmp_path / "file").write_text("x")

    def parse(value: str) -> None:
        fv = flags.FlagValues()
        cli.define_flag("runs_dir", str, str(tmp_path), "Stored runs.", exists="dir", flag_values=fv)
        cli.parse(["prog", f"--runs_dir={value}"], fv)

    parse(str(tmp_path))
    with pytest.raises(cli.UsageError, match="--runs_dir: .*missing: no such directory"):
        parse(str(tmp_path / "missing"))
    with pytest.raises(cli.UsageError, match="not a directory"):
        parse(str(tmp_path / "file"))


def test_a_stray_argument_is_refused_before_any_path_is_checked(tmp_path):
    fv = flags.FlagValues()
    cli.define_flag("runs_dir", str, str(tmp_path / "missing"), "Stored runs.", exists="dir", flag_values=fv)
    with pytest.raises(cli.UsageError, match=r"^unexpected argument\(s\): extra "):
        cli.parse(["prog", "extra"], fv)
    fv = flags.FlagValues()
    cli.define_flag("name", str, "x", "A name.", flag_values=fv)
    assert cli.parse(["prog", "--name=y", "extra"], fv, positional=True) == ["prog", "extra"]


def test_a_cross_flag_check_names_the_flag():
    with pytest.raises(cli.UsageError, match=r"^--chunk_steps: 300 does not divide 400$"):
        cli.check(400 % 300 == 0, "chunk_steps", "300 does not divide 400")


def test_an_os_error_is_its_reason_and_its_path():
    assert cli.os_error_line(OSError(errno.EROFS, os.strerror(errno.EROFS), "/x/y")) == "Read-only file system: /x/y"
    assert cli.os_error_line(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/a.tmp", None, "/a")) == \
        "No space left on device: /a.tmp -> /a"
    assert cli.os_error_line(FileNotFoundError("no settings.json in /r")) == "no settings.json in /r"


# ---------------------------------------------------------------- the entry point's exit codes

DRIVER = textwrap.dedent('''
    import dataclasses, errno, os
    from absl import flags
    from experiments import cli
    from lth_jax.data import DataError
    from lth_jax.store import StoreError

    @dataclasses.dataclass(frozen=True)
    class Settings:
        iterations: int = cli.field(10, "Iterations.", min=1)
        lr: float = cli.field(0.1, "Learning rate.", above=0)

    def define():
        cli.define_flags(Settings)
        cli.define_flag("fail", str, "none", "What to raise.", choices=(
            "none", "usage", "value", "data", "store", "os", "interrupt", "three"))

    def run():
        s = cli.settings_from_flags(Settings, {"iterations": 20})
        failure = {"usage": cli.UsageError("--fail: asked to"), "value": ValueError("a bug"),
                   "data": DataError("/m/train.gz: file not found"), "store": StoreError("cannot read /r/p1.json"),
                   "os": PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/ro/out"),
                   "interrupt": KeyboardInterrupt()}.get(flags.FLAGS.fail)
        if failure is not None:
            raise failure
        print(f"iterations={s.iterations} lr={s.lr} xla={os.environ.get('XLA_FLAGS', '')!r}")
        return 3 if flags.FLAGS.fail == "three" else None

    if __name__ == "__main__":
        cli.main("xor_sweep", run, define)   # named xor_sweep: its old names --steps/--learning_rate work
''')


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "toy_driver.py"
    path.write_text(DRIVER)
    return path


def run_driver(driver: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return preloaded.run([sys.executable, str(driver), *argv], env=env, timeout=120, cwd=driver.parent)


@pytest.mark.parametrize("argv, code, line", [
    ((), 0, None),
    (("--lr=nan",), 2, "xor_sweep: error: --lr: must be a finite number, not nan"),
    (("--iterations=0",), 2, "xor_sweep: error: --iterations: must be at least 1, not 0"),
    (("--bogus=1",), 2, "xor_sweep: error: --bogus: unknown flag"),
    (("stray",), 2, "xor_sweep: error: unexpected argument(s): stray (flags are written --name=value)"),
    (("--fail=usage",), 2, "xor_sweep: error: --fail: asked to"),
    (("--fail=data",), 1, "xor_sweep: error: /m/train.gz: file not found"),
    (("--fail=store",), 1, "xor_sweep: error: cannot read /r/p1.json"),
    (("--fail=os",), 1, "xor_sweep: error: Permission denied: /ro/out"),
    (("--fail=interrupt",), 130, "xor_sweep: error: interrupted; run the same command again to resume"),
    (("--fail=three",), 3, None),
])
def test_every_failure_is_one_line_and_its_exit_code(driver, argv, code, line):
    r = run_driver(driver, *argv)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    if line is None:
        assert r.stderr.strip() == ""
    else:
        assert r.stderr.strip().splitlines() == [line]


def test_help_exits_0_and_lists_the_driver_s_flags(driver):
    r = run_driver(driver, "--help")
    assert r.returncode == 0, r.stderr
    assert "--lr" in r.stdout and "Traceback" not in r.stderr


def test_a_bug_still_shows_its_traceback(driver):
    r = run_driver(driver, "--fail=value")
    assert r.returncode == 1 and "Traceback" in r.stderr and "ValueError: a bug" in r.stderr


def test_the_preset_old_names_and_the_xla_switch_reach_the_run(driver):
    r = run_driver(driver, "--steps=40", "--learning_rate=0.5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("iterations=40 lr=0.5 ")
    assert ("ynn_fusion_type" in r.stdout) == cli.xla_cpu.jaxlib.__version__.startswith("0.10.")
    r = run_driver(driver, "--nofast_xla_cpu")
    assert r.stdout.strip() == "iterations=20 lr=0.1 xla=''"
