"""The error floor injection tables ask for, per table, population and method.

Usage: .venv/bin/python reports/lumos/error-floor/floor_from_tables.py OUT.json TABLE.parquet [TABLE.parquet ...]

For every table (``lumos inject``'s ``injection_table.parquet``) and every population and method:
:func:`lumos_ops.photometry.error_floor.estimate_error_floor` of the rows at measured SNR >= 20 and
>= 50, from the errors before any floor (``flux_err_stat``, else ``flux_err``), and the pull sigma68
per bin of true SNR without the floor and with the floor the rows were measured with; for rows
with a fitted neighbour, :func:`~lumos_ops.photometry.error_floor.estimate_neighbour_floor` (the
fraction of the neighbours' light they ask for at the applied flux floor). Prints a table and
writes the numbers to OUT.json.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from lumos_ops.photometry.error_floor import estimate_error_floor, estimate_neighbour_floor, statistical_error
from lumos_ops.stats import sigma68

SNR_BINS = ((2.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 50.0), (50.0, np.inf))


def _pulls(rows: pd.DataFrame, err: np.ndarray) -> list[float]:
    out = []
    for lo, hi in SNR_BINS:
        sel = ((rows["true_snr"] >= lo) & (rows["true_snr"] < hi)).to_numpy() & np.isfinite(err)
        pull = (rows["flux"].to_numpy()[sel] - rows["true_flux"].to_numpy()[sel]) / err[sel]
        out.append(round(float(sigma68(pull)), 3) if sel.sum() >= 10 else None)
    return out


def main(out: str, tables: list[str]) -> None:
    result = {"snr_bins": [[lo, None if np.isinf(hi) else hi] for lo, hi in SNR_BINS], "tables": {}}
    for path in tables:
        table = pd.read_parquet(path)
        entries = {}
        for (population, method), rows in table.groupby(["population", "method"], sort=True):
            rows = rows[np.isfinite(rows["flux"])]
            stat = statistical_error(rows)
            asked = {f"snr>={s}": estimate_error_floor(rows["flux"], stat, rows["true_flux"], min_snr=s).to_dict()
                     for s in (20.0, 50.0)}
            applied = float(rows["error_floor"].max()) if "error_floor" in rows else 0.0
            light = rows["neighbour_light"].to_numpy(np.float64) if "neighbour_light" in rows else np.zeros(len(rows))
            neighbour = estimate_neighbour_floor(rows["flux"], stat, rows["true_flux"], light, floor=applied).to_dict()
            entries[f"{population}/{method}"] = {
                "applied": applied, "asked": asked, "neighbour_asked": neighbour,
                "neighbour_applied": float(rows["neighbour_error_floor"].max()) if "neighbour_error_floor" in rows else applied,
                "pull_by_true_snr_without_floor": _pulls(rows, stat),
                "pull_by_true_snr_as_measured": _pulls(rows, rows["flux_err"].to_numpy(np.float64)),
            }
            a = asked["snr>=50.0"]
            print(f"{path}  {population:8s} {method:9s} applied {applied:.4f}  asks {a['floor']:.4f} at SNR >= 50 "
                  f"(n {a['n']}; {asked['snr>=20.0']['floor']:.4f} at >= 20; neighbours {neighbour['floor']:.4f}, "
                  f"n {neighbour['n']})  pulls without "
                  f"{entries[f'{population}/{method}']['pull_by_true_snr_without_floor']}  as measured "
                  f"{entries[f'{population}/{method}']['pull_by_true_snr_as_measured']}")
        result["tables"][path] = entries
    with open(out, "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
