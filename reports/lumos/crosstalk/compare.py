"""Blended pairs of `lumos inject` reports, side by side: median relative error by the neighbours'
light over the flux (true SNR >= 30), the pull's median and sigma68 at true SNR 5-50, per method,
and the likelihood issue's targets.

    .venv/bin/python reports/lumos/crosstalk/compare.py REPORT_DIR [REPORT_DIR ...]
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

BINS = ((0.0, 0.1), (0.1, 0.3), (0.3, 1.0), (1.0, np.inf))


def sigma68(x: np.ndarray) -> float:
    low, high = np.nanpercentile(x, [15.865, 84.135])
    return float(high - low) / 2.0


def summary(report_dir: str) -> dict:
    table = pd.read_parquet(f"{report_dir}/injection_table.parquet")
    blended = table[table["population"] == "blended"]
    out: dict = {"methods": {}}
    for method in ("lumos", "optimal", "aperture"):
        rows = blended[blended["method"] == method]
        ratio = rows["neighbour_light"] / rows["flux"]
        rel = rows["flux"] / rows["true_flux"] - 1.0
        bright = rows["true_snr"] >= 30
        mid = (rows["true_snr"] >= 5) & (rows["true_snr"] < 50)
        pull = ((rows["flux"] - rows["true_flux"]) / rows["flux_err"])[mid].to_numpy()
        out["methods"][method] = {
            "median_rel_error_by_c_over_f": [float(np.median(rel[bright & (ratio >= lo) & (ratio < hi)])) for lo, hi in BINS],
            "pull_median": float(np.median(pull)), "pull_sigma68": sigma68(pull)}
    report = json.load(open(f"{report_dir}/injection_report.json"))
    out["targets"] = [{k: t.get(k) for k in ("target", "value", "met", "error")}
                      for t in report["targets"] if t["population"] == "blended"]
    return out


if __name__ == "__main__":
    for directory in sys.argv[1:]:
        result = summary(directory)
        print(directory, "met", sum(bool(t["met"]) for t in result["targets"]))
        for method, values in result["methods"].items():
            bins = " / ".join(f"{100 * v:+.1f}" for v in values["median_rel_error_by_c_over_f"])
            print(f"  {method:9s} by c/f {bins} %  pull median {values['pull_median']:+.3f} sigma68 {values['pull_sigma68']:.3f}")
        for t in result["targets"]:
            print(f"  {t['target'][:60]:60s} {t['value']:.3f} ± {t['error'] or 0:.3f} {'met' if t['met'] else 'missed'}")
