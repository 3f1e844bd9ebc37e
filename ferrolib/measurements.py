"""Measured pulse responses: read, validate and find ``*_Summary.dat`` files (LBE247 format).

A Summary.dat file has four comma-separated header blocks, each a header line and one value line,
except the last, which has one row per programming pulse::

    test_date,test_time,device_name,device_id                 (who and when)
    groundWGFMU,...,startVolage1,...,pulseWidth,...           (instrument settings)
    VStartPos (V),...,twidth (s),onOffRatio,...               (an earlier analysis' summary row)
    Pulse Number,index,Pulse Amplitude (V),R_low (ohm),R_high (ohm)
    1,1,0.742,124410604.76,144264754.678
    ...

Every pulse is followed by a read from -0.1 V to +0.1 V; ``R_low`` = R(-0.1 V), ``R_high`` = R(+0.1 V) and
the conductance is ``G = (1/R_low + 1/R_high) / 2``. Positive pulses decrease G (depression, "down",
polarity +1), negative pulses increase G (potentiation, "up", polarity -1).

Where the files come from (``resolve_source``): an explicit directory, else ``$FERROLIB_MEASUREMENTS``,
else the shared folder beside the repository, else a download of the public repository
PaU1570/msc_project at a pinned commit into the cache, every file checked against the SHA-256 of the
manifest shipped with ferrolib (``lbe247_manifest.tsv``).
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence
from urllib.parse import quote

import numpy as np
import pandas
import xarray as xr

from . import paths
from ._download import ChecksumError, verified_download

MAIN_DEVICES: tuple[str, ...] = ("ID170ZR5000", "ID161ZR15000")
"""The two devices the paper's training results are built on."""

PAPER_PULSE_WIDTHS: tuple[float, ...] = (2e-8, 2e-7, 2e-6, 2e-5, 2e-4)
"""The pulse widths (s) of the paper: 20 ns to 0.2 ms."""

SOURCE_REPOSITORY = "PaU1570/msc_project"
"""Public GitHub repository the LBE247 measurements come from (MIT licence)."""

SOURCE_COMMIT = "a5538c9a9384cc096acb1eb912bddf83ae8bf249"
"""The pinned commit of ``SOURCE_REPOSITORY``."""

SOURCE_BASE_URL = f"https://raw.githubusercontent.com/{SOURCE_REPOSITORY}/{SOURCE_COMMIT}/"
"""Raw-file URL prefix; a manifest ``source_path`` (URL-encoded) completes it."""

SUMMARY_GLOB = "*_Summary.dat"
"""File name pattern of a measurement file, searched recursively."""

PULSE_WIDTH_RTOL = 1e-3
"""Relative tolerance when matching pulse widths (files store e.g. ``2e-08``)."""

OUTLIER_Z = 6.0
"""Robust z-score above which a read is flagged as an outlier (see ``flag_outliers``)."""

OUTLIER_ISOLATION = 2.0
"""A flagged read must depart from its neighbours' mean by this many times their own difference."""

DOWNLOAD_TIMEOUT_S = 10.0
"""Network timeout (s) of a single measurement download."""

_OCTAGON_AREA_FACTOR = 34.0 / 9.0
_DEVICE_ID = re.compile(r"^ID(?P<number>\d+)(?P<series>[A-Z]+?)(?P<size>\d+)?(?P<shape>Oct|Star|Circ)?$")

_IDENTITY_COLUMNS = ("test_date", "test_time", "device_id")
_RAMP_COLUMNS = {
    "startVolage1": ("ramp_pos_start_V", "start voltage of the positive (depression) ramp"),
    "endVoltage1": ("ramp_pos_end_V", "end voltage of the positive (depression) ramp"),
    "startVolage2": ("ramp_neg_start_V", "start voltage of the negative (potentiation) ramp"),
    "endVoltage2": ("ramp_neg_end_V", "end voltage of the negative (potentiation) ramp"),
    "stepSize": ("ramp_step_V", "amplitude step between successive pulses"),
    "riseTime": ("rise_time_s", "pulse rise time"),
    "fallTime": ("fall_time_s", "pulse fall time"),
    "pulseWidth": ("pulse_width_s", "programming pulse width"),
    "pulseDelay": ("pulse_delay_s", "delay between pulses"),
}
_SUMMARY_PULSE_WIDTH = "twidth (s)"
_PULSE_COLUMNS = ("Pulse Number", "Pulse Amplitude (V)", "R_low (ohm)", "R_high (ohm)")
_PULSE_COUNT_COLUMNS = {"num_LTP": (1, "positive"), "num_LTD": (-1, "negative")}
"""Summary-block pulse counts: the earlier analysis calls the positive-pulse ramp LTP and the negative one LTD
(checked on all 44 LBE247 files: num_LTP = positive pulses, num_LTD = negative pulses), whatever G does."""


class MeasurementError(ValueError):
    """A measurement file or source that cannot be used; the message names the file and the problem."""


class MeasurementWarning(UserWarning):
    """A file in a measurement folder that was skipped; the message names the file and the reason."""


# --------------------------------------------------------------------------------------------- area
def device_area(device_id: str) -> float:
    """Device area in m^2 from its id, NaN where the shape's area rule is unknown.

    Rule: ids read ``ID<n><series><size>[shape]`` with ``size`` = feature size s in nm. Octagons, i.e.
    the "ZR" series without a shape suffix and every "...Oct" device, have area ``(34/9) s^2``
    (ZR5000: 94.4 um^2). Stars, circles ("Circ": whether s is a diameter is not documented) and ids
    without a size (e.g. "ID294YR") return NaN; ``area_note(device_id)`` says why.
    """
    match = _DEVICE_ID.match(device_id)
    if match is None or match["size"] is None:
        return math.nan
    octagon = match["shape"] == "Oct" or (match["shape"] is None and match["series"] == "ZR")
    if not octagon:
        return math.nan
    side = int(match["size"]) * 1e-9
    return _OCTAGON_AREA_FACTOR * side**2


def area_note(device_id: str) -> str:
    """One line explaining how ``device_area`` treated this id."""
    if math.isnan(device_area(device_id)):
        return f"area unknown: '{device_id}' is not an octagon with a feature size in its id (NaN)"
    return "octagon: area = (34/9) * s^2, s = trailing number of the device id in nm"


# ---------------------------------------------------------------------------------------- parsing
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _split(line: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader([line]))]


def _block(path: Path, lines: list[str], start: int, required: tuple[str, ...], name: str) -> dict[str, str]:
    """The header line ``lines[start]`` and its value line as a dict; checks the required columns."""
    if len(lines) < start + 2:
        raise MeasurementError(f"{path}: missing header block '{name}' (file ends at line {len(lines)})")
    header, values = _split(lines[start]), _split(lines[start + 1])
    missing = [column for column in required if column not in header]
    if missing:
        raise MeasurementError(
            f"{path}: header block '{name}' expected at line {start + 1} lacks column(s) {missing}; "
            f"found {header[:6]}..."
        )
    if len(values) != len(header):
        raise MeasurementError(
            f"{path}: line {start + 2} has {len(values)} values for the {len(header)} columns of block '{name}'"
        )
    return dict(zip(header, values))


def _number(path: Path, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise MeasurementError(f"{path}: {what} is not a number: {text!r}") from None


def _attr_name(column: str) -> str:
    """``'VStartPos (V)'`` -> ``'VStartPos_V'`` (netCDF-safe attribute suffix)."""
    return re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z]+", "_", column)).strip("_")


def _attr_value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class _Header:
    identity: dict[str, str]
    instrument: dict[str, str]
    summary: dict[str, str]
    pulse_width_s: float


def _decode(path: Path, data: bytes) -> str:
    """The text of a measurement file's bytes: UTF-8 with or without a byte-order mark; a file holding NUL bytes or
    invalid UTF-8 is not a measurement (MeasurementError naming the file)."""
    if b"\x00" in data:
        raise MeasurementError(f"{path}: not a text file (binary content: NUL byte at offset {data.index(0)})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise MeasurementError(f"{path}: not a text file (invalid UTF-8 at byte {error.start})") from None


def _read_lines(path: Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise MeasurementError(f"{path}: no such measurement file")
    return [line for line in _decode(path, path.read_bytes()).splitlines() if line.strip()]


def _parse_header(path: Path, lines: list[str]) -> _Header:
    identity = _block(path, lines, 0, _IDENTITY_COLUMNS, "test_date,test_time,device_name,device_id")
    instrument = _block(path, lines, 2, tuple(_RAMP_COLUMNS), "instrument settings")
    summary = _block(path, lines, 4, (_SUMMARY_PULSE_WIDTH,), "analysis summary")
    width = _number(path, instrument["pulseWidth"], "pulseWidth")
    summary_width = _number(path, summary[_SUMMARY_PULSE_WIDTH], _SUMMARY_PULSE_WIDTH)
    if not (width > 0 and math.isfinite(width)):
        raise MeasurementError(f"{path}: pulseWidth must be a positive number of seconds, got {width}")
    if not math.isclose(width, summary_width, rel_tol=PULSE_WIDTH_RTOL):
        raise MeasurementError(
            f"{path}: pulse width disagrees between the instrument block (pulseWidth = {width:g} s) "
            f"and the summary block (twidth = {summary_width:g} s)"
        )
    if not identity["device_id"]:
        raise MeasurementError(f"{path}: empty device_id")
    return _Header(identity, instrument, summary, width)


def _test_datetime(path: Path, identity: dict[str, str]) -> str:
    text = f"{identity['test_date']} {identity['test_time']}"
    for layout in ("%d.%m.%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, layout).isoformat()
        except ValueError:
            continue
    raise MeasurementError(f"{path}: test_date/test_time not understood: {text!r}")


def _pulse_table(path: Path, lines: list[str]) -> np.ndarray:
    """Rows of (pulse number, amplitude, R_low, R_high) as floats, validated."""
    header_line = 6
    if len(lines) <= header_line:
        raise MeasurementError(f"{path}: missing the pulse table block ('{','.join(_PULSE_COLUMNS)}')")
    header = _split(lines[header_line])
    missing = [column for column in _PULSE_COLUMNS if column not in header]
    if missing:
        raise MeasurementError(f"{path}: pulse table header at line {header_line + 1} lacks column(s) {missing}")
    columns = [header.index(column) for column in _PULSE_COLUMNS]
    body = lines[header_line + 1 :]
    if not body:
        raise MeasurementError(f"{path}: the pulse table has no rows")
    table = _parse_rows_fast(body, len(header), columns)
    if table is None:
        table = _parse_rows(path, body, header, columns, first_line=header_line + 2)
    resistances = table[:, 2:4]
    bad = ~(np.isfinite(resistances) & (resistances > 0))
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise MeasurementError(
            f"{path}: non-positive or non-finite resistance at line {header_line + 2 + row}: {resistances[row].tolist()}"
        )
    amplitude = table[:, 1]
    if not np.isfinite(amplitude).all() or (amplitude == 0).any():
        row = int(np.flatnonzero(~np.isfinite(amplitude) | (amplitude == 0))[0])
        raise MeasurementError(f"{path}: pulse amplitude at line {header_line + 2 + row} has no polarity: {amplitude[row]}")
    for sign, ramp in ((1, "positive (depression)"), (-1, "negative (potentiation)")):
        if not (np.sign(amplitude) == sign).any():
            raise MeasurementError(f"{path}: empty ramp: no {ramp} pulses")
    return table


def _parse_rows(path: Path, body: list[str], header: list[str], columns: list[int], first_line: int) -> np.ndarray:
    """Reference parser of the pulse rows: one line at a time, the first bad cell named with its line number."""
    rows = []
    for offset, line in enumerate(body, start=first_line):
        cells = _split(line)
        if len(cells) != len(header):
            raise MeasurementError(f"{path}: line {offset} has {len(cells)} values, the pulse table has {len(header)}")
        rows.append([_number(path, cells[c], f"line {offset}, column '{header[c]}'") for c in columns])
    return np.asarray(rows, dtype=float)


def _parse_rows_fast(body: list[str], n_columns: int, columns: list[int]) -> np.ndarray | None:
    """The pulse rows parsed at once (numpy's C parser, same values as ``_parse_rows``), or None when any row is
    irregular (quotes, a wrong number of cells, a cell that is not a number): then ``_parse_rows`` finds and names
    the problem."""
    if any('"' in line or line.count(",") != n_columns - 1 for line in body):
        return None
    try:
        return np.loadtxt(body, delimiter=",", usecols=columns, dtype=float, ndmin=2, comments=None)
    except ValueError:
        return None


def _check_pulse_counts(path: Path, summary: dict[str, str], polarity: np.ndarray) -> None:
    """The pulses per polarity must match the counts the file's summary block states (``num_LTP``: positive
    pulses, ``num_LTD``: negative pulses, see ``_PULSE_COUNT_COLUMNS``), where it states them: a file cut short
    at a line boundary parses cleanly otherwise."""
    for column, (sign, ramp) in _PULSE_COUNT_COLUMNS.items():
        if column not in summary:
            continue
        stated = _number(path, summary[column], f"summary block {column}")
        found = int(np.count_nonzero(polarity == sign))
        if stated != found:
            raise MeasurementError(
                f"{path}: {found} {ramp} pulses in the pulse table but the summary block states {column} = "
                f"{summary[column]} (file truncated or edited?)"
            )


SUMMARY_WINDOW_ROUNDING_V = 0.05
"""Half the 0.1 V resolution to which the summary block states its analysis windows (``VEndPos (V)``, ...)."""

_RAMP_ENDS = {1: ("ramp_pos_start_V", "ramp_pos_end_V", "VEndPos (V)", "positive"),
              -1: ("ramp_neg_start_V", "ramp_neg_end_V", "VEndNeg (V)", "negative")}


def _check_ramps(path: Path, instrument: dict[str, str], summary: dict[str, str], amplitude: np.ndarray) -> None:
    """The pulses of each polarity against the header's ramp settings (start, end and step voltages): their
    amplitudes are successive points ``start + k step`` of the ramp (no row lost inside it), no more than the ramp
    holds, and, where the summary block states the analysis window's end (``VEndPos``/``VEndNeg``), the last pulse
    reaches it within one step and the window's rounding: a file cut short at a line boundary fails here even
    without ``num_LTP``/``num_LTD``. All 44 LBE247 files pass (their last pulse lies at most one step short)."""
    values = {name: _number(path, instrument[column], column) for column, (name, _) in _RAMP_COLUMNS.items()
              if column in ("startVolage1", "endVoltage1", "startVolage2", "endVoltage2", "stepSize")}
    step = abs(values["ramp_step_V"])
    if not (math.isfinite(step) and step > 0):
        return
    for sign, (start_name, end_name, window, ramp) in _RAMP_ENDS.items():
        start, end = abs(values[start_name]), abs(values[end_name])
        found = np.abs(amplitude[np.sign(amplitude) == sign])
        k = (found - start) / step
        if np.abs(k - np.round(k)).max() > 1e-6 or (np.diff(np.round(k)) != 1).any():
            raise MeasurementError(f"{path}: the {ramp} pulse amplitudes are not successive steps of the ramp "
                                   f"{start:g} V + k * {step:g} V of the header (rows lost or edited?)")
        holds = math.floor((end - start) / step + 0.5) + 1
        if found.size > holds:
            raise MeasurementError(f"{path}: {found.size} {ramp} pulses but the header's ramp ({start:g} V to "
                                   f"{end:g} V in steps of {step:g} V) holds at most {holds}")
        if window in summary:
            target = min(end, abs(_number(path, summary[window], f"summary block {window}")))
            if found[-1] < target - step - SUMMARY_WINDOW_ROUNDING_V - 1e-9:
                expected = math.floor((target - found[0]) / step + 1e-9) + 1
                raise MeasurementError(
                    f"{path}: the {ramp} ramp ends at {found[-1]:g} V after {found.size} pulses, but the header's "
                    f"ramp settings ({start:g} V to {min(end, target):g} V in steps of {step:g} V) expect about "
                    f"{expected} (file truncated?)")


def _check_complete(path: Path) -> None:
    """The file ends with a line break: its last row was written whole (a file cut mid-number would otherwise
    lose digits of its last read without a message; all 44 LBE247 files end with one)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) not in (b"\n", b"\r"):
            raise MeasurementError(f"{path}: the last line has no line break: the file was cut short mid-line "
                                   "(its last read would be damaged); restore the whole file")


def flag_outliers(conductance: np.ndarray, z_threshold: float = OUTLIER_Z, isolation: float = OUTLIER_ISOLATION) -> np.ndarray:
    """Flag isolated outlier reads in a pulse sequence of conductances (never drops them).

    With ``y = ln G`` and the spike ``s_k = y_k - (y_{k-1} + y_{k+1}) / 2`` (an end point is compared with
    the straight line through its two neighbours instead), a read is an outlier when both

    * its robust z-score ``|s_k - median(s)| / (1.4826 MAD(s))`` exceeds ``z_threshold``, and
    * it is isolated: ``|s_k| > isolation * |y_{k+1} - y_{k-1}|``, i.e. it departs from its neighbours
      far more than they differ from each other (this spares the steep parts and kinks of a ramp).
    """
    y = np.log(np.asarray(conductance, dtype=float))
    if y.size < 3:
        return np.zeros(y.size, dtype=bool)
    spike = np.empty_like(y)
    across = np.empty_like(y)
    spike[1:-1] = y[1:-1] - (y[:-2] + y[2:]) / 2
    across[1:-1] = np.abs(y[2:] - y[:-2])
    spike[0], across[0] = y[0] - (2 * y[1] - y[2]), abs(y[2] - y[1])
    spike[-1], across[-1] = y[-1] - (2 * y[-2] - y[-3]), abs(y[-3] - y[-2])
    centre = np.median(spike)
    scale = 1.4826 * np.median(np.abs(spike - centre))
    scale = max(scale, np.finfo(float).eps * max(1.0, float(np.abs(y).max())))
    return (np.abs(spike - centre) / scale > z_threshold) & (np.abs(spike) > isolation * across)


def measurement_name(path: str | Path, root: str | Path | None = None) -> tuple[str, str]:
    """``(root label, name relative to the root)`` of a measurement file, e.g. ``('LBE247',
    'ID170ZR5000/ID170ZR5000_20241024132232_Summary.dat')``: what provenance records instead of a machine's path.

    The root is ``root`` when given (the file must lie under it), else the folder above the device folder in the
    LBE247 layout ``<root>/<device id>/<file>`` (a parent folder named like an LBE247 device id), else the
    file's own folder. The label is the root folder's name.
    """
    path = Path(path).resolve()
    if root is None:
        parent = path.parent
        root = parent.parent if _DEVICE_ID.match(parent.name) else parent
    root = Path(root).resolve()
    try:
        relative = path.relative_to(root)
    except ValueError:
        raise MeasurementError(f"{path}: not inside the measurement root {root}") from None
    return root.name, relative.as_posix()


def read_summary(path: str | Path, root: str | Path | None = None) -> xr.Dataset:
    """Read and validate one ``*_Summary.dat`` file into a Dataset with dim ``pulse``.

    Variables: ``amplitude`` (V), ``polarity`` (+1 depression / -1 potentiation), ``R_low``, ``R_high``
    (ohm), ``G = (1/R_low + 1/R_high) / 2`` (S), ``outlier`` (see ``flag_outliers``). Attributes carry the
    device id, area, pulse width, ramp settings, the earlier analysis' row (``summary_*``) and the source:
    ``source_root`` (label of the measurement root, see ``measurement_name``), ``source_file`` (the name relative
    to it) and ``source_sha256``; the absolute path of this machine is not recorded. The file may start with a
    UTF-8 byte-order mark; its pulse counts per polarity must match the ``num_LTP``/``num_LTD`` of its summary
    block. Raises ``MeasurementError`` naming the file and the problem.
    """
    path = Path(path).resolve()
    lines = _read_lines(path)
    header = _parse_header(path, lines)
    table = _pulse_table(path, lines)
    pulse_number, amplitude, r_low, r_high = table.T
    _check_pulse_counts(path, header.summary, np.sign(amplitude))
    _check_ramps(path, header.instrument, header.summary, amplitude)
    _check_complete(path)
    source_root, source_name = measurement_name(path, root)
    conductance = (1.0 / r_low + 1.0 / r_high) / 2.0
    device_id = header.identity["device_id"]
    attrs: dict[str, Any] = {
        "device_id": device_id,
        "device_name": header.identity.get("device_name", ""),
        "area_m2": device_area(device_id),
        "area_note": area_note(device_id),
        "test_date": _test_datetime(path, header.identity),
        "data_kind": "measured",
        "source_root": source_root,
        "source_file": source_name,
        "source_sha256": _sha256(path),
        "outlier_rule": (
            f"robust z of s_k = lnG_k - (lnG_(k-1) + lnG_(k+1))/2 above {OUTLIER_Z} and "
            f"|s_k| > {OUTLIER_ISOLATION} |lnG_(k+1) - lnG_(k-1)|; flagged, never dropped"
        ),
    }
    for column, (name, _) in _RAMP_COLUMNS.items():
        attrs[name] = _number(path, header.instrument[column], column)
    for column, value in header.instrument.items():
        if column not in _RAMP_COLUMNS:
            attrs[f"instrument_{_attr_name(column)}"] = _attr_value(value)
    for column, value in header.summary.items():
        attrs[f"summary_{_attr_name(column)}"] = _attr_value(value)

    def variable(values: np.ndarray, units: str, long_name: str) -> tuple:
        return ("pulse", values, {"units": units, "long_name": long_name})

    return xr.Dataset(
        {
            "amplitude": variable(amplitude, "V", "programming pulse amplitude"),
            "polarity": variable(
                np.sign(amplitude).astype(np.int8), "1", "pulse polarity: +1 positive = depression, -1 negative = potentiation"
            ),
            "R_low": variable(r_low, "ohm", "read resistance at -0.1 V"),
            "R_high": variable(r_high, "ohm", "read resistance at +0.1 V"),
            "G": variable(conductance, "S", "conductance (1/R_low + 1/R_high)/2"),
            "outlier": variable(flag_outliers(conductance), "1", "isolated outlier read (flagged, kept)"),
        },
        coords={
            "pulse": np.arange(len(table)),
            "pulse_number": ("pulse", pulse_number.astype(np.int64), {"long_name": "pulse number in the file"}),
        },
        attrs=attrs,
    )


# ----------------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class ManifestEntry:
    """One measurement file of the LBE247 set: where it lies and how to check it."""

    file: str
    """Relative path in a measurement directory, ``<device>/<device>_<timestamp>_Summary.dat``."""
    source_path: str
    """Path in the source repository at ``SOURCE_COMMIT``."""
    sha256: str
    """SHA-256 of the file's bytes."""
    pulse_width_s: float
    """Pulse width (s)."""


def manifest() -> list[ManifestEntry]:
    """The shipped manifest of the LBE247 measurement files (paths and hashes only, no data)."""
    text = resources.files("ferrolib").joinpath("lbe247_manifest.tsv").read_text()
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return [ManifestEntry(r["file"], r["source_path"], r["sha256"], float(r["pulse_width_s"])) for r in rows]


# ------------------------------------------------------------------------------------------ sources
def download_measurements(
    cache_dir: str | Path | None = None,
    base_url: str = SOURCE_BASE_URL,
    downloader: Callable | None = None,
) -> Path:
    """Download every manifest file into ``cache_dir`` (default ``paths.CACHE / 'LBE247'``), SHA-256 checked.

    ``base_url`` and ``downloader`` (a pooch downloader) exist so the path can be exercised offline.
    Files already present with the right hash are not fetched again. Returns the directory.
    """
    directory = Path(cache_dir) if cache_dir else paths.CACHE / "LBE247"
    for entry in manifest():
        url = base_url + quote(entry.source_path, safe="/")
        try:
            verified_download(url, entry.sha256, directory / entry.file, DOWNLOAD_TIMEOUT_S, downloader)
        except ChecksumError as error:
            raise MeasurementError(str(error)) from None
    return directory


def _has_measurements(directory: Path) -> bool:
    return directory.is_dir() and next(directory.rglob(SUMMARY_GLOB), None) is not None


def resolve_source(source: str | Path | None = None) -> Path:
    """The directory to read measurements from.

    Order: ``source`` if given; else ``$FERROLIB_MEASUREMENTS``; else ``paths.SHARED_MEASUREMENTS`` if it
    holds measurements; else the download cache (``download_measurements``). An explicit directory or the
    environment variable must exist and hold ``*_Summary.dat`` files (searched recursively).
    """
    explicit = [(Path(source).expanduser(), "the given source")] if source is not None else []
    env = os.environ.get(paths.MEASUREMENTS_ENV)
    if not explicit and env:
        explicit = [(Path(env).expanduser(), f"${paths.MEASUREMENTS_ENV}")]
    for directory, origin in explicit:
        if not _has_measurements(directory):
            raise MeasurementError(f"{directory}: {origin} is not a directory holding {SUMMARY_GLOB} files")
        return directory.resolve()
    if _has_measurements(paths.SHARED_MEASUREMENTS):
        return paths.SHARED_MEASUREMENTS
    try:
        return download_measurements()
    except Exception as error:
        raise MeasurementError(
            "no device measurements found. Remedies: (1) pass a directory of *_Summary.dat files "
            f"(source=... or --source), (2) set ${paths.MEASUREMENTS_ENV} to such a directory, or (3) allow "
            f"the download from github.com/{SOURCE_REPOSITORY} (commit {SOURCE_COMMIT[:7]}) into "
            f"{paths.CACHE / 'LBE247'}; the download failed with: {error}"
        ) from error


# ------------------------------------------------------------------------------------------ finding
def _quick_header(path: Path) -> _Header:
    """The header blocks of a file, read from its first lines only."""
    with open(path, "rb") as handle:
        head = b"".join(line for _, line in zip(range(8), handle))
    return _parse_header(path, [line for line in _decode(path, head).splitlines() if line.strip()])


def _width_matches(width: float, wanted: float | None) -> bool:
    return wanted is None or math.isclose(width, wanted, rel_tol=PULSE_WIDTH_RTOL)


def find_measurements(
    device_id: str | None = None, pulse_width: float | None = None, source: str | Path | None = None
) -> list[Path]:
    """Sorted paths of the measurement files for a device and/or pulse width (relative tolerance 1e-3).

    The device id and pulse width are read from each file's header, so file names do not matter. A file that
    is not text (binary content, invalid UTF-8) is skipped with a ``MeasurementWarning`` naming it: it cannot be
    a measurement, and one stray file should not hide the others. A text file whose header is malformed raises
    ``MeasurementError`` naming the file and the problem (it looks like a measurement, so it must be fixed).
    """
    directory = resolve_source(source)
    found = []
    for path in sorted(directory.rglob(SUMMARY_GLOB)):
        try:
            header = _quick_header(path)
        except OSError as error:
            warnings.warn(f"skipped {path}: cannot be read ({error.strerror or error})", MeasurementWarning,
                          stacklevel=2)
            continue
        except MeasurementError as error:
            if "not a text file" not in str(error):
                raise
            warnings.warn(f"skipped {error}", MeasurementWarning, stacklevel=2)
            continue
        if (device_id is None or header.identity["device_id"] == device_id) and _width_matches(
            header.pulse_width_s, pulse_width
        ):
            found.append(path)
    return found


def measured_pulse_widths(device_id: str, source: str | Path | None = None) -> list[float]:
    """The distinct pulse widths (s) measured for ``device_id``, read from the file headers, ascending."""
    return sorted({_quick_header(path).pulse_width_s for path in find_measurements(device_id, source=source)})


def load_measurements(
    device_id: str,
    pulse_width: float | None = None,
    source: str | Path | None = None,
    select: Literal["all", "first", "last"] = "all",
) -> list[xr.Dataset]:
    """Read a device's measurements, ordered by pulse width then test date.

    Some widths were measured twice (ID161ZR15000 at 20 ns). ``select="all"`` keeps every file;
    ``"last"`` (or ``"first"``) keeps one per pulse width: the latest (earliest) by ``test_date``.
    """
    if select not in ("all", "first", "last"):
        raise ValueError(f"select must be 'all', 'first' or 'last', got {select!r}")
    paths_found = find_measurements(device_id, pulse_width, source)
    if not paths_found:
        width = "" if pulse_width is None else f" at pulse width {pulse_width:g} s"
        raise MeasurementError(f"{resolve_source(source)}: no measurement of device {device_id!r}{width}")
    root = resolve_source(source)
    datasets = sorted((read_summary(p, root) for p in paths_found), key=lambda d: (d.attrs["pulse_width_s"], d.attrs["test_date"]))
    if select == "all":
        return datasets
    chosen: dict[float, xr.Dataset] = {}
    for dataset in datasets if select == "last" else reversed(datasets):
        key = next((w for w in chosen if _width_matches(dataset.attrs["pulse_width_s"], w)), dataset.attrs["pulse_width_s"])
        chosen[key] = dataset
    return sorted(chosen.values(), key=lambda d: d.attrs["pulse_width_s"])


def load_ramps(device_ids: Sequence[str], source: str | Path | None = None, smoke: bool = False) -> dict[str, list[xr.Dataset]]:
    """The latest measurement per pulse width of every device (``load_measurements(select="last")``, ordered by
    width), keyed by device id: the ramps notebooks 01 and 02 plot and fit. ``smoke`` keeps the first device and
    its shortest and longest width."""
    chosen = list(device_ids)[:1] if smoke else list(device_ids)
    ramps = {}
    for device_id in chosen:
        loaded = load_measurements(device_id, source=source, select="last")
        ramps[device_id] = [loaded[0], loaded[-1]] if smoke else loaded
    return ramps


def describe_ramps(ramps: Mapping[str, Sequence[xr.Dataset]]) -> str:
    """One provenance line for ``load_ramps``' result, naming the measurement root by its label (no machine path):
    ``'measured LBE247 ramps (ID170ZR5000, ID161ZR15000; latest file per pulse width)'``."""
    roots = sorted({str(ds.attrs.get("source_root", "")) or "unlabelled" for sets in ramps.values() for ds in sets})
    return f"measured {', '.join(roots)} ramps ({', '.join(ramps)}; latest file per pulse width)"


def inventory(source: str | Path | None = None) -> pandas.DataFrame:
    """One row per measurement file: device, pulse width, pulse counts, on/off ratio, amplitudes, outliers."""
    rows = []
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always", MeasurementWarning)
        found = find_measurements(source=source)
    if not found:
        reasons = "; ".join(str(w.message).removeprefix("skipped ") for w in skipped)
        raise MeasurementError(f"{resolve_source(source)}: no readable measurement file ({reasons or 'none found'})")
    for warning in skipped:
        warnings.warn(warning.message, warning.category, stacklevel=2)
    for path in found:
        ds = read_summary(path)
        amplitude, polarity = ds["amplitude"].values, ds["polarity"].values
        down, up = amplitude[polarity > 0], amplitude[polarity < 0]
        rows.append(
            {
                "device_id": ds.attrs["device_id"],
                "pulse_width_s": ds.attrs["pulse_width_s"],
                "test_date": ds.attrs["test_date"],
                "n_pulses": ds.sizes["pulse"],
                "n_up": int(up.size),
                "n_down": int(down.size),
                "on_off_ratio": float(ds["G"].max() / ds["G"].min()),
                "G_min_S": float(ds["G"].min()),
                "G_max_S": float(ds["G"].max()),
                "down_amplitude_min_V": float(down.min()),
                "down_amplitude_max_V": float(down.max()),
                "up_amplitude_min_V": float(up.min()),
                "up_amplitude_max_V": float(up.max()),
                "n_outliers": int(ds["outlier"].sum()),
                "area_m2": ds.attrs["area_m2"],
                "file": str(path),
            }
        )
    return pandas.DataFrame(rows).sort_values(["device_id", "pulse_width_s", "test_date"], ignore_index=True)
