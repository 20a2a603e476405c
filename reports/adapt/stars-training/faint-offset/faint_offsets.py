"""Where the adapted candidate's faint co-add bias comes from: per-exposure offsets in units of each
method's own statistical error, LUMOS against the optimal sum on the same placements, and the
5-exposure co-adds, for one or more injection tables (`heldout_rerun.py`).

    .venv/bin/python reports/adapt/stars-training/faint-offset/faint_offsets.py OUT.json [LABEL=]TABLE.parquet [...]

For each table and method, by true SNR: the median and the clipped mean (|z| < 3) of
z = (flux - f0) / flux_err_stat and the median fractional bias; the LUMOS rows against the optimal
sum's on the same placement (d = (LUMOS - optimal) / LUMOS's flux_err_stat: median, clipped
mean, 2/16/84/98th percentiles, share below -1); the rows where LUMOS reads more than 1 sigma
below the optimal sum (their z for both); and `score_injection`'s 5-exposure co-add bias by co-add
SNR for every method, over all galaxies and without the galaxies that have such a row.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean, score_injection

BINS: tuple[tuple[float, float], ...] = ((1, 2), (2, 3), (3, 5), (5, 10), (10, 20), (20, 50))
METHODS: tuple[str, ...] = ("lumos", "optimal", "aperture")


def _z_rows(table: pd.DataFrame) -> dict:
    out = {}
    for method in METHODS:
        rows = table[table["method"] == method]
        z = (rows["flux"] - rows["true_flux"]) / rows["flux_err_stat"]
        rel = (rows["flux"] - rows["true_flux"]) / rows["true_flux"]
        out[method] = []
        for lo, hi in BINS:
            sel = (rows["true_snr"] >= lo) & (rows["true_snr"] < hi)
            zs = z[sel]
            out[method].append({"lo": lo, "hi": hi, "n": int(sel.sum()), "z_median": float(zs.median()),
                                "z_clipped_mean": float(zs[zs.abs() < 3].mean()), "bias": float(rel[sel].median())})
    return out


def _paired(table: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    lumos = table[table["method"] == "lumos"].set_index("placement")
    optimal = table[table["method"] == "optimal"].set_index("placement")
    both = lumos[["flux", "flux_err_stat", "true_flux", "true_snr", "galaxy"]].join(
        optimal[["flux", "flux_err_stat"]].rename(columns={"flux": "f_opt", "flux_err_stat": "e_opt"}), how="inner")
    both["d"] = (both["flux"] - both["f_opt"]) / both["flux_err_stat"]
    out = []
    for lo, hi in BINS:
        d = both["d"][(both["true_snr"] >= lo) & (both["true_snr"] < hi)]
        out.append({"lo": lo, "hi": hi, "n": int(d.size), "median": float(d.median()),
                    "clipped_mean": float(d[d.abs() < 3].mean()),
                    "percentiles_2_16_84_98": np.percentile(d, [2, 16, 84, 98]).tolist(),
                    "share_below_minus_1": float((d < -1).mean()), "share_above_1": float((d > 1).mean())})
    faint = both[(both["true_snr"] >= 1) & (both["true_snr"] < 10)]
    low = faint[faint["d"] < -1]
    rest = faint[faint["d"] >= -1]
    split = {name: {"n": int(len(rows)),
                    "lumos_z_median": float(((rows["flux"] - rows["true_flux"]) / rows["flux_err_stat"]).median()),
                    "optimal_z_median": float(((rows["f_opt"] - rows["true_flux"]) / rows["e_opt"]).median())}
             for name, rows in (("lumos_below_optimal_by_1_sigma", low), ("the_others", rest))}
    return both, {"by_true_snr": out, "true_snr_1_10": split}


def _tail_and_mean_coadd(table: pd.DataFrame) -> dict:
    """LUMOS's likelihood mean against its median ((mean - median) / flux_err_stat, median over the
    rows, by true SNR) and the 5-exposure co-adds taken as the inverse-variance mean of the
    exposures' ``flux`` (placements 0-4 of each galaxy; fractional bias by co-add true SNR)."""
    from scipy.stats import norm

    rows = table[table["method"] == "lumos"]
    tail = []
    for lo, hi in BINS:
        sel = rows[(rows["true_snr"] >= lo) & (rows["true_snr"] < hi)]
        alpha, mu, sigma = (sel[[f"{k}_{i}" for i in range(5)]].to_numpy() for k in ("alpha", "mu", "sigma"))
        below = (alpha * norm.cdf((sel["true_flux"].to_numpy()[:, None] - mu) / sigma)).sum(axis=1) < 0.5
        tail.append({"lo": lo, "hi": hi, "mean_minus_median": float(((sel["mean"] - sel["median"]) / sel["flux_err_stat"]).median()),
                     "p_f0_below_likelihood_median": float(below.mean()), "n": int(len(sel))})
    first = rows[rows["place"] < 5]
    first = first[first.groupby("galaxy")["place"].transform("size") == 5]
    weight = 1.0 / first["flux_err"] ** 2
    grouped = first.assign(w=weight, wf=weight * first["flux"], inv=1.0 / first["crb_err"] ** 2).groupby("galaxy")
    coadd = grouped["wf"].sum() / grouped["w"].sum()
    truth = grouped["true_flux"].first()
    snr = truth * np.sqrt(grouped["inv"].sum())
    mean_coadd = []
    for lo, hi in ((2, 5), (5, 10), (10, 20)):
        sel = (snr >= lo) & (snr < hi)
        mean_coadd.append({"lo": lo, "hi": hi, "n": int(sel.sum()), "bias": float(np.median(coadd[sel] / truth[sel] - 1))})
    return {"likelihood_mean_minus_median": tail, "coadd5_inverse_variance_mean_of_flux": mean_coadd}


def _coadds(table: pd.DataFrame) -> dict:
    report = score_injection(table)
    out = {}
    for method in METHODS:
        five = next(c for c in report["populations"]["sersic"]["methods"][method]["coadds"] if c["n"] == 5)
        out[method] = [{"lo": b["lo"], "hi": b["hi"], "n": b["n"], "bias": b["bias"], "bias_err": b["bias_err"]}
                       for b in five["by_true_snr"] if b["lo"] is not None and b["lo"] < 20]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("tables", nargs="+")
    args = parser.parse_args()
    result = {}
    for spec in args.tables:
        label, _, path = spec.rpartition("=")
        table = pd.read_parquet(path)
        both, paired = _paired(table)
        dirty = set(both["galaxy"][both["d"] < -1])
        label = label or Path(path).stem
        result[label] = {
            "z": _z_rows(table), "lumos_minus_optimal": paired,
            "coadd5_bias": _coadds(table), **_tail_and_mean_coadd(table),
            "coadd5_bias_without_galaxies_lumos_reads_1_sigma_below_optimal": _coadds(table[~table["galaxy"].isin(dirty)]),
            "n_galaxies": int(table["galaxy"].nunique()), "n_galaxies_left_out": len(dirty)}
        entry = result[label]
        print(label)
        for method in METHODS:
            print(f"  {method:9s} z median / clipped mean by true SNR: " + " | ".join(
                f"{b['lo']:g}-{b['hi']:g} {b['z_median']:+.2f}/{b['z_clipped_mean']:+.2f}" for b in entry["z"][method]))
        print("  LUMOS - optimal (median/clipped mean): " + " | ".join(
            f"{b['lo']:g}-{b['hi']:g} {b['median']:+.2f}/{b['clipped_mean']:+.2f}" for b in paired["by_true_snr"]))
        print("  LUMOS likelihood (mean - median) / err, P(f0 < median): " + " | ".join(
            f"{b['lo']:g}-{b['hi']:g} {b['mean_minus_median']:+.2f}, {b['p_f0_below_likelihood_median']:.2f}"
            for b in entry["likelihood_mean_minus_median"]))
        print("  LUMOS co-add as inverse-variance mean of flux (placements 0-4): " + " | ".join(
            f"{b['lo']:g}: {b['bias']:+.3f} (n {b['n']})" for b in entry["coadd5_inverse_variance_mean_of_flux"]))
        print(f"  galaxies with a placement where LUMOS < optimal - 1 sigma: {entry['n_galaxies_left_out']} "
              f"of {entry['n_galaxies']}")
        for key in ("coadd5_bias", "coadd5_bias_without_galaxies_lumos_reads_1_sigma_below_optimal"):
            for method in METHODS:
                print(f"  {key[:11]}{'' if key == 'coadd5_bias' else ' (clean)'} {method:9s} " + " | ".join(
                    f"{b['lo']:g}: {b['bias']:+.3f} ± {b['bias_err']:.3f}" for b in entry[key][method]))
    Path(args.out).write_text(json.dumps(json_clean(result), indent=1, allow_nan=False))


if __name__ == "__main__":
    main()
