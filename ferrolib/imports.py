"""The import graph of ferrolib, read statically: which ferrolib modules a Python file imports anywhere (module
level, inside functions, under ``TYPE_CHECKING``), and everything those import in turn.

Two readers: ``tests/test_layers.py`` (lower layers never import higher ones) and the Makefile, which makes each
executed notebook depend on exactly the ferrolib files it can reach (``notebook_rules``), so a changed module
re-runs the notebooks that import it and no other. Standard library only: the Makefile runs it before any
environment exists.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
"""The ``ferrolib`` package folder."""


def top_module(path: Path) -> str:
    """``ferrolib/training/pulsed.py`` -> ``training``; ``ferrolib/devices.py`` -> ``devices``."""
    return Path(path).resolve().relative_to(PACKAGE).with_suffix("").parts[0]


def imported_modules(path: Path) -> set[str]:
    """Top-level ferrolib modules that ``path`` imports anywhere. A file outside the package (a notebook) counts
    its absolute ``ferrolib`` imports only; a module inside counts its relative ones too."""
    path = Path(path).resolve()
    inside = path.is_relative_to(PACKAGE)
    package_depth = len(path.relative_to(PACKAGE).parts) - 1 if inside else 0  # 1 for ferrolib/sub/x.py
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "ferrolib":
                    found.update([parts[1]] if len(parts) > 1 else [alias.name for alias in node.names])
                continue
            up = node.level - 1 - package_depth  # levels above the package root (negative: inside a subpackage)
            if not inside or up > 0:
                continue
            if up == 0:  # relative to ferrolib itself
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            else:
                found.add(top_module(path))  # within its own subpackage
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ferrolib."))
    return found


def module_sources(name: str) -> list[Path]:
    """The Python files of top-level module ``name``: ``ferrolib/<name>.py``, or every ``.py`` of
    ``ferrolib/<name>/``."""
    folder = PACKAGE / name
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [p for p in [PACKAGE / f"{name}.py"] if p.exists()]


def module_files(name: str) -> list[Path]:
    """``module_sources(name)`` and the package's data files (``ferrolib/*.tsv``, ...) that those name."""
    sources = module_sources(name)
    text = "".join(source.read_text() for source in sources)
    data = [p for p in sorted(PACKAGE.iterdir()) if p.is_file() and p.suffix not in (".py", ".pyc")]
    return sources + [p for p in data if p.name in text]


def reachable_modules(path: Path) -> set[str]:
    """Every top-level ferrolib module that importing ``path`` can load: its imports, theirs, and so on, with the
    package's ``__init__`` (which any ``ferrolib`` import runs)."""
    seen: set[str] = set()
    pending = imported_modules(path) | {"__init__"}
    while pending:
        name = pending.pop()
        seen.add(name)
        for source in module_sources(name):
            pending |= imported_modules(source) - seen
    return {name for name in seen if module_sources(name)}  # not names imported from the package (__version__)


def notebook_rules(notebooks: list[Path], targets: list[str]) -> str:
    """Make rules ``<target>/<notebook>.ipynb: <ferrolib files it can reach>``, one per notebook and target
    folder, with paths relative to the repository (the package's parent folder)."""
    root = PACKAGE.parent
    lines = []
    for notebook in notebooks:
        files = sorted({file for name in reachable_modules(Path(notebook)) for file in module_files(name)})
        prerequisites = " ".join(str(file.relative_to(root)) for file in files)
        lines += [f"{target}/{Path(notebook).stem}.ipynb: {prerequisites}" for target in targets]
    return "\n".join(lines) + "\n"
