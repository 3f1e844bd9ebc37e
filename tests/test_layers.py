"""Layering: lower modules never import higher ones, and model code never imports matplotlib."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from ferrolib import paths
from ferrolib.imports import PACKAGE, imported_modules, top_module

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "paths", "provenance", "_download", "mnist", "threads", "host", "imports", "moved"),  # all may use
    ("measurements", "units", "kernels", "validation"),
    ("devices", "symmetry", "fitted", "aihwkit_export"),
    ("fitting", "physics"),
    ("catalog",),
    ("training",),
    ("energy", "convergence"),
    ("sweep", "analysis", "sourcedata", "splimits_analysis", "parity", "transfer_analysis"),
    ("study", "splimits", "store", "comparison"),
    ("plotting", "cli", "site", "papermill_ipc", "__main__"),
)
"""Bottom to top: a module may import its own layer and the layers below it."""

RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def test_every_module_has_a_layer():
    modules = {top_module(p) for p in PACKAGE.rglob("*.py")}
    assert modules <= set(RANK), f"modules without a layer: {sorted(modules - set(RANK))}"


def test_moved_names_resolve_from_the_module_they_came_from():
    from ferrolib import analysis, devices
    from ferrolib.training import pulsed, run

    for old in (devices, analysis, pulsed, run):
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
    assert "catalog" in imported_modules(PACKAGE / "training" / "config.py")  # a function-level import
    assert "training" in imported_modules(PACKAGE / "training" / "__init__.py")


@pytest.mark.slow
@pytest.mark.parametrize("modules", [("devices", "fitting", "measurements", "catalog", "units", "kernels",
                                      "physics", "training", "energy", "sweep")])
def test_model_code_does_not_import_matplotlib(modules):
    code = "; ".join(f"import ferrolib.{m}" for m in modules) + "; import sys; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.ROOT, check=True)
    assert result.stdout.strip() == "False"
