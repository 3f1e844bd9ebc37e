"""The one command line: every subcommand answers ``--help``, names itself in its usage, and turns bad input into
one line ``ferrolib <command>: error: ...`` (exit 2) before any work; the library modules have no entry points of
their own."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from ferrolib import host
from ferrolib.cli import SUBCOMMANDS, main

NESTED = {"data": "fetch", "device": "fit", "study": "run", "splimits": "run"}
"""Subcommands whose work is in a sub-subcommand: its ``--help`` too."""


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_answers_help(command: str, capsys):
    for argv in ([command, "--help"], *([[command, NESTED[command], "--help"]] if command in NESTED else [])):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: ferrolib {' '.join(argv[:-1])} "), out


def _one_error_line(capsys, argv: list[str], expected: str) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ferrolib {argv[0]}: error: "), lines
    assert expected in lines[0], lines
    return lines[0]


def test_check_names_a_seed_the_sweep_does_not_have(capsys):
    _one_error_line(capsys, ["check", "smoke-check", "--seeds", "9"], "--seeds [9] not in smoke-check's seeds")


def test_summarize_names_a_missing_sweep_file(capsys):
    _one_error_line(capsys, ["summarize", "no-such-sweep"], "no-such-sweep.toml: sweep configuration not found")


@pytest.mark.parametrize("argv", [["summarize", "smoke"], ["check", "smoke-check"], ["study", "run", "--dry-run"],
                                  ["splimits", "run"]], ids=lambda argv: argv[0])
def test_workers_below_one_are_refused_before_any_run(argv: list[str], capsys):
    _one_error_line(capsys, [*argv, "--workers", "0"], "--workers must be an integer >= 1, got int 0")


def test_study_names_an_unknown_part_and_the_parts_it_has(capsys):
    line = _one_error_line(capsys, ["study", "run", "--dry-run", "--parts", "no-such-part"],
                           "--parts: no-such-part not in the study (its sweeps: ")
    assert "study-ID170ZR5000" in line and "study-noise-20ns" in line


def test_site_names_a_missing_notebooks_folder(tmp_path: Path, capsys):
    _one_error_line(capsys, ["site", str(tmp_path / "missing"), str(tmp_path), str(tmp_path / "site")],
                    f"{tmp_path / 'missing'} is not a folder")
    assert not (tmp_path / "site").exists()


def test_fits_refuses_a_source_without_measurements_before_fitting(tmp_path: Path, capsys):
    _one_error_line(capsys, ["fits", "--source", str(tmp_path)], "is not a directory holding *_Summary.dat files")


def test_host_prints_the_fingerprint_and_needs_a_command_for_avx2(capsys):
    assert main(["host"]) == 0
    assert capsys.readouterr().out.strip() == host.fingerprint()
    _one_error_line(capsys, ["host", "--avx2"], "--avx2 needs a command to run")


@pytest.mark.parametrize("module", ["sourcedata", "study", "splimits", "site"])
def test_library_modules_have_no_entry_point_of_their_own(module: str):
    assert not hasattr(importlib.import_module(f"ferrolib.{module}"), "main")
