"""The transfer rules (Tiki-Taka v2, chopped TTv2, AGAD) against the paper's rules (notebook 09): the learning-rate
search's choice, the runs of every rule joined over their common epochs, and the claims "X reaches mp's accuracy"
and "X costs less programming energy than mp to the target" with intervals and verdicts.

Every claim is an effect per unit, one (device, pulse width, seed) point, paired with mp at the same point:

* accuracy: ``acc_X - acc_mp`` after the last common epoch; holds when its interval lies above ``-accuracy_margin``;
* energy: ``log10(E_mp / E_X)``, the programming energy each spent until its first epoch at the target; holds when
  the interval lies above ``energy_margin``; the same with the whole ledger (reads and digital work: mp's digital
  accumulation, the transfer rules' reads of A and their buffer). Points where one of the two never reached the target cannot be
  paired: a rule that reached it nowhere while mp did fails the claim (it never got there), otherwise the interval
  is over the pairs that did.

The interval is ``analysis.t_interval`` over the units of one group (one pulse width: its seeds; one device of the
study: its widths, which are not independent, so that interval is optimistic) and over all units ("pooled").
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from . import analysis, units

TRANSFER_RULES: tuple[str, ...] = ("ttv2", "cttv2", "agad")
"""The transfer rules, in the order the notebook shows them."""

PAPER_RULES: tuple[str, ...] = ("fp", "mp", "sgd", "sps")
"""The paper's rules (fp: floating point, the digital baseline)."""

REFERENCE_RULE = "mp"
"""The rule every transfer rule is compared with: mixed precision, the paper's best analog rule."""

COMPARISON = analysis.ClaimThresholds(target=0.9, relative=False)
"""The target (90 % validation accuracy: mp reaches it within 2 to 4 of the 10 epochs the transfer rules run, fp
within 2) and the margins of the verdicts."""

REACHES_CLAIM = "{rule} reaches {reference}'s accuracy"
ENERGY_CLAIM = "{rule} costs less programming energy than {reference} to the target"
SYSTEM_ENERGY_CLAIM = "{rule} costs less energy than {reference} to the target, reads and digital work included"
"""The claims, per transfer rule."""


def search_choice(search: xr.Dataset, accuracy: str = "val_acc") -> dict[str, float]:
    """Each rule's learning rate with the best ``accuracy`` after the search's last epoch (first of equals)."""
    final = search[accuracy].isel(epoch=-1).squeeze(drop=True)
    extra = sorted(set(final.dims) - {"algorithm", "learning_rate"})
    if extra:
        raise ValueError(f"the search must hold one device, width and seed; it varies over {extra}")
    return {str(rule): float(final["learning_rate"][int(np.argmax(final.sel(algorithm=rule).values))])
            for rule in final["algorithm"].values}


def joined(transfer: xr.Dataset, paper: xr.Dataset, rules: tuple[str, ...] = PAPER_RULES) -> xr.Dataset:
    """The paper's ``rules`` of ``paper`` cut to the epochs of ``transfer`` and joined with it along ``algorithm``
    (the variables both hold). The first epochs of a longer run are those of the shorter one: the same split,
    initial weights and sample order per seed, and the learning rate halves only after epoch 10."""
    epochs = transfer.sizes["epoch"]
    if paper.sizes["epoch"] < epochs:
        raise ValueError(f"the paper's runs hold {paper.sizes['epoch']} epochs, fewer than the {epochs} to compare")
    for dim in ("device", "pulse_width", "seed"):
        missing = sorted(set(transfer[dim].values.tolist()) - set(paper[dim].values.tolist()))
        if missing:
            raise ValueError(f"the paper's runs lack {dim} {missing} of the transfer runs")
    common = [name for name in transfer.data_vars if name in paper.data_vars and "epoch" in transfer[name].dims]
    first = paper[common].sel(algorithm=[r for r in rules if r in paper["algorithm"].values],
                              device=transfer["device"], pulse_width=transfer["pulse_width"], seed=transfer["seed"])
    first = first.isel(epoch=slice(0, epochs))
    both = xr.concat([first, transfer[common]], dim="algorithm", coords="minimal", compat="override",
                     join="exact", combine_attrs="drop")
    return both.drop_vars([c for c in both.coords if c not in both.dims and "algorithm" in both[c].dims])


def convergence(result: xr.Dataset, thresholds: analysis.ClaimThresholds = COMPARISON) -> xr.Dataset:
    """``analysis.sweep_convergence`` at the comparison's absolute target: reached, epochs and energy to target,
    final accuracy of every run."""
    return analysis.sweep_convergence(result, thresholds.target, relative=thresholds.relative)


def claims(result: xr.Dataset, by: str = "pulse_width", thresholds: analysis.ClaimThresholds = COMPARISON,
           reference: str = REFERENCE_RULE) -> pd.DataFrame:
    """Both claims for every transfer rule in ``result`` against ``reference``: one row per group of ``by``
    (``pulse_width`` or ``device``) and one pooled row (module docstring); columns of ``analysis.CLAIM_COLUMNS``."""
    conv = convergence(result, thresholds)
    rows = []
    for rule in [r for r in TRANSFER_RULES if r in result["algorithm"].values]:
        accuracy = (conv["final_accuracy"].sel(algorithm=rule) - conv["final_accuracy"].sel(algorithm=reference))
        ratios = {claim: np.log10(conv[name].where(conv["reached"]).sel(algorithm=reference)
                                  / conv[name].where(conv["reached"]).sel(algorithm=rule))
                  for claim, name in ((ENERGY_CLAIM, "energy_to_target"),
                                      (SYSTEM_ENERGY_CLAIM, "system_energy_to_target"))}
        ran = accuracy.notnull()  # points both rules ran (a study's devices differ in their widths)
        reached = (conv["reached"].sel(algorithm=rule).where(ran), conv["reached"].sel(algorithm=reference).where(ran))
        groups = [(_label(by, value), {by: value}) for value in result[by].values] + [("pooled", {})]
        for scope, selection in groups:
            rows.append(_accuracy_row(rule, reference, scope, accuracy.sel(selection), thresholds))
            for claim, ratio in ratios.items():
                rows.append(_energy_row(claim, rule, reference, scope, ratio.sel(selection),
                                        [r.sel(selection) for r in reached], thresholds))
    return pd.DataFrame(rows, columns=analysis.CLAIM_COLUMNS)


def _label(dim: str, value) -> str:
    return units.format_pulse_width(float(value)) if dim == "pulse_width" else str(value)


def _devices(values: xr.DataArray) -> str:
    return ", ".join(str(d) for d in np.atleast_1d(values["device"].values))


def _interval_row(claim: str, rule: str, scope: str, effect: str, values: xr.DataArray, threshold: float,
                  thresholds: analysis.ClaimThresholds, measured: str) -> dict:
    flat = values.values.ravel()
    mean, low, high, n = analysis.t_interval(flat[np.isfinite(flat)], thresholds.confidence)
    seeds = int(values.sizes.get("seed", 1))
    return {"claim": claim, "algorithm": rule, "scope": scope, "devices": _devices(values), "effect": effect,
            "estimate": mean, "ci_low": low, "ci_high": high, "threshold": threshold, "n_seeds": seeds,
            "n_units": n, "verdict": analysis.verdict(low, high, threshold), "measured": measured,
            "method": f"Student-t {thresholds.confidence:.0%} interval over (device, width, seed) points"}


def _accuracy_row(rule: str, reference: str, scope: str, difference: xr.DataArray,
                  thresholds: analysis.ClaimThresholds) -> dict:
    return _interval_row(REACHES_CLAIM.format(rule=rule, reference=reference), rule, scope,
                         f"final accuracy {rule} - {reference}", difference, -thresholds.accuracy_margin, thresholds,
                         f"mean difference {float(difference.mean()):+.3f}")


def _energy_row(claim: str, rule: str, reference: str, scope: str, log_ratio: xr.DataArray,
                reached: list[xr.DataArray], thresholds: analysis.ClaimThresholds) -> dict:
    rule_reached, reference_reached = (int(r.sum()) for r in reached)
    total = int(reached[0].notnull().sum())
    row = _interval_row(claim.format(rule=rule, reference=reference), rule, scope,
                        f"log10(E_{reference} / E_{rule}) to {thresholds.describe_target()}", log_ratio,
                        thresholds.energy_margin, thresholds,
                        f"{rule} reached the target at {rule_reached}/{total} points, {reference} at "
                        f"{reference_reached}/{total}")
    if rule_reached == 0 and reference_reached > 0:
        row["verdict"] = analysis.FAILS  # it never got there: it cannot cost less to get there
    return row


__all__ = ["TRANSFER_RULES", "PAPER_RULES", "REFERENCE_RULE", "COMPARISON", "REACHES_CLAIM", "ENERGY_CLAIM",
           "SYSTEM_ENERGY_CLAIM",
           "search_choice", "joined", "convergence", "claims"]
