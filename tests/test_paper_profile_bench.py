"""``benchmarks/paper_profile_throughput.py``: its argument errors and the structure of its report (no timing is
asserted)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ferrolib import mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paper_profile_throughput as bench  # noqa: E402


@pytest.mark.parametrize("arguments", [["--repeats", "2"], ["--algorithms", "fp"], ["--threads", "0"],
                                       ["--batches", "0"]])
def test_bad_arguments_are_refused_before_any_work(arguments: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(arguments)
    assert exit_info.value.code == 2
    assert arguments[0] in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_run_reports_every_variant_and_skips_a_missing_peer(tmp_path: Path) -> None:
    if not any(source.name == mnist.FULL_NAME for source in mnist.cached_sources()):
        pytest.skip("full MNIST is not cached (`make data`)")
    report = bench.main(["--algorithms", "sgd", "--batches", "1", "--peer-python", str(tmp_path / "none"),
                         "--json"])
    assert report["peer"].startswith("aihwkit columns skipped") and report["peer_info"] is None
    row = report["threads"][1]["sgd"]
    assert set(row) == {"paper", "ideal", "paper_over_ideal"}
    for variant in ("paper", "ideal"):
        assert set(row[variant]["wall"]) == {"median", "min", "max", "spread", "values"}
        assert len(row[variant]["wall"]["values"]) == 3 and len(row[variant]["cpu"]["values"]) == 3
    assert set(row["paper_over_ideal"]["wall"]) == {"median", "min", "max", "values"}
