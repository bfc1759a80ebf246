"""The layout shows the architecture: the framework never imports the paper's reproduction or a
driver, the report imports no other driver, the on-disk names live in one module, no module is
over 500 lines and no driver over 350, and no package imports in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = sorted(p for p in (ROOT / "lth_jax").rglob("*.py") if "reproduction" not in p.parts)
LIBRARY = sorted((ROOT / "lth_jax").rglob("*.py"))
DRIVERS = sorted(p for p in (ROOT / "experiments").glob("*.py")
                 if p.stem not in ("__init__", "cli", "hparams", "distributed", "progress", "xla_cpu"))
# Array keys and file names of a run directory: only lth_jax/store/ondisk.py spells them.
ON_DISK = {"trained", "masks", "chain", "init_state", "snapshots", "settings.json", "export.json", ".lock", "logits"}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("path", FRAMEWORK, ids=_module)
def test_the_framework_imports_neither_the_reproduction_nor_a_driver(path):
    bad = {m for m in _imports(path) if m.startswith(("lth_jax.reproduction", "experiments"))}
    assert not bad, f"{_module(path)} imports {sorted(bad)}"


def test_no_driver_imports_another_driver():
    names = {_module(p) for p in DRIVERS}
    for path in DRIVERS:
        others = {m for m in _imports(path) if m in names and m != _module(path)}
        assert not others, f"{_module(path)} imports the drivers {sorted(others)}"


def test_modules_stay_under_500_lines_and_drivers_under_350():
    long = {_module(p): n for p in LIBRARY + sorted((ROOT / "experiments").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 500}
    assert not long
    long_drivers = {_module(p): n for p in DRIVERS if (n := len(p.read_text().splitlines())) > 350}
    assert not long_drivers


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    exports = {id(c) for n in tree.body if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets) for c in ast.walk(n.value)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings | exports]


def test_the_on_disk_names_are_spelled_in_one_module():
    spelled = []
    for path in LIBRARY + sorted((ROOT / "experiments").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "lth_jax/store/ondisk.py":
            continue
        for line, text in _string_constants(path):
            head = text.strip("/").split("/")[0]
            if text in ON_DISK or text.startswith("curves/") or ("/" in text and head in ON_DISK):
                spelled.append(f"{_module(path)}:{line}: {text!r}")
    assert not spelled


def test_no_two_library_units_import_each_other():
    """A package or top-level module of lth_jax depends on another in one direction only."""
    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    units = {unit(_module(p)) for p in LIBRARY} - {"lth_jax"}  # the top package re-exports the framework
    edges: dict[str, set[str]] = {}
    for path in LIBRARY:
        if (mine := unit(_module(path))) not in units:
            continue
        edges.setdefault(mine, set()).update(u for m in _imports(path) if (u := unit(m)) in units and u != mine)
    cycles = sorted(f"{a} <-> {b}" for a, deps in edges.items() for b in deps if a in edges.get(b, set()) and a < b)
    assert not cycles


def test_the_runner_package_has_no_import_cycle():
    """Inside lth_jax.runner each module depends only on the ones before it (spec first, execute last)."""
    order = ["spec", "plan", "check", "trials", "tickets", "rewind", "stored", "execute"]
    for i, name in enumerate(order):
        deps = {m.split(".")[2] for m in _imports(ROOT / "lth_jax" / "runner" / f"{name}.py")
                if m.startswith("lth_jax.runner.") and len(m.split(".")) >= 3}
        assert deps <= set(order[:i]), f"runner.{name} imports {sorted(deps - set(order[:i]))}"
