"""Variants of the aperture correction, rescored offline from one injection measured with it (README.md here).

Usage: .venv/bin/python reports/lumos/aperture-correction/variants.py TABLE OUT.json

``TABLE`` is an ``injection_table.parquet`` of ``lumos inject --aperture-correction``: its rows carry
each method's factor (``aperture_correction``), the reference aperture's flux and error
(``reference_flux``, ``reference_flux_err``), whether the row calibrated (``aperture_calibrator``)
and the frame copy it was measured on (``realisation``). Each variant undoes the shipped factor
(``apply_flux_correction`` with its inverse) and applies its own, then the table is scored as
``lumos inject`` scores it (``score_injection``):

- ``none``: no correction;
- ``shipped``: each method's own factor with its slope in ln A, as measured;
- ``own, no slope``: each method's weighted median ratio per copy, one factor per copy;
- ``optimal's``: the optimal sum's factor of the same target (its slope included) for every
  model-weighted method (optimal, modelfit, LUMOS); the aperture keeps its own;
- ``through the matched filter, always``: the optimal sum's factor times the method's weighted
  median flux over the optimal sum's on the copy's calibrators, however close to 1 (the shipped
  code uses that ratio only beyond ``MATCHED_TOLERANCE``).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from lumos_ops.aperture_correction import MIN_CALIBRATORS
from lumos_ops.evaluation.injection_report import score_injection
from lumos_ops.flux_correction import apply_flux_correction, fit_correction, weighted_median

MODEL_WEIGHTED = ("optimal", "modelfit", "lumos")
FACTOR = "aperture_correction"
"""The factor column (``flux_correction`` in the tables measured before it was named)."""


def _per_method(table: pd.DataFrame, factor_of) -> pd.DataFrame:
    """``table`` with every method's rows undone and divided by ``factor_of(rows)`` (an array)."""
    parts = []
    for (_, method), rows in table.groupby(["population", "method"], sort=False):
        bare = apply_flux_correction(rows, 1.0 / rows[FACTOR].to_numpy(np.float64), column=FACTOR)
        parts.append(apply_flux_correction(bare, factor_of(method, rows, bare), column=FACTOR))
    return pd.concat(parts).sort_index()


def own_no_slope(method: str, rows: pd.DataFrame, bare: pd.DataFrame) -> np.ndarray:
    factor = np.ones(len(rows))
    for _, copy in bare.groupby("realisation"):
        use = copy["aperture_calibrator"].to_numpy(bool)
        ratio = copy["flux"].to_numpy(np.float64)[use] / copy["reference_flux"].to_numpy(np.float64)[use]
        ref_var = copy["reference_flux_err"].to_numpy(np.float64)[use] ** 2
        weights = copy["reference_flux"].to_numpy(np.float64)[use] ** 2 / np.maximum(
            ref_var - copy["flux_err_stat"].to_numpy(np.float64)[use] ** 2, 0.1 * ref_var)
        fit = fit_correction(method, ratio, min_galaxies=MIN_CALIBRATORS, seed=0, weights=weights)
        factor[rows.index.get_indexer(copy.index)] = fit.factor
    return factor


def main(path: str, out: str) -> None:
    table = pd.read_parquet(path)
    if FACTOR not in table:
        table = table.rename(columns={"flux_correction": FACTOR})
    optimal = table[table["method"] == "optimal"].set_index(["population", "placement"])[FACTOR]

    def optimal_factor(method, rows, bare):
        if method not in MODEL_WEIGHTED:
            return rows[FACTOR].to_numpy(np.float64)
        return optimal.loc[list(zip(rows["population"], rows["placement"]))].to_numpy(np.float64)

    def through_matched(method, rows, bare):
        factor = np.array(optimal_factor(method, rows, bare), dtype=np.float64)
        if method not in MODEL_WEIGHTED or method == "optimal":
            return factor
        mine = bare.set_index(["population", "placement"])
        matched = table[table["method"] == "optimal"].set_index(["population", "placement"])
        matched_flux = (matched["flux"] * matched[FACTOR]).loc[mine.index].to_numpy(np.float64)
        use_all = matched["aperture_calibrator"].loc[mine.index].to_numpy(bool)
        copies = mine["realisation"].to_numpy()
        for copy in np.unique(copies):
            here = copies == copy
            use = here & use_all & np.isfinite(mine["flux"].to_numpy(np.float64))
            if use.sum() < MIN_CALIBRATORS:
                continue
            flux = mine["flux"].to_numpy(np.float64)[use]
            weights = (flux / mine["flux_err_stat"].to_numpy(np.float64)[use]) ** 2
            factor[here] *= weighted_median(flux / matched_flux[use], weights)
        return factor

    variants = {
        "none": _per_method(table, lambda m, rows, bare: np.ones(len(rows))),
        "shipped": table,
        "own, no slope": _per_method(table, own_no_slope),
        "optimal's": _per_method(table, optimal_factor),
        "through the matched filter, always": _per_method(table, through_matched),
    }
    result = {}
    for name, frame in variants.items():
        report = score_injection(frame)
        result[name] = report["targets"]
        met = {}
        for t in report["targets"]:
            met.setdefault(t["population"], []).append(t["met"])
        print(f"{name:14s} " + "; ".join(f"{p} {sum(v)} of {len(v)} met" for p, v in met.items()))
        for t in report["targets"]:
            print(f"    {t['population']:8s} {'met ' if t['met'] else 'MISS'} {t['value']:7.3f}  {t['target']}")
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
