"""Validation at the edges (command line, sweep files, environment): types, ranges, names and canonical values,
each checked before any work and reported as one ``ValueError`` line naming the input and the problem.

* Names (device ids, sweep names) are names, never paths: ``check_name``.
* A path built from a name stays inside its root: ``inside``.
* Seeds are integers in ``0 <= seed <= MAX_SEED``: ``check_seed``.
* A pulse width within ``measurements.PULSE_WIDTH_RTOL`` of a measured one is that width: ``canonical_pulse_width``;
  two widths of one sweep that agree within it are the same width: ``check_distinct_widths``.
* A value read from a file has the type of the field it sets: ``check_type``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable

from . import measurements

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
"""A name: letters, digits, ``. _ + -``, starting with a letter or digit (so never ``..``, ``/x`` or ``~``)."""

MAX_NAME_LENGTH = 128
"""Longest accepted name (file names are built from names)."""

MAX_SEED = 2**59 - 1
"""Largest seed: layer ``i`` of a run seeds its pulse kernels with ``16 * seed + i`` (``training.loop.build_network``),
which numba types as int64, so ``16 * seed + 15 < 2**63``."""


def check_name(value: Any, what: str) -> str:
    """``value`` if it is a name (``NAME_PATTERN``, at most ``MAX_NAME_LENGTH`` characters); ValueError otherwise:
    device ids and sweep names become file names, so ``../x`` or ``/elsewhere/x`` must never reach a path."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a name (text), got {type(value).__name__} {value!r}")
    if not NAME_PATTERN.match(value) or len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} {value!r} is not a name: use letters, digits and . _ + - (starting with a letter "
                         f"or digit, at most {MAX_NAME_LENGTH} characters), never a path")
    return value


def inside(path: Path | str, root: Path | str, what: str) -> Path:
    """``path`` if it resolves inside ``root``; ValueError naming ``what`` otherwise."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(f"{what} {path}: resolves to {resolved}, outside {base}")
    return Path(path)


def check_seed(value: Any, what: str = "seed") -> int:
    """``value`` if it is an integer (not a bool, not a float) in ``0..MAX_SEED``; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{what} must be in 0..{MAX_SEED} (2**59 - 1: kernels seed with 16 * seed + layer as int64), "
                         f"got {value}")
    return value


def check_positive_int(value: Any, what: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool, not text); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {type(value).__name__} {value!r}")
    return value


def check_list(value: Any, what: str) -> list:
    """``value`` as a list if it is a list or tuple; ValueError (``seeds = 1`` instead of ``[1]``) otherwise."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{what} must be a list, got {type(value).__name__} {value!r} (write [{value!r}])")
    return list(value)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type hint ``hint`` (int, float, str, bool, None, unions, tuples and lists of
    these); an int fits float, a bool fits only bool."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value) if args else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return hint is Any
    if hint is float:
        return isinstance(value, (int, float))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _hint_text(hint: Any) -> str:
    text = str(hint) if typing.get_origin(hint) else getattr(hint, "__name__", str(hint))
    return text.replace("typing.", "").replace("NoneType", "None")


def check_type(value: Any, hint: Any, what: str) -> Any:
    """``value`` if it fits the type hint ``hint`` (``_matches``); ValueError naming ``what`` otherwise, e.g.
    ``epochs must be int, got str '1'``."""
    if not _matches(value, hint):
        hint_note = ""
        if isinstance(value, str) and (_matches(1.5, hint) or _matches(1, hint)):
            with contextlib.suppress(ValueError):
                float(value)
                hint_note = " (a number in quotes, or YAML's 2e-8: write it unquoted, in YAML as 2.0e-8)"
        raise ValueError(f"{what} must be {_hint_text(hint)}, got {type(value).__name__} {value!r}{hint_note}")
    return value


def check_fields(values: dict, cls: type, what: str) -> None:
    """Every entry of ``values`` has the type of the dataclass field of ``cls`` it sets (``check_type``); the seed
    is also range-checked (``check_seed``). A preset name or table of fields for a dataclass field (``forward_io =
    "aihwkit_default"``) is left to ``cls``, which coerces and checks it."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name in hints and not (dataclasses.is_dataclass(hints[name]) and isinstance(value, (str, dict))):
            check_type(value, hints[name], f"{what} {name}")  # a preset name or table: ``cls`` coerces and checks it
        if name == "seed":
            check_seed(value, f"{what} seed")


def measured_widths(device_id: str, source: str | Path | None = None) -> list[float]:
    """The pulse widths (s) measured for ``device_id`` (from the file headers); empty where there are none or the
    measurements cannot be found."""
    try:
        return measurements.measured_pulse_widths(device_id, source)
    except (OSError, measurements.MeasurementError):
        return []


def canonical_pulse_width(device_id: str, width: float, source: str | Path | None = None) -> float:
    """The measured pulse width of ``device_id`` within ``measurements.PULSE_WIDTH_RTOL`` of ``width`` (so
    ``2.00001e-8`` and ``2e-8`` are one run, under one key), else ``width`` unchanged."""
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        return width
    for measured in measured_widths(device_id, source):
        if math.isclose(measured, width, rel_tol=measurements.PULSE_WIDTH_RTOL):
            return measured
    return float(width)


def check_distinct_widths(widths: Iterable[float], what: str = "pulse_widths") -> None:
    """ValueError if two widths agree within ``measurements.PULSE_WIDTH_RTOL`` (they would train the same run
    twice under two keys)."""
    ordered = sorted(float(w) for w in widths)
    for low, high in zip(ordered, ordered[1:]):
        if math.isclose(low, high, rel_tol=measurements.PULSE_WIDTH_RTOL):
            raise ValueError(f"{what}: {low:g} and {high:g} are the same pulse width (within "
                             f"{measurements.PULSE_WIDTH_RTOL:g} relative); give it once")
