"""Device resolution and file naming: your measurements, else the committed fit, else (only when asked) a fit now; safe ids."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import MAIN_20NS_FILE
from ferrolib import catalog, paths
from ferrolib.cli import main
from ferrolib.devices import PiecewiseStep
from ferrolib.fitted import FittedDevice

HAVE_MEASUREMENTS = paths.SHARED_MEASUREMENTS.is_dir()
MARKER_CONFIG = PiecewiseStep(dw_min=0.01, piecewise_up=(2.0, 1.0, 0.0), piecewise_down=(0.0, 1.0, 2.0))


@pytest.mark.parametrize("device_id, safe", [("ID170ZR5000", "ID170ZR5000"), ("../escaped", "escaped"),
                                             ("a/b\\c d", "a_b_c_d"), ("..\\..\\x", "x"), ("ID-1_x", "ID-1_x")])
def test_ids_are_sanitised_before_they_name_a_file(tmp_path: Path, device_id: str, safe: str):
    assert catalog.safe_file_id(device_id) == safe
    path = catalog.fitted_device_path(device_id, 2e-8, "piecewise", tmp_path)
    assert path.parent == tmp_path and path.name == f"{safe}_20ns_piecewise.nc"


@pytest.mark.parametrize("device_id", ["", "..", "../..", "/", " . "])
def test_ids_empty_after_sanitising_are_rejected(device_id: str):
    with pytest.raises(ValueError, match="no letter or digit"):
        catalog.fitted_device_path(device_id, 2e-8, "piecewise")


def test_unknown_model_names_no_file():
    with pytest.raises(ValueError, match="unknown device model 'linear'"):
        catalog.fitted_device_path("ID1", 2e-8, "linear")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
def test_cli_save_writes_an_escaping_header_id_inside_the_folder(tmp_path: Path, capsys):
    text = (paths.SHARED_MEASUREMENTS / MAIN_20NS_FILE).read_text().replace(",ID170ZR5000\n", ",../escaped\n", 1)
    source = tmp_path / "in" / "x_Summary.dat"
    source.parent.mkdir()
    source.write_text(text)
    out = tmp_path / "out" / "devices"
    assert main(["device", "fit", str(source), "--model", "softbounds", "--save", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["escaped_20ns_softbounds.nc"]
    assert not (tmp_path / "out" / "escaped_20ns_softbounds.nc").exists()
    capsys.readouterr()
    source.write_text(text.replace(",../escaped\n", ",..\n", 1))
    assert main(["device", "fit", str(source), "--save", str(out)]) == 2
    assert "device id '..' has no letter or digit" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
@pytest.mark.parametrize("target", ["file", "file/below"])
def test_cli_save_onto_a_file_is_one_clear_error_before_fitting(tmp_path: Path, capsys, monkeypatch, target):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr("ferrolib.fitting.fit_ramp", lambda *a: pytest.fail("fitted before checking --save"))
    assert main(["device", "fit", str(paths.SHARED_MEASUREMENTS / MAIN_20NS_FILE), "--save",
                 str(tmp_path / target)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and ("is not a directory" in error or "lies under the file" in error)
    assert str(tmp_path / target) in error


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
def test_get_device_resolution_order(tmp_path, monkeypatch):
    from ferrolib import physics

    monkeypatch.setattr(paths, "DEVICES", tmp_path / "devices")
    monkeypatch.setattr(paths, "DATA", tmp_path)
    monkeypatch.delenv(paths.MEASUREMENTS_ENV, raising=False)
    # no committed fit: fitting is an explicit choice, one line naming the ways to make it
    with pytest.raises(ValueError) as missing:
        catalog.get_device("ID170ZR5000", 2e-7, "softbounds")
    message = str(missing.value)
    assert len(message.splitlines()) == 1
    assert all(way in message for way in ("make fits", "ferrolib device fit --device ID170ZR5000", "fit_missing"))
    fitted, how = catalog.resolve("ID170ZR5000", 2e-7, "softbounds", fit_missing=True)
    assert fitted.data_kind == "measured" and fitted.source_file.endswith("_Summary.dat")
    assert how.origin == "fit of the measurement" and how.file.endswith("_Summary.dat")
    # (1) a committed file takes precedence
    marked = FittedDevice(config=MARKER_CONFIG, device_id="ID170ZR5000", pulse_width_s=2e-7,
                              fit_method="marker")
    marked.save(catalog.fitted_device_path("ID170ZR5000", 2e-7, "piecewise"))
    device, how = catalog.resolve("ID170ZR5000", 2e-7, fit_missing=True)
    assert device.fit_method == "marker" and how.origin == "committed fit"
    assert how.line().startswith("device ID170ZR5000 200ns piecewise: committed fit ")
    # (3) an unmeasured width: no calibration -> clear error; with a calibration -> synthetic fit, when asked
    with pytest.raises(ValueError, match="no measurement at pulse width 5e-07"):
        catalog.get_device("ID170ZR5000", 5e-7, fit_missing=True)
    physics.save_calibrations([physics.calibrate_device("ID170ZR5000")])
    with pytest.raises(ValueError, match="fitting is an explicit choice"):
        catalog.get_device("ID170ZR5000", 5e-7)
    synthetic, how = catalog.resolve("ID170ZR5000", 5e-7, fit_missing=True)
    assert synthetic.data_kind == "synthetic" and "synthetic" in synthetic.label()
    assert how.origin == "physics prediction"
    with pytest.raises(ValueError, match="unknown device 'ID999'"):
        catalog.get_device("ID999")
    with pytest.raises(ValueError, match="unknown device model"):
        catalog.get_device(model="linear")


def _copy_of_the_20ns_measurement(folder: Path, change_a_read: bool) -> Path:
    """A copy of the real ID170ZR5000 20 ns measurement in ``folder``; ``change_a_read``: its fifth read's R_low
    raised by 3 % (another measurement: another SHA-256, another fit)."""
    text = (paths.SHARED_MEASUREMENTS / MAIN_20NS_FILE).read_text()
    if change_a_read:
        old = "5,5,0.91,125443757.291,"
        assert old in text
        text = text.replace(old, "5,5,0.91,129207070.0,", 1)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(MAIN_20NS_FILE).name
    target.write_text(text)
    return target


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
def test_your_measurements_win_over_the_committed_fit_of_the_same_id(tmp_path, monkeypatch):
    """Precedence: measurements the user points at ($FERROLIB_MEASUREMENTS or source=) win over the committed fit;
    the same measurement (same SHA-256) is the committed fit; a width they lack falls back to the committed fit."""
    committed = FittedDevice.load(catalog.fitted_device_path("ID170ZR5000", 2e-8, "piecewise"))
    mine = tmp_path / "mine"
    _copy_of_the_20ns_measurement(mine, change_a_read=True)
    monkeypatch.setenv(paths.MEASUREMENTS_ENV, str(mine))
    device, how = catalog.resolve("ID170ZR5000", 2e-8, "piecewise")
    assert how.origin == "your measurement" and f"${paths.MEASUREMENTS_ENV}" in how.reason and "wins" in how.reason
    assert device.source_sha256 != committed.source_sha256 and device.config != committed.config
    assert not str(tmp_path) in how.line()  # the file is named relative to its folder
    device, how = catalog.resolve("ID170ZR5000", 2e-7, "piecewise")
    assert how.origin == "committed fit" and "holds no measurement of it" in how.reason
    same = tmp_path / "same"
    _copy_of_the_20ns_measurement(same, change_a_read=False)
    monkeypatch.delenv(paths.MEASUREMENTS_ENV)
    device, how = catalog.resolve("ID170ZR5000", 2e-8, "piecewise", source=same)
    assert how.origin == "committed fit" and "same SHA-256" in how.reason
    assert device.config == committed.config and device.source_sha256 == committed.source_sha256



ABSOLUTE_PATH = re.compile(rb"(?<![A-Za-z0-9_.~-])(?:/(?:home|Users|work|tmp|root|mnt|opt|var|srv|data)/|[A-Za-z]:\\\\)")
"""The start of an absolute path of a POSIX or Windows machine (``/home/``, ``/work/``, ``C:\\``, ...)."""


def test_no_committed_file_under_data_contains_an_absolute_path():
    listed = subprocess.run(["git", "ls-files", "data"], cwd=paths.ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    assert any(name.endswith(".nc") for name in listed)
    roots = {str(paths.ROOT).encode(), str(paths.ROOT.parent).encode() + b"/"}
    offending = [name for name in listed
                 if ABSOLUTE_PATH.search(content := (paths.ROOT / name).read_bytes()) or any(r in content for r in roots)]
    assert not offending, f"absolute paths in {offending}"
    assert ABSOLUTE_PATH.search(b'"source_file": "/work/shared/x_Summary.dat"')  # the pattern finds one
    assert not ABSOLUTE_PATH.search(b"LBE247 ID170ZR5000/ID170ZR5000_1_Summary.dat 2e-08/3")
