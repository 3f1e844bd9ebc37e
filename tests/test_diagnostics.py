"""The diagnostic scripts in diagnostics/ run and report what they claim to count."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest


def diagnostic(name: str):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "diagnostics"))
    return importlib.import_module(name)


def test_masked_outputs_counts_every_tile_of_the_paper_mapping(capsys: pytest.CaptureFixture) -> None:
    """The paper profile reads through aihwkit's default IO (output bound 12, so a gradient mask) on four tiles:
    fc1 as two of 392 inputs (counted together), fc2, fc3; each gets a masked fraction in [0, 1] over its forward outputs."""
    masked_outputs = diagnostic("masked_outputs")
    masked_outputs.main(["--device", "ID170ZR5000", "--pulse-width", "2e-8", "--algorithm", "sgd", "--samples",
                         "256", "--subset"])
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("ferrolib: device")]
    assert lines[0].startswith("ID170ZR5000 2e-08 s sgd (paper, seed 0): validation [")
    tiles = [line for line in lines if line.startswith("tile ")]
    assert [line.split(":")[0] for line in tiles] == ["tile 256 x 392", "tile 128 x 256", "tile 10 x 128"]
    for line in tiles:
        fraction = float(line.split(": ")[1].split(" of ")[0])
        assert 0.0 <= fraction <= 1.0
    # every forward read counts: 256 training samples and 500 validation + 500 test images, 10 outputs each
    assert tiles[-1].endswith("of 12560 forward outputs masked")


def test_masked_outputs_says_so_without_an_output_bound(capsys: pytest.CaptureFixture) -> None:
    masked_outputs = diagnostic("masked_outputs")
    masked_outputs.main(["--profile", "ideal", "--device", "ID170ZR5000", "--algorithm", "sgd", "--samples", "128",
                         "--subset"])
    assert "no tile reads with an output bound" in capsys.readouterr().out
