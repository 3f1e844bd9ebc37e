"""Unit formatting shared by model code, file naming, reports and figures (no plotting dependencies)."""
from __future__ import annotations

_TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))


def format_pulse_width(seconds: float) -> str:
    """Human label of a pulse width, three significant digits in the largest unit that keeps it >= 1
    (within 0.1 %): 2e-08 -> '20 ns', 2e-4 -> '200 us'."""
    for unit, factor in _TIME_UNITS:
        if seconds >= factor * 0.999:
            return f"{seconds / factor:.3g} {unit}"
    return f"{seconds:.3g} s"


def pulse_width_label(seconds: float) -> str:
    """File-name label of a pulse width (``format_pulse_width`` without the space): 2e-08 -> '20ns'."""
    return format_pulse_width(seconds).replace(" ", "")
