"""The aperture correction's slope in target size on real sky: one factor per frame against a line in ln A.

Usage: .venv/bin/python reports/lumos/aperture-correction/slope_real.py OUT.json TABLE.parquet

``TABLE`` is a ``lumos inject`` table measured with the pooled correction as commit c6f69c2 fitted
it: a weighted median plus a Theil-Sen slope in the log of the target model's matched-filter area,
one fit per frame over all its copies. For every population, frame and method (optimal, LUMOS) it
prints the rows at true SNR >= 50:

- ``uncorrected``: the flux times its factor (the measurement before the correction);
- ``as run``: the flux of the table (the factor with the slope);
- ``one factor``: the uncorrected flux divided by one factor per frame, the weighted median of the
  matched filter's calibrators (the optimal rows flagged ``aperture_calibrator``) over their
  reference flux, weighted by the flux squared over the reference's variance beyond the method's
  (what :mod:`lumos_ops.aperture_correction` now fits; at least 30 calibrators, else 1).

Each as the median and sigma68 of ``flux / true_flux - 1``, and writes them to OUT.json.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from lumos_ops.flux_correction import weighted_median
from lumos_ops.stats import sigma68


def _summary(r: pd.Series) -> dict[str, float]:
    return {"bias": float(np.median(r)), "sigma68": float(sigma68(r.to_numpy()))}


def main(out: str, path: str) -> None:
    table = pd.read_parquet(path)
    table = table[table["method"].isin(["optimal", "lumos"])].copy()
    factor = table["aperture_correction"].to_numpy()
    for column in ("flux", "flux_err_stat"):
        table[f"{column}_u"] = table[column].to_numpy() * factor
    rows = []
    for (population, frame), part in table.groupby(["population", "frame"]):
        cal = part[(part["method"] == "optimal") & part["aperture_calibrator"].astype(bool)]
        ref_var = cal["reference_flux_err"].to_numpy() ** 2
        weights = cal["flux_u"].to_numpy() ** 2 / np.maximum(ref_var - cal["flux_err_stat_u"].to_numpy() ** 2,
                                                             0.1 * ref_var)
        one = (weighted_median((cal["flux_u"] / cal["reference_flux"]).to_numpy(), weights)
               if len(cal) >= 30 else 1.0)
        for method, rows_m in part.groupby("method"):
            bright = rows_m[rows_m["true_snr"] >= 50]
            truth = bright["true_flux"]
            entry = {"population": population, "frame": frame.rsplit("/", 1)[-1], "method": method,
                     "calibrators": len(cal), "n": len(bright), "one_factor": float(one),
                     "slope_factor_range": [float(bright["aperture_correction"].min()),
                                            float(bright["aperture_correction"].max())],
                     "uncorrected": _summary(bright["flux_u"] / truth - 1.0),
                     "as_run": _summary(bright["flux"] / truth - 1.0),
                     "one_factor_result": _summary(bright["flux_u"] / one / truth - 1.0)}
            rows.append(entry)
            print(f"{population:8s} {entry['frame']:16s} {method:8s} cal {len(cal):4d} "
                  f"factor {one:.4f} (slope: {entry['slope_factor_range'][0]:.3f}-{entry['slope_factor_range'][1]:.3f})  "
                  + "  ".join(f"{k} {entry[k]['bias']:+.4f}/{entry[k]['sigma68']:.4f}"
                              for k in ("uncorrected", "as_run", "one_factor_result")))
    with open(out, "w") as fh:
        json.dump({"table": path, "min_true_snr": 50.0, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
