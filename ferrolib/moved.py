"""Names that moved to another module stay importable from the module they came from.

A module that gave names to modules built on it (which import it, so it cannot import them at load time) sets::

    MOVED_NAMES = {"FittedDevice": "fitted", ...}        # public name -> the ferrolib module that defines it
    __getattr__ = moved.forwarder(__name__, MOVED_NAMES)

and ``from ferrolib.devices import FittedDevice`` loads ``ferrolib.fitted`` on first use (PEP 562).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def forwarder(module_name: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module_name`` that returns each name of ``moved`` from its new module."""
    package = module_name.rpartition(".")[0]

    def __getattr__(name: str) -> Any:
        new_module = moved.get(name)
        if new_module is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{new_module}"), name)

    return __getattr__
