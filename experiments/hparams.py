"""Typed hyper-parameters generate the command line: one flag per settings dataclass field.

Flags from a frozen dataclass (:func:`define_flags`, :func:`settings_from_flags`): each
field becomes one flag of the field's type -- ``int``, ``float``, ``str``, ``bool``,
``typing.Literal[...]`` (choices), ``X | None``, and comma-separated lists for
``tuple[X, ...]`` (any length), ``tuple[X, X]`` (that many) and ``tuple[tuple[int, ...], ...]``
(``300-100,600-200``). A flag left off the command line takes the chosen preset's value
(presets: ``experiments/configs/<experiment>.py``), else the field's default. What a field
accepts is plain data in its metadata, so library dataclasses state it without importing
absl or this module (``lth_jax`` must not import ``experiments``)::

    lr: float = dataclasses.field(default=0.05, metadata={"help": "Learning rate.", "above": 0})

Metadata keys (all optional; :func:`field` writes them for dataclasses of ``experiments/``):

- ``"help"``: the flag's help text;
- ``"choices"``: allowed values (of the value, or of every element of a list);
- ``"min"`` / ``"max"``: inclusive bounds, ``"above"`` / ``"below"``: exclusive bounds
  (of the value, or of every element); counts say ``"min": 1`` or ``"min": 0``;
- ``"unique"``: list elements must differ; ``"empty_ok"``: an empty string or list is allowed;
- ``"exists"``: ``"dir"`` or ``"file"``, checked after parsing (paths; driver flags mostly).

Always checked: floats must be finite (``nan``, ``inf`` refused), lists must not be empty and
strings not blank (unless ``empty_ok``), integers must be integers. Messages read
``<program>: error: --<flag>: <reason>``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from absl import flags

# Flags defined through these helpers belong to the driver that calls them (so ``--help`` lists
# them under the driver, not under this module).
flags.disclaim_key_flags()

FLAGS = flags.FLAGS


class UsageError(Exception):
    """A bad flag value: reported on one line, exit code 2."""


META_KEYS = ("help", "choices", "min", "max", "above", "below", "unique", "empty_ok", "exists")
T = TypeVar("T")


def field(default: Any = dataclasses.MISSING, help: str = "", *, choices: Sequence[Any] | None = None,
          **rules: Any) -> Any:
    """``dataclasses.field`` with the command-line metadata of this module (``help``, ``choices``,
    ``min``, ``max``, ``above``, ``below``, ``unique``, ``empty_ok``, ``exists``)."""
    unknown = set(rules) - set(META_KEYS)
    if unknown:
        raise TypeError(f"unknown command-line rule(s): {', '.join(sorted(unknown))}")
    meta = {"help": help, **rules}
    if choices is not None:
        meta["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class _Rules:
    help: str = ""
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    unique: bool = False
    empty_ok: bool = False
    exists: Literal["dir", "file"] | None = None

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> _Rules:
        known = {k: meta[k] for k in META_KEYS if k in meta}
        if known.get("choices") is not None:
            known["choices"] = tuple(known["choices"])
        if known.get("exists") not in (None, "dir", "file"):
            raise TypeError(f"exists must be 'dir' or 'file', not {known['exists']!r}")
        return cls(**known)


@dataclasses.dataclass(frozen=True)
class _Form:
    """The command-line form of a type: a scalar, or a comma-separated list of them."""

    scalar: type                       # bool, int, float or str
    choices: tuple[Any, ...] = ()      # from typing.Literal
    many: bool = False                 # a comma-separated list
    size: int | None = None            # a list of exactly this many
    nested: bool = False               # each element a '-'-separated tuple, e.g. 300-100
    optional: bool = False             # X | None


_SCALARS = (bool, int, float, str)


def _form(tp: Any, inner: bool = False) -> _Form:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2 and not inner:
            return dataclasses.replace(_form(rest[0]), optional=True)
    elif origin is Literal:
        kinds = {type(a) for a in args}
        if len(kinds) == 1 and kinds <= set(_SCALARS) - {bool}:
            return _Form(kinds.pop(), choices=tuple(args))
    elif origin is tuple and args and not inner:
        size = None if len(args) == 2 and args[1] is Ellipsis else len(args)
        element = args[0]
        if size is None or all(a == element for a in args):
            e = _form(element, inner=True)
            if typing.get_origin(element) is tuple:
                if e.scalar is int and e.many and e.size is None:
                    return _Form(int, many=True, size=size, nested=True)
            elif e.scalar is not bool:
                return _Form(e.scalar, choices=e.choices, many=True, size=size)
    elif origin is tuple and inner and len(args) == 2 and args[1] is Ellipsis and args[0] is int:
        return _Form(int, many=True)
    elif tp in _SCALARS:
        return _Form(tp)
    raise TypeError(f"{tp} has no command-line form (int, float, str, bool, Literal, X | None, "
                    "tuple[X, ...], tuple[X, X], tuple[tuple[int, ...], ...]); skip the field")


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)


class _Serializer(flags.ArgumentSerializer):
    """Values as they are typed: ``300,100``, ``300-100,600-200``."""

    def __init__(self, form: _Form) -> None:
        self.form = form

    def serialize(self, value: Any) -> str:
        if not self.form.many:
            return str(value)
        return ",".join("-".join(map(str, v)) if self.form.nested else str(v) for v in value)


class _Parser(flags.ArgumentParser):
    """Reads the typed text of one flag and checks it against its rules (message: the reason only;
    absl puts ``flag --name=value:`` in front, :func:`flag_error_line` turns that into ``--name:``)."""

    def __init__(self, form: _Form, rules: _Rules) -> None:
        self.form, self.rules = form, rules
        self.choices = rules.choices if rules.choices is not None else form.choices or None

    def flag_type(self) -> str:
        name = self.form.scalar.__name__
        return f"list of {'-separated ' if self.form.nested else ''}{name}" if self.form.many else name

    def parse(self, argument: Any) -> Any:
        if self.form.many:
            items = _split(argument) if isinstance(argument, str) else list(argument)
            value = tuple(self._element(v) for v in items)
            self._check_list(value)
        else:
            value = self._scalar(argument)
            self._check(value)
        return value

    def _element(self, v: Any) -> Any:
        if not self.form.nested:
            value = self._scalar(v)
            self._check(value)
            return value
        parts = v.split("-") if isinstance(v, str) else list(v)
        if not parts or any(p == "" for p in parts):
            raise ValueError(f"expected widths joined by '-' (e.g. 300-100), not {v!r}")
        value = tuple(self._scalar(p) for p in parts)
        for p in value:
            self._check(p)
        return value

    def _scalar(self, v: Any) -> Any:
        kind = self.form.scalar
        if isinstance(v, str):
            text = v.strip()
            try:
                return kind(text)
            except ValueError:
                what = {int: "an integer", float: "a number"}.get(kind, kind.__name__)
                raise ValueError(f"expected {what}, not {v!r}") from None
        if kind is float and isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if kind is int and isinstance(v, int) and not isinstance(v, bool):
            return int(v)
        if kind is str and isinstance(v, str):
            return v
        raise TypeError(f"expected {kind.__name__}, not {v!r}")

    def _check(self, v: Any) -> None:
        r = self.rules
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"must be a finite number, not {_show(v)}")
        if isinstance(v, str) and not v.strip() and not r.empty_ok:
            raise ValueError("must not be empty")
        if self.choices is not None and v not in self.choices:
            raise ValueError(f"unknown value {_show(v)}; choose from {', '.join(map(str, self.choices))}")
        for bound, ok, word in ((r.min, lambda b: v >= b, "at least"), (r.max, lambda b: v <= b, "at most"),
                                (r.above, lambda b: v > b, ">"), (r.below, lambda b: v < b, "<")):
            if bound is not None and not ok(bound):
                raise ValueError(f"must be {word} {_show(bound)}, not {_show(v)}")

    def _check_list(self, value: tuple[Any, ...]) -> None:
        if not value and not self.rules.empty_ok:
            raise ValueError("needs at least one value")
        if self.form.size is not None and len(value) != self.form.size:
            raise ValueError(f"takes {self.form.size} comma-separated values, not {len(value)}")
        if self.rules.unique and len(set(value)) != len(value):
            raise ValueError(f"values must differ, not {_Serializer(self.form).serialize(value)}")


class Flag(flags.Flag):
    """A flag of this module: its parser carries the rules, including ``exists`` (checked after parsing,
    as a default path need not exist when the flag is defined)."""

    parser: _Parser

    def check_exists(self) -> None:
        kind, value = self.parser.rules.exists, self.value
        if kind is None or value is None:
            return
        for v in value if self.parser.form.many else (value,):
            p = Path(v)
            if not p.exists():
                raise UsageError(f"--{self.name}: {v}: no such {'directory' if kind == 'dir' else 'file'}")
            if kind == "dir" and not p.is_dir():
                raise UsageError(f"--{self.name}: {v}: not a directory")
            if kind == "file" and not p.is_file():
                raise UsageError(f"--{self.name}: {v}: not a file")


def _split(text: str) -> list[str]:
    return [] if not text.strip() else [t.strip() for t in text.split(",")]


def define_flag(name: str, kind: Any, default: Any, help: str, *, choices: Sequence[Any] | None = None,
                flag_values: flags.FlagValues = FLAGS, **rules: Any) -> flags.FlagHolder:
    """One flag of type ``kind`` (any type a settings field may have) with the rules of the
    module docstring as keyword arguments, e.g. ``define_flag("chunk_steps", int | None, None,
    "...", min=1)``. The default is checked like a typed value (``exists`` only after parsing)."""
    meta = {**rules, "help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    return _define(name, _form(kind), _Rules.of(meta), default, flag_values)


def _define(name: str, form: _Form, rules: _Rules, default: Any, flag_values: flags.FlagValues) -> flags.FlagHolder:
    text = rules.help or name
    if form.scalar is bool and not form.many:
        return flags.DEFINE_boolean(name, default, text, flag_values=flag_values)
    parser = _Parser(form, rules)
    if parser.choices is not None:
        text += f" (one of: {', '.join(map(str, parser.choices))})"
    elif form.many and form.size is not None:
        text += f" ({form.size} comma-separated values)"
    return flags.DEFINE_flag(Flag(parser, _Serializer(form), name, default, text), flag_values)


def _fields(cls: type, skip: Sequence[str]) -> list[tuple[dataclasses.Field, Any]]:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init and f.name not in skip]


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _as_dict(cls: type, preset: Mapping[str, Any] | Any | None, skip: Sequence[str]) -> dict[str, Any]:
    """A preset (mapping or instance of ``cls``) as field values; keys that are neither fields nor skipped
    are a mistake in the preset."""
    if preset is None:
        return {}
    if dataclasses.is_dataclass(preset) and not isinstance(preset, type):
        return {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset) if f.name not in skip}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(preset) - names - set(skip)
    if unknown:
        raise TypeError(f"preset keys that are not fields of {cls.__name__}: {', '.join(sorted(unknown))} "
                        "(name them in skip= and handle them in the driver)")
    return {k: v for k, v in preset.items() if k in names and k not in skip}


def define_flags(cls: type, defaults: Mapping[str, Any] | Any | None = None, *,
                 renames: Mapping[str, str] | None = None, skip: Sequence[str] = (),
                 meta: Mapping[str, Mapping[str, Any]] | None = None,
                 flag_values: flags.FlagValues = FLAGS) -> dict[str, str]:
    """Define one flag per field of the dataclass ``cls``; returns ``{field: flag name}``.

    ``defaults`` (a preset: mapping or instance) are the values ``--help`` shows (else the
    fields' defaults). ``renames`` maps a field to its flag name (the field's own name stays
    as an alias); ``skip`` names fields (and preset keys) the driver handles itself; ``meta``
    adds or overrides metadata per field (``{"lr": {"above": 0}}``).
    """
    renames, meta = dict(renames or {}), dict(meta or {})
    shown = _as_dict(cls, defaults, skip)
    names: dict[str, str] = {}
    for f, tp in _fields(cls, skip):
        name = renames.get(f.name, f.name)
        rules = _Rules.of({**f.metadata, **meta.get(f.name, {})})
        try:
            form = _form(tp)
        except TypeError as e:
            raise TypeError(f"{cls.__name__}.{f.name}: {e}") from None
        if not rules.help:
            rules = dataclasses.replace(rules, help=f"{cls.__name__}.{f.name}")
        _define(name, form, rules, shown.get(f.name, _field_default(f)), flag_values)
        if name != f.name:
            flags.DEFINE_alias(f.name, name, flag_values=flag_values)
        names[f.name] = name
    return names


def given(name: str, fallback: T, flag_values: flags.FlagValues = FLAGS) -> T:
    """The value of ``--name`` if it was on the command line, else ``fallback`` (the preset's)."""
    flag = flag_values[name]
    return flag.value if flag.present else fallback


def settings_from_flags(cls: type[T], preset: Mapping[str, Any] | Any | None = None, *,
                        renames: Mapping[str, str] | None = None, skip: Sequence[str] = (),
                        values: Mapping[str, Any] | None = None,
                        flag_values: flags.FlagValues = FLAGS) -> T:
    """``cls(**fields)``: the preset's values, overridden by every flag given on the command line,
    overridden by ``values`` (what the driver computes, e.g. ``seeds``). Pass the same
    ``renames``/``skip`` as to :func:`define_flags`. A ``ValueError`` of the dataclass (its
    ``__post_init__`` or ``validate()``) becomes a :class:`UsageError` naming the flag."""
    renames = dict(renames or {})
    kwargs = _as_dict(cls, preset, skip)
    flag_of: dict[str, str] = {}
    for f, _ in _fields(cls, skip):
        name = renames.get(f.name, f.name)
        if name not in flag_values:
            raise KeyError(f"--{name} is not defined; call define_flags({cls.__name__}) with the same renames/skip")
        flag_of[f.name] = name
        if flag_values[name].present:
            kwargs[f.name] = flag_values[name].value
    kwargs.update(values or {})
    try:
        settings = cls(**kwargs)
        validate = getattr(settings, "validate", None)
        if callable(validate):
            validate()
    except ValueError as e:
        raise UsageError(_name_the_flag(str(e), flag_of)) from None
    return settings


def _name_the_flag(message: str, flag_of: Mapping[str, str]) -> str:
    """``"lr must be > 0"`` -> ``"--lr: must be > 0"`` when the message starts with a field that is a flag."""
    first, _, rest = message.partition(" ")
    if first in flag_of and rest:
        return f"--{flag_of[first]}: {rest if rest.startswith(('must', 'is ', 'should')) else message}"
    return message


def define_preset_flag(presets: Mapping[str, Any], default: str, help: str = "",
                       flag_values: flags.FlagValues = FLAGS) -> flags.FlagHolder:
    """``--preset``: the settings to start from; every other flag overrides them."""
    return flags.DEFINE_enum("preset", default, list(presets),
                             help or "Settings to start from; every flag left unset takes the preset's value.",
                             flag_values=flag_values)


def preset(presets: Mapping[str, T], flag_values: flags.FlagValues = FLAGS) -> T:
    """The preset ``--preset`` names."""
    return presets[flag_values.preset]


def define_seed_flags(count: int | None = None, first: int = 0, flag_values: flags.FlagValues = FLAGS) -> None:
    """``--seeds`` (how many winning tickets) and ``--first_seed``: seeds first_seed .. first_seed + seeds - 1."""
    define_flag("seeds", int | None, count, "Number of winning tickets: seeds first_seed, first_seed + 1, ...",
                min=1, flag_values=flag_values)
    define_flag("first_seed", int, first, "First seed.", min=0, flag_values=flag_values)


def seeds_from_flags(count: int, flag_values: flags.FlagValues = FLAGS) -> tuple[int, ...]:
    """The seeds ``--seeds``/``--first_seed`` name; ``count`` (the preset's) when ``--seeds`` is unset."""
    n, first = given("seeds", count, flag_values), flag_values.first_seed
    return tuple(range(first, first + n))
