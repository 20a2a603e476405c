"""Per-method neighbour error floors, cross-validated on stored injection tables (README.md here).

For each injection table's blended pairs and each method, the galaxies are split by label parity.
The neighbour floor is measured on one half (``estimate_neighbour_floor`` at the flux floor the rows
were measured with, as ``lumos adapt`` stage 5 does) and applied to the other half's errors before
any floor (``apply_error_floor``, the measurement's own function), then the halves swap. Three
choices are compared: the survey's default for every method (``DEFAULT_NEIGHBOUR_ERROR_FLOOR``),
LUMOS's measured floor for every method (what ``lumos adapt`` applied before
``method_neighbour_error_floors``), and each method's own measured floor.

Usage: .venv/bin/python reports/lumos/neighbour-floors/per_method.py OUT.json NAME=TABLE [NAME=TABLE ...]
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from lumos_ops.constants import DEFAULT_NEIGHBOUR_ERROR_FLOOR
from lumos_ops.lumos.mixture_table import is_mixture_column
from lumos_ops.photometry.error_floor import apply_error_floor, estimate_neighbour_floor, statistical_error
from lumos_ops.stats import sigma68

SNR_BINS = ((2.0, 5.0), (5.0, 20.0), (20.0, 50.0), (50.0, np.inf))
METHODS = ("lumos", "optimal", "aperture")


def measured_floor(rows: pd.DataFrame) -> float:
    """The neighbour floor these rows ask for at their own flux floor (NaN: too few bright pairs)."""
    applied = float(np.nanmax(rows["error_floor"].to_numpy(np.float64)))
    return estimate_neighbour_floor(rows["flux"], statistical_error(rows), rows["true_flux"],
                                    np.nan_to_num(rows["neighbour_light"].to_numpy(np.float64)), floor=applied).floor


def with_floor(rows: pd.DataFrame, neighbour_floor: float) -> pd.DataFrame:
    """The rows' errors rebuilt from their statistical part with their flux floor and ``neighbour_floor``
    (``flux_err`` only: the stored LUMOS mixtures, already widened by the floors, are left out)."""
    applied = float(np.nanmax(rows["error_floor"].to_numpy(np.float64)))
    mixture = [c for c in rows.columns if is_mixture_column(c)]
    bare = rows.assign(flux_err=statistical_error(rows)).drop(columns=["flux_err_stat", *mixture])
    return apply_error_floor(bare, applied, neighbour_light=np.nan_to_num(rows["neighbour_light"].to_numpy(np.float64)),
                             neighbour_floor=neighbour_floor)


def scores(rows: pd.DataFrame) -> list[dict]:
    pull = ((rows["flux"] - rows["true_flux"]) / rows["flux_err"]).to_numpy(np.float64)
    snr = rows["true_snr"].to_numpy(np.float64)
    out = []
    for lo, hi in SNR_BINS:
        p = pull[(snr >= lo) & (snr < hi) & np.isfinite(pull)]
        out.append({"snr": [lo, None if np.isinf(hi) else hi], "n": int(p.size), "pull_sigma68": float(sigma68(p)),
                    "coverage68": float(np.mean(np.abs(p) < 1.0))})
    return out


def run(table: pd.DataFrame) -> dict:
    pairs = table[(table["population"] == "blended") & table["method"].isin(METHODS)]
    half = pairs["galaxy"].to_numpy() % 2
    floors = {k: {m: measured_floor(pairs[(half == k) & (pairs["method"] == m)]) for m in METHODS} for k in (0, 1)}
    choices = {
        "default": lambda k, m: DEFAULT_NEIGHBOUR_ERROR_FLOOR,
        "lumos_for_all": lambda k, m: floors[1 - k]["lumos"],
        "own": lambda k, m: floors[1 - k][m],
    }
    result = {"floors_by_half": floors, "choices": {}}
    for name, choose in choices.items():
        result["choices"][name] = {}
        for m in METHODS:
            parts = [with_floor(pairs[(half == k) & (pairs["method"] == m)], choose(k, m)) for k in (0, 1)]
            result["choices"][name][m] = scores(pd.concat(parts))
    return result


def main(argv: list[str]) -> None:
    out_path, *named = argv
    results = {}
    for item in named:
        name, path = item.split("=", 1)
        results[name] = {"table": path, **run(pd.read_parquet(path))}
        res = results[name]
        print(f"{name}: neighbour floors asked (halves 0 / 1): " + "; ".join(
            f"{m} {res['floors_by_half'][0][m]:.4f} / {res['floors_by_half'][1][m]:.4f}" for m in METHODS))
        for choice, by_method in res["choices"].items():
            print(f"  {choice:14s} " + " | ".join(
                f"{m} pull " + "/".join(f"{b['pull_sigma68']:.2f}" for b in bins) for m, bins in by_method.items()))
    with open(out_path, "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
