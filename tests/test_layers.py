"""Layering: lower modules never import higher ones, and model code never imports matplotlib."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from ferrolib import paths

PACKAGE = paths.ROOT / "ferrolib"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "paths", "provenance", "_download", "mnist", "threads", "host", "moved"),  # every layer may use
    ("measurements", "units", "kernels", "validation"),
    ("devices", "symmetry", "fitted", "aihwkit_export"),
    ("fitting", "physics"),
    ("catalog",),
    ("training",),
    ("energy", "convergence"),
    ("sweep", "analysis", "sourcedata", "splimits_analysis"),
    ("study", "splimits", "store"),
    ("plotting", "cli", "site", "papermill_ipc", "__main__"),
)
"""Bottom to top: a module may import its own layer and the layers below it."""

RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def top_module(path: Path) -> str:
    """``ferrolib/training/pulsed.py`` -> ``training``; ``ferrolib/devices.py`` -> ``devices``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_modules(path: Path) -> set[str]:
    """Top-level ferrolib modules that ``path`` imports anywhere (module level, functions, TYPE_CHECKING)."""
    package_depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for ferrolib/x.py, 1 for ferrolib/sub/x.py
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "ferrolib":
                    found.update([parts[1]] if len(parts) > 1 else [alias.name for alias in node.names])
                continue
            up = node.level - 1 - package_depth  # levels above the package root (negative: inside a subpackage)
            if up > 0:
                continue
            if up == 0:  # relative to ferrolib itself
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            else:
                found.add(top_module(path))  # within its own subpackage
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ferrolib."))
    return found


def test_every_module_has_a_layer():
    modules = {top_module(p) for p in PACKAGE.rglob("*.py")}
    assert modules <= set(RANK), f"modules without a layer: {sorted(modules - set(RANK))}"


def test_moved_names_resolve_from_the_module_they_came_from():
    from ferrolib import analysis, devices
    from ferrolib.training import pulsed

    for old in (devices, analysis, pulsed):
        for name, new in old.MOVED_NAMES.items():
            module = importlib.import_module(f"{old.__name__.rpartition('.')[0]}.{new}")
            assert getattr(old, name) is getattr(module, name), f"{old.__name__}.{name}"
            assert name not in vars(old), f"{old.__name__}.{name} is defined twice"
        with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
            getattr(old, "not_a_name")


def test_no_module_imports_a_higher_layer():
    violations = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in sorted(imported_modules(path))
        if name in RANK and RANK[name] > RANK[top_module(path)]
    ]
    assert not violations, "\n".join(violations)


def test_the_import_parser_sees_relative_absolute_and_nested_imports(tmp_path):
    assert {"devices", "kernels", "units"} <= imported_modules(PACKAGE / "fitting.py") | imported_modules(
        PACKAGE / "fitted.py")
    assert "catalog" in imported_modules(PACKAGE / "training" / "run.py")  # a function-level import
    assert "training" in imported_modules(PACKAGE / "training" / "__init__.py")


@pytest.mark.slow
@pytest.mark.parametrize("modules", [("devices", "fitting", "measurements", "catalog", "units", "kernels",
                                      "physics", "training", "energy", "sweep")])
def test_model_code_does_not_import_matplotlib(modules):
    code = "; ".join(f"import ferrolib.{m}" for m in modules) + "; import sys; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.ROOT, check=True)
    assert result.stdout.strip() == "False"
