"""Training profiles: ``ideal`` is the former paper profile hash for hash, the sweep files keep their run hashes,
``paper`` carries the paper's periphery, mapping and learning rates, and the CLI and sweep files name profiles."""
from __future__ import annotations

import argparse
import hashlib

import pytest

from ferrolib import provenance, sweep
from ferrolib.training import TrainConfig
from ferrolib.training.periphery import IOParameters, MappingParameters
from ferrolib.training.profiles import PROFILES, Profile, config_from_profile, get_profile, register

SWEEP_HASHES: dict[str, tuple[int, str]] = {
    "ideal": (60, "006ce8a007208a2eed3183a8970457a61390be10b172deb2ad60c25145142904"),
    "paper": (60, "3ca32984780578315be9b01638fab61b034721cc528884106d520bac2e9f8863"),
    "study": (12, "c0fccb8215ddbf24fd9217f5dfe625103086e754a80332a5ebbaa51a2b0c7561"),
    "sp-limits": (48, "90a7e084704c3755f5347a593a0ed19d1eb950383d07f356d9ed07b27d78285a"),
    "study-noise": (45, "1fcc2d8be4f5086e2e38bbc4d39a622702ab662f90eae36cccb4dd9ea0b218da"),
    "smoke": (8, "c2c602fa1c6a993a0254180c735acd61c8a91ca1994360fd75b7c4d6ee62cd1c"),
    "smoke-check": (4, "0f86b2229f3494c728d790e8991dba38596acbefa08d488f768a45aa217f7e41"),
}
"""Runs and the SHA-256 of their joined config hashes (variants included) of every sweep file (with ``data =
"auto"`` resolved to the subset): the ideal-profile sweeps as recorded before profiles existed, ``paper`` as its
committed summary was trained."""


@pytest.fixture
def subset_auto(monkeypatch):
    import ferrolib.mnist

    monkeypatch.setattr(ferrolib.mnist, "resolve_auto", lambda: "subset")


@pytest.mark.parametrize("name", list(SWEEP_HASHES))
def test_every_sweep_run_keeps_its_config_hash(name: str, subset_auto) -> None:
    spec, options = sweep.load_sweep_config(sweep.resolve_sweep_config(name))
    hashes = [provenance.config_hash(config) for _, config in spec.points()]
    for variant in sweep.variant_sweeps(spec, options["variants"]).values():
        hashes += [provenance.config_hash(config) for _, config in variant.points()]
    assert (len(hashes), hashlib.sha256(",".join(hashes).encode()).hexdigest()) == SWEEP_HASHES[name]


@pytest.mark.parametrize("algorithm", ["fp", "sgd", "mp", "sps"])
def test_ideal_is_the_former_paper_profile(algorithm: str, subset_auto) -> None:
    former = TrainConfig(algorithm=algorithm, epochs=25, lr_decay_every=10, samples_per_epoch=48_000,
                         mp_transfer="pulsed")
    for config in (TrainConfig.ideal(algorithm), config_from_profile("ideal", algorithm)):
        assert config == former and provenance.config_hash(config) == provenance.config_hash(former)
    smoke = TrainConfig(algorithm=algorithm, epochs=2, train_limit=512, eval_limit=500, snapshot_epochs=(0, 1, 2),
                        seed=3)
    assert TrainConfig.smoke(algorithm, seed=3) == smoke


def test_paper_profile_carries_the_papers_periphery_mapping_and_rates() -> None:
    paper = get_profile("paper")
    assert {a: paper.values(a)["lr"] for a in ("fp", "sgd", "sps", "mp")} == {"fp": 0.5, "sgd": 0.05, "sps": 0.1,
                                                                                 "mp": 0.5}
    values = paper.values("sgd")
    periphery = TrainConfig(algorithm="sgd", data="synthetic", **{k: values[k] for k in
                                                                 ("forward_io", "backward_io", "mapping", "lr")})
    assert periphery.forward_io == IOParameters() == periphery.backward_io
    assert periphery.mapping == MappingParameters() and periphery.lr == 0.05
    assert (values["epochs"], values["batch_size"], values["lr_decay_every"], values["lr_decay_factor"]) == (25, 64,
                                                                                                             10, 0.5)
    assert values["mp_transfer"] == "deterministic_implicit_cuda" and values["sps_reference"] == "paper_alternating"
    assert (values["data"], values["split"], values["device_model"]) == ("full", "paper", "paper_piecewise")


def test_paper_profile_builds_and_validates_for_every_rule() -> None:
    """Every field the paper profile names exists (periphery, mapping, rules, fitting recipe, split) and passes
    validation for all four rules on ID170ZR5000's paper_piecewise fit at 20 ns."""
    from ferrolib.training.config import validate

    for algorithm in ("fp", "sgd", "sps", "mp"):
        config = config_from_profile("paper", algorithm, pulse_width=2e-8)
        assert (config.data, config.split, config.device_model) == ("full", "paper", "paper_piecewise")
        validate(config)


def test_registry_refuses_duplicates_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(Profile(name="ideal", description="again"))
    with pytest.raises(ValueError, match="unknown profile 'idael'"):
        get_profile("idael")
    assert {"ideal", "paper", "smoke", "plain"} <= set(PROFILES)
    with pytest.raises(ValueError, match="lacks"):
        config_from_profile("smoke", "sgd", no_such_field=1)


def test_sweep_files_name_profiles_and_take_their_learning_rates(tmp_path, subset_auto) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[sweep]\nalgorithms = ["sgd", "mp"]\n[sweep.lr_by_algorithm]\nmp = 0.25\n'
                    '[base]\nprofile = "smoke"\nseed = 4\n')
    spec, _ = sweep.load_sweep_config(path)
    configs = {config.algorithm: config for _, config in spec.points()}
    assert configs["mp"] == config_from_profile("smoke", "mp", seed=4, lr=0.25)
    assert configs["sgd"] == config_from_profile("smoke", "sgd", seed=4)
    path.write_text('[sweep]\nalgorithms = ["sgd"]\n[base]\nprofile = "nope"\n')
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        sweep.load_sweep_config(path)


def test_cli_profile_option(subset_auto) -> None:
    from ferrolib.cli.train import config_from_args, register as register_cli

    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    args = parser.parse_args(["train", "--algorithm", "sgd"])
    assert config_from_args(args) == TrainConfig.ideal("sgd")
    args = parser.parse_args(["train", "--algorithm", "mp", "--profile", "smoke", "--lr", "0.3"])
    assert config_from_args(args) == TrainConfig.smoke("mp", lr=0.3)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--profile", "nope"])
