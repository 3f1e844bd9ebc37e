"""The Summary.dat reader, its validation, source resolution, the verified download and the inventory."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from conftest import MAIN_20NS_FILE
from ferrolib import measurements, paths
from ferrolib.measurements import MeasurementError

HEADER = """test_date,test_time,device_name,device_id
24.10.2024,13:22:32,,ID999ZR2000
groundWGFMU,pulseWGFMU,startVolage1,endVoltage1,startVolage2,endVoltage2,stepSize,riseTime,fallTime,pulseWidth,pulseDelay,measName
SMU2,WGFMU1,0.7,5.0,-0.6,-3.6,0.042,2e-08,2e-08,2e-08,0.001,2em8s
VStartPos (V),VEndPos (V),VStartNeg (V),VEndNeg (V),twidth (s),onOffRatio
0.6,0.8,-0.5,-0.7,2e-08,4.5
Pulse Number,index,Pulse Amplitude (V),R_low (ohm),R_high (ohm)
"""
ROWS = ["1,1,0.742,1.0e8,1.2e8", "2,2,0.784,1.1e8,1.3e8", "3,3,-0.6,1.05e8,1.25e8", "4,4,-0.642,0.9e8,1.0e8"]


def counted(header: str, n_pos: object = 2, n_neg: object = 2) -> str:
    """``header`` whose summary block states the pulse counts (``num_LTP`` positive, ``num_LTD`` negative)."""
    return header.replace("twidth (s),onOffRatio", "twidth (s),onOffRatio,num_LTP,num_LTD").replace(
        "2e-08,4.5", f"2e-08,4.5,{n_pos},{n_neg}")


def write_summary(directory: Path, text: str, name: str = "ID999ZR2000_1_Summary.dat") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_a_small_valid_file_parses_with_polarity_conductance_and_area(tmp_path: Path):
    ds = measurements.read_summary(write_summary(tmp_path, HEADER + "\n".join(ROWS) + "\n"))
    assert ds.sizes["pulse"] == 4
    assert ds["polarity"].values.tolist() == [1, 1, -1, -1]
    assert ds["polarity"].dtype == np.int8
    np.testing.assert_allclose(ds["G"].values[3], (1 / 0.9e8 + 1 / 1.0e8) / 2, rtol=1e-12)
    assert ds.attrs["area_m2"] == pytest.approx(34 / 9 * (2e-6) ** 2)
    assert ds.attrs["test_date"] == "2024-10-24T13:22:32"
    assert ds.attrs["ramp_step_V"] == 0.042 and ds.attrs["summary_onOffRatio"] == 4.5
    assert ds.attrs["data_kind"] == "measured"
    for name in ("amplitude", "polarity", "R_low", "R_high", "G", "outlier"):
        assert {"units", "long_name"} <= set(ds[name].attrs), name


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda h, r: h.split("\n", 2)[2] + "\n".join(r), "lacks column"),  # identity block missing
        (lambda h, r: "\n".join(h.splitlines()[:2]), "missing header block"),  # file ends after block 1
        (lambda h, r: h.replace("pulseWidth,", "pulseWidthX,") + "\n".join(r), "pulseWidth"),
        (lambda h, r: h.replace(",R_high (ohm)", ",R_hi") + "\n".join(r), "R_high (ohm)"),
        (lambda h, r: h + "\n".join(r[:2] + ["3,3,abc,1e8,1e8"]), "not a number"),
        (lambda h, r: h + "\n".join(r[:2] + ["3,3,-0.6,0,1e8"]), "non-positive or non-finite resistance"),
        (lambda h, r: h + "\n".join(r[:2] + ["3,3,-0.6,-5,1e8"]), "non-positive or non-finite resistance"),
        (lambda h, r: h + "\n".join(r[:2] + ["3,3,-0.6,1e8,inf"]), "non-positive or non-finite resistance"),
        (lambda h, r: h + "\n".join(r[:2] + ["3,3,-0.6,nan,1e8"]), "non-positive or non-finite resistance"),
        (lambda h, r: h + "\n".join(r[:2]), "empty ramp: no negative"),
        (lambda h, r: h + "\n".join(r[2:]), "empty ramp: no positive"),
        (lambda h, r: h, "no rows"),
        (lambda h, r: h.replace("0.6,0.8,-0.5,-0.7,2e-08", "0.6,5.0,-0.5,-3.7,2e-07") + "\n".join(r), "pulse width disagrees"),
        (lambda h, r: h + "\n".join(r[:3] + ["4,4,-0.642,0.9e8"]), "has 4 values"),
        (lambda h, r: h + "\n".join(r[:3] + ["4,4,0,0.9e8,1e8"]), "no polarity"),
        # truncated at a line boundary: the summary block states 2 positive and 2 negative pulses
        (lambda h, r: counted(h) + "\n".join(r[:3]) + "\n", "1 negative pulses in the pulse table but the "
                                                             "summary block states num_LTD = 2"),
        (lambda h, r: counted(h, n_pos=3) + "\n".join(r) + "\n", "num_LTP = 3"),
        (lambda h, r: counted(h, n_pos="x") + "\n".join(r) + "\n", "summary block num_LTP is not a number"),
    ],
)
def test_each_malformed_file_raises_an_error_naming_the_file_and_the_problem(tmp_path: Path, mutate, problem):
    path = write_summary(tmp_path, mutate(HEADER, ROWS))
    with pytest.raises(MeasurementError) as error:
        measurements.read_summary(path)
    assert str(path) in str(error.value)
    assert problem in str(error.value)


def test_stated_pulse_counts_that_match_are_accepted(tmp_path: Path):
    ds = measurements.read_summary(write_summary(tmp_path, counted(HEADER) + "\n".join(ROWS) + "\n"))
    assert ds.attrs["summary_num_LTP"] == 2 and ds.sizes["pulse"] == 4


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path):
    text = HEADER + "\n".join(ROWS) + "\n"
    plain = measurements.read_summary(write_summary(tmp_path, text))
    marked = tmp_path / "marked" / "ID999ZR2000_1_Summary.dat"
    marked.parent.mkdir()
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
    with_bom = measurements.read_summary(marked)
    assert with_bom.attrs["device_id"] == "ID999ZR2000" and with_bom.attrs["test_date"] == plain.attrs["test_date"]
    np.testing.assert_array_equal(with_bom["G"].values, plain["G"].values)
    assert measurements.find_measurements(source=marked.parent) == [marked]


@pytest.mark.parametrize("content, problem", [(b"\x89HDF\r\n\x1a\n\x00\x00\x01", "NUL byte"),
                                              (b"test_date,\xff\xfe\n", "invalid UTF-8")])
def test_a_binary_file_is_named_when_read_and_skipped_with_a_warning_in_a_folder_scan(tmp_path: Path, content, problem):
    valid = write_summary(tmp_path, HEADER + "\n".join(ROWS) + "\n")
    binary = tmp_path / "ID999ZR2000_2_Summary.dat"
    binary.write_bytes(content)
    with pytest.raises(MeasurementError, match="not a text file") as error:
        measurements.read_summary(binary)
    assert str(binary) in str(error.value) and problem in str(error.value)
    with pytest.warns(measurements.MeasurementWarning, match=f"skipped {binary}: not a text file"):
        assert measurements.find_measurements(source=tmp_path) == [valid]


def test_a_malformed_text_header_in_a_folder_scan_is_an_error_naming_the_file(tmp_path: Path):
    write_summary(tmp_path, HEADER + "\n".join(ROWS) + "\n")
    broken = write_summary(tmp_path, HEADER.replace("pulseWidth,", "pulseWidthX,"), "ID999ZR2000_2_Summary.dat")
    with pytest.raises(MeasurementError, match="pulseWidth") as error:
        measurements.find_measurements(source=tmp_path)
    assert str(broken) in str(error.value)


def test_the_fast_row_parser_gives_the_reference_values_on_every_real_file(shared_measurements: Path):
    for path in measurements.find_measurements(source=shared_measurements):
        lines = measurements._read_lines(path)
        header = measurements._split(lines[6])
        columns = [header.index(c) for c in measurements._PULSE_COLUMNS]
        fast = measurements._parse_rows_fast(lines[7:], len(header), columns)
        assert fast is not None, path
        np.testing.assert_array_equal(fast, measurements._parse_rows(path, lines[7:], header, columns, 8))


def test_provenance_names_the_file_relative_to_its_root_without_a_machine_path(tmp_path: Path):
    device_folder = tmp_path / "MYROOT" / "ID999ZR2000"
    device_folder.mkdir(parents=True)
    path = write_summary(device_folder, HEADER + "\n".join(ROWS) + "\n")
    ds = measurements.read_summary(path)
    assert (ds.attrs["source_root"], ds.attrs["source_file"]) == ("MYROOT", "ID999ZR2000/ID999ZR2000_1_Summary.dat")
    assert str(tmp_path) not in " ".join(str(v) for v in ds.attrs.values())
    assert measurements.measurement_name(path, device_folder) == (device_folder.name, path.name)
    (loaded,) = measurements.load_measurements("ID999ZR2000", source=device_folder)
    assert loaded.attrs["source_file"] == path.name
    with pytest.raises(MeasurementError, match="not inside the measurement root"):
        measurements.measurement_name(path, tmp_path / "elsewhere")


def test_a_missing_file_is_a_measurement_error(tmp_path: Path):
    with pytest.raises(MeasurementError, match="no such measurement file"):
        measurements.read_summary(tmp_path / "absent_Summary.dat")


def test_real_file_first_and_last_pulse_match_the_raw_file(shared_measurements: Path):
    """ID170ZR5000 at 20 ns: rows '1,1,0.742,124410604.76,144264754.678' and '174,174,-3.582,120968717.49,...'."""
    ds = measurements.read_summary(shared_measurements / MAIN_20NS_FILE)
    assert ds.sizes["pulse"] == 174
    first, last = ds.isel(pulse=0), ds.isel(pulse=-1)
    assert (int(first.pulse_number), float(first.amplitude)) == (1, 0.742)
    assert (float(first.R_low), float(first.R_high)) == (124410604.76, 144264754.678)
    assert float(first.G) == pytest.approx(7.4847999999932e-09, rel=1e-12)  # (1/R_low + 1/R_high)/2 by hand
    assert (int(last.pulse_number), float(last.amplitude)) == (174, -3.582)
    assert (float(last.R_low), float(last.R_high)) == (120968717.49, 142196942.766)
    assert float(last.G) == pytest.approx(7.6495499999816e-09, rel=1e-12)
    assert int((ds.polarity > 0).sum()) == 102 and int((ds.polarity < 0).sum()) == 72  # summary num_LTP/num_LTD
    assert ds.attrs["pulse_width_s"] == 2e-8 and ds.attrs["device_id"] == "ID170ZR5000"
    assert ds.attrs["area_m2"] == pytest.approx(94.44e-12, rel=1e-3)
    assert ds.attrs["source_sha256"] == "6c49ade6796b0dcd1e67d0af3123e35ef746853e91cfe744a019c47372c730ab"
    # positive pulses depress: G ends the positive ramp lower than it started, the negative ramp raises it
    g = ds.G.values
    assert g[101] < g[0] and g[-1] > g[102]


def test_outlier_rule_flags_an_isolated_spike_but_not_a_steep_smooth_ramp():
    smooth = np.exp(np.concatenate([np.linspace(0, -2, 60), np.tanh(np.linspace(-3, 3, 60)) - 1]))
    assert not measurements.flag_outliers(smooth).any()
    rng = np.random.default_rng(1)
    noisy = smooth * np.exp(0.002 * rng.standard_normal(smooth.size))
    spiked = noisy.copy()
    spiked[30] *= 1.3
    flags = measurements.flag_outliers(spiked)
    assert flags.tolist() == [i == 30 for i in range(spiked.size)]


def test_real_outlier_reads_are_flagged_in_the_visibly_spiky_file(shared_measurements: Path):
    """ID170ZR5000 at 20 us has one read far above both neighbours (visible in the G trace)."""
    ds = measurements.load_measurements("ID170ZR5000", 2e-5, source=shared_measurements)[0]
    flagged = np.flatnonzero(ds.outlier.values)
    assert flagged.size == 1
    k = int(flagged[0])
    g = ds.G.values
    assert g[k] > 1.5 * max(g[k - 1], g[k + 1])


@pytest.mark.parametrize(
    "device_id, area",
    [("ID170ZR5000", 34 / 9 * 25e-12), ("ID161ZR15000", 850e-12), ("ID181ZR1000", 34 / 9 * 1e-12),
     ("ID301XR1000Oct", 34 / 9 * 1e-12), ("ID305ZR500Oct", 34 / 9 * 0.25e-12)],
)
def test_octagon_areas_follow_34_ninths_s_squared(device_id: str, area: float):
    assert measurements.device_area(device_id) == pytest.approx(area, rel=1e-3)


@pytest.mark.parametrize("device_id", ["ID294YR", "ID180XR1000Star", "ID36ZR1000Circ", "not-an-id"])
def test_unknown_shapes_have_nan_area_and_a_note(device_id: str):
    assert math.isnan(measurements.device_area(device_id))
    assert "unknown" in measurements.area_note(device_id)


def _two_dirs(tmp_path: Path, shared: Path) -> tuple[Path, Path]:
    explicit, env = tmp_path / "explicit" / "nested", tmp_path / "env"
    for directory in (explicit, env):
        directory.mkdir(parents=True)
        shutil.copy(shared / MAIN_20NS_FILE, directory)
    return explicit.parent, env


def test_source_resolution_order_explicit_then_env_then_shared(tmp_path, monkeypatch, shared_measurements):
    explicit, env = _two_dirs(tmp_path, shared_measurements)
    monkeypatch.setenv(paths.MEASUREMENTS_ENV, str(env))
    assert measurements.resolve_source(explicit) == explicit.resolve()
    assert measurements.resolve_source() == env.resolve()
    monkeypatch.delenv(paths.MEASUREMENTS_ENV)
    assert measurements.resolve_source() == paths.SHARED_MEASUREMENTS
    # a nested user directory is searched recursively
    assert len(measurements.find_measurements(source=explicit)) == 1


def test_a_bad_explicit_or_env_directory_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(MeasurementError, match="the given source"):
        measurements.resolve_source(tmp_path)
    monkeypatch.setenv(paths.MEASUREMENTS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(MeasurementError, match=paths.MEASUREMENTS_ENV):
        measurements.resolve_source()


def test_nothing_available_names_all_three_remedies(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHARED_MEASUREMENTS", tmp_path / "no-shared")

    def offline(*args, **kwargs):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(measurements, "download_measurements", offline)
    with pytest.raises(MeasurementError) as error:
        measurements.resolve_source()
    text = str(error.value)
    assert "source=" in text and paths.MEASUREMENTS_ENV in text and "download" in text and "network unreachable" in text


def _offline_downloader(shared: Path, corrupt: bool = False):
    """A pooch downloader serving the manifest's files from the shared folder (optionally corrupted)."""
    by_url = {"https://offline.invalid/" + quote(e.source_path, safe="/"): shared / e.file for e in measurements.manifest()}

    def download(url: str, output_file: str, pooch_obj) -> None:
        data = by_url[url].read_bytes()
        Path(output_file).write_bytes(data + b"tampered" if corrupt else data)

    return download


def test_download_path_fetches_every_manifest_file_and_checks_hashes(tmp_path, shared_measurements):
    target = measurements.download_measurements(tmp_path, "https://offline.invalid/", _offline_downloader(shared_measurements))
    files = sorted(target.rglob(measurements.SUMMARY_GLOB))
    assert len(files) == len(measurements.manifest()) == 44
    assert len(measurements.inventory(target)) == 44
    # a second call finds the files in place and does not download again
    measurements.download_measurements(tmp_path, "https://offline.invalid/", downloader=lambda *a: pytest.fail("re-downloaded"))


def test_download_with_a_wrong_checksum_fails_and_keeps_nothing(tmp_path, shared_measurements):
    with pytest.raises(MeasurementError, match="SHA-256 is wrong"):
        measurements.download_measurements(tmp_path, "https://offline.invalid/", _offline_downloader(shared_measurements, corrupt=True))
    assert not list(tmp_path.rglob(measurements.SUMMARY_GLOB))


def test_manifest_urls_encode_brackets_and_parentheses():
    entry = measurements.manifest()[0]
    url = measurements.SOURCE_BASE_URL + quote(entry.source_path, safe="/")
    assert "[" not in url and "(" not in url and "%5B" in url and "%28" in url
    assert measurements.SOURCE_COMMIT in url


def test_inventory_covers_every_file_of_the_shared_folder(shared_measurements: Path):
    table = measurements.inventory(shared_measurements)
    on_disk = sorted(str(p) for p in shared_measurements.rglob("*_Summary.dat"))
    assert sorted(table["file"]) == on_disk and len(table) == 44
    assert (table["n_up"] + table["n_down"] == table["n_pulses"]).all()
    assert (table["on_off_ratio"] > 1).all()
    for device in measurements.MAIN_DEVICES:
        widths = table.loc[table.device_id == device, "pulse_width_s"]
        for width in measurements.PAPER_PULSE_WIDTHS:
            assert np.isclose(widths, width, rtol=1e-3).any(), (device, width)


def test_find_and_load_select_one_of_the_two_20ns_files(shared_measurements: Path):
    found = measurements.find_measurements("ID161ZR15000", 2e-8, source=shared_measurements)
    assert [p.name for p in found] == ["ID161ZR15000_20241024104937_Summary.dat", "ID161ZR15000_20241024110402_Summary.dat"]
    assert len(measurements.load_measurements("ID161ZR15000", 2e-8, source=shared_measurements)) == 2
    last = measurements.load_measurements("ID161ZR15000", source=shared_measurements, select="last")
    first = measurements.load_measurements("ID161ZR15000", source=shared_measurements, select="first")
    assert [d.attrs["pulse_width_s"] for d in last] == [2e-8, 2e-7, 2e-6, 2e-5, 2e-4, 2e-3]
    assert last[0].attrs["test_date"] == "2024-10-24T11:04:02" and first[0].attrs["test_date"] == "2024-10-24T10:49:37"
    with pytest.raises(MeasurementError, match="no measurement of device 'ID000'"):
        measurements.load_measurements("ID000", source=shared_measurements)


def test_load_ramps_keeps_the_latest_file_per_width_and_smoke_the_extremes(shared_measurements: Path):
    ramps = measurements.load_ramps(["ID161ZR15000", "ID170ZR5000"], shared_measurements)
    assert list(ramps) == ["ID161ZR15000", "ID170ZR5000"]
    assert [d.attrs["test_date"] for d in ramps["ID161ZR15000"]] == [
        d.attrs["test_date"] for d in measurements.load_measurements("ID161ZR15000", source=shared_measurements,
                                                                     select="last")]
    smoke = measurements.load_ramps(["ID161ZR15000", "ID170ZR5000"], shared_measurements, smoke=True)
    assert list(smoke) == ["ID161ZR15000"]
    assert [d.attrs["pulse_width_s"] for d in smoke["ID161ZR15000"]] == [2e-8, 2e-3]
    line = measurements.describe_ramps(ramps)
    assert line == "measured LBE247 ramps (ID161ZR15000, ID170ZR5000; latest file per pulse width)"
    assert str(shared_measurements) not in line


def test_cli_data_info_json_lists_the_inventory(shared_measurements: Path, capsys):
    import json

    from ferrolib.cli import main

    assert main(["data", "info", "--json", "--source", str(shared_measurements)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["measurements"]) == 44
    star = next(r for r in report["measurements"] if r["device_id"] == "ID180XR1000Star")
    assert star["area_m2"] is None  # NaN becomes null, keeping the output valid JSON


def test_cli_reports_a_bad_source_as_an_error(tmp_path: Path, capsys):
    from ferrolib.cli import main

    assert main(["data", "info", "--source", str(tmp_path)]) == 2
    assert "not a directory holding" in capsys.readouterr().err
