"""Score an injection table with and without the blank-sky error calibration (README.md here).

``lumos inject`` measures through ``measure_exposure`` with ``calibrate_errors=True`` (the default),
which keeps the uncalibrated error in ``flux_err_raw`` and the blank-sky scale ``k`` of the row in
``error_scale``; fluxes are not changed by the calibration. One table therefore gives, for the very
same measurements:

- ``before``: the errors as the methods report them (``flux_err_raw``; LUMOS mixtures shrunk back
  about their median by the row's factor ``flux_err / flux_err_raw``);
- ``after``: the calibrated errors (the default: ``k`` scales the background part of the variance);
- ``total``: the alternative where ``k`` scales the whole variance (``flux_err_raw * k``).

The survey's error floor (``flux_err_stat`` is the error before it; docs/likelihood.md §11) is taken
out of all three first: this report is about the blank-sky calibration alone.

Usage: .venv/bin/python reports/lumos/calibration/score_calibration.py OUT.json DIR [DIR ...]
(DIR: an output folder of ``lumos inject``). Writes OUT.json (per DIR: the three variants' fixed-truth
bins, the LUMOS targets, k per frame and method) and prints markdown tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean, score_injection

VARIANTS = ("before", "after", "total")


def _restretch(table: pd.DataFrame, rows: np.ndarray, factor: np.ndarray) -> None:
    """Stretch the LUMOS mixtures and q16/q84 of ``rows`` about their median by ``factor`` (in place)."""
    k = sum(1 for c in table.columns if c.startswith("alpha_"))
    centre = table.loc[rows, "median"].to_numpy(np.float64)
    for i in range(k):
        mu = table.loc[rows, f"mu_{i}"].to_numpy(np.float64)
        table.loc[rows, f"mu_{i}"] = centre + factor * (mu - centre)
        table.loc[rows, f"sigma_{i}"] = table.loc[rows, f"sigma_{i}"].to_numpy(np.float64) * factor
    for q in ("q16", "q84"):
        table.loc[rows, q] = centre + factor * (table.loc[rows, q].to_numpy(np.float64) - centre)


def without_floor(table: pd.DataFrame) -> pd.DataFrame:
    """The table with the errors before the survey's error floor (LUMOS mixtures shrunk back with them)."""
    out = table.copy()
    if "flux_err_stat" not in out:
        return out
    stat = out["flux_err_stat"].to_numpy(np.float64)
    lum = (out["method"] == "lumos").to_numpy() & np.isfinite(stat)
    if lum.any():
        factor = stat[lum] / out["flux_err"].to_numpy(np.float64)[lum]
        _restretch(out, np.flatnonzero(lum), np.nan_to_num(factor, nan=1.0))
    out["flux_err"] = np.where(np.isfinite(stat), stat, out["flux_err"].to_numpy(np.float64))
    return out.drop(columns=[c for c in ("flux_err_stat", "error_floor", "floor_rho") if c in out])


def variant(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The table with the errors of ``name`` (see the module docstring)."""
    out = without_floor(table)
    if name == "after":
        return out
    raw = out["flux_err_raw"].to_numpy(np.float64)
    applied = out["flux_err"].to_numpy(np.float64) / raw
    lum = (out["method"] == "lumos").to_numpy()
    if name == "before":
        out["flux_err"] = raw
        if lum.any():
            _restretch(out, np.flatnonzero(lum), 1.0 / np.nan_to_num(applied[lum], nan=1.0))
    elif name == "total":
        k = out["error_scale"].to_numpy(np.float64)
        out["flux_err"] = raw * k
        if lum.any():
            # from the applied factor to k: stretch by k / applied
            _restretch(out, np.flatnonzero(lum), np.nan_to_num(k[lum] / applied[lum], nan=1.0))
    return out


def scales(table: pd.DataFrame) -> list[dict]:
    """Per frame and method: the blank-sky ``k`` of the rows (median and 10-90 % range over targets)."""
    rows = []
    for (frame, method), part in table.groupby(["frame", "method"]):
        k = part["error_scale"].to_numpy(np.float64)
        err = part["flux_err_stat"] if "flux_err_stat" in part else part["flux_err"]  # before the error floor
        factor = (err / part["flux_err_raw"]).to_numpy(np.float64)
        rows.append({"frame": Path(frame).name, "method": method, "k_median": float(np.nanmedian(k)),
                     "k_p10": float(np.nanpercentile(k, 10)), "k_p90": float(np.nanpercentile(k, 90)),
                     "applied_median": float(np.nanmedian(factor)), "n": int(len(part))})
    return rows


def compact(report: dict) -> dict:
    out = {}
    for pop, entry in report["populations"].items():
        out[pop] = {}
        for method, m in entry["methods"].items():
            out[pop][method] = [{k: b[k] for k in ("lo", "hi", "n", "bias", "pull_sigma68", "coverage68")}
                                for b in m["by_true_snr"]]
            coadd5 = next((c for c in m["coadds"] if c["n"] == 5), None)
            if coadd5:
                out[pop][method + "_coadd5"] = [{k: b[k] for k in ("lo", "hi", "n", "pull_sigma68", "coverage68")}
                                                for b in coadd5["by_true_snr"]]
            out[pop][method + "_d_width"] = m["d_width"]
    return out


def markdown(results: dict) -> str:
    lines = []
    for pop in results["after"]:
        lines.append(f"\n#### {pop}: pull sigma68 / coverage68 by true SNR (before -> after; total-variance variant)\n")
        lines.append("| method | " + " | ".join(
            f"{b['lo']:g}-{b['hi']:g}" if b["lo"] is not None else "all" for b in results["after"][pop]["aperture"]) + " |")
        lines.append("|---" * (1 + len(results["after"][pop]["aperture"])) + "|")
        for method in ("aperture", "optimal", "lumos"):
            if method not in results["after"][pop]:
                continue
            cells = []
            for b0, b1, b2 in zip(*(results[v][pop][method] for v in VARIANTS)):
                if b1["n"] == 0 or b1["pull_sigma68"] is None:
                    cells.append("-")
                    continue
                cells.append(f"{b0['pull_sigma68']:.2f}->**{b1['pull_sigma68']:.2f}** ({b2['pull_sigma68']:.2f}) / "
                             f"{b0['coverage68']:.2f}->**{b1['coverage68']:.2f}** ({b2['coverage68']:.2f})")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(out_path: str, dirs: list[str]) -> None:
    everything = {}
    for d in dirs:
        table = pd.read_parquet(Path(d) / "injection_table.parquet")
        reports = {v: score_injection(variant(table, v)) for v in VARIANTS}
        results = {v: compact(r) for v, r in reports.items()}
        out = {"variants": results, "targets": {v: r["targets"] for v, r in reports.items()}, "scales": scales(table)}
        everything[d] = out
        print(f"\n### {d}\n")
        print("| frame | method | k median (10-90 % of targets) | applied factor median | n |\n|---|---|---|---|---|")
        for r in out["scales"]:
            print(f"| {r['frame']} | {r['method']} | {r['k_median']:.2f} ({r['k_p10']:.2f}-{r['k_p90']:.2f}) | "
                  f"{r['applied_median']:.2f} | {r['n']} |")
        print(markdown(json_clean(results)))
        print("\nLUMOS targets (before -> after):")
        for b, a in zip(reports["before"]["targets"], reports["after"]["targets"]):
            print(f"  {a['population']:8s} {b['value']:.3f} -> {a['value']:.3f} {'MET' if a['met'] else 'miss'}  {a['target']}")
    Path(out_path).write_text(json.dumps(json_clean(everything), indent=1, allow_nan=False))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
