"""How much of the error floor two exposures of one galaxy share, by what the two exposures share.

Usage: .venv/bin/python reports/adapt/floor-sharing/sharing.py OUT.json TABLE.parquet [TABLE.parquet ...]
       [--min-snr 50] [--population sersic]

The co-adds count the survey's error floor as shared by every exposure of a source (``floor_rho``,
:mod:`lumos_ops.photometry.error_floor`). This measures it. For every table (``lumos inject``'s
``injection_table.parquet`` or a ``lumos adapt`` floor or injection table), population and method,
the rows at true SNR >= ``--min-snr`` (where the floor dominates the noise) give each placement's
relative error ``r = (flux - true_flux) / true_flux``, less its band's median. For every pair of
placements of one galaxy, ``r_1 r_2`` estimates the error they share (its mean is the covariance);
pairs are split by what the two placements share:

- ``same_frame``: one frame (the same pixels' neighbourhood, the same PSF);
- ``same_band``: two frames of one band;
- ``other_band``: frames of two bands.

Each covariance is given with its standard error over resamples of the galaxies (galaxy-block
bootstrap, 200 draws, seeded), next to the variance the floor adds (``e**2``, ``e`` the floor the
rows ask for, :func:`lumos_ops.photometry.error_floor.estimate_error_floor` on ``flux_err_stat``)
and the mean squared relative error of the rows less their mean noise variance. Their ratio is the
share of the floor that such a pair of exposures has in common (1: all, as the co-adds assume).
Prints a table (a method whose rows ask for no floor: the covariance, in units of 1e-4) and
writes the numbers to OUT.json.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from lumos_ops.photometry.error_floor import estimate_error_floor, statistical_error

KINDS = ("same_frame", "same_band", "other_band")
N_BOOT = 200


def _pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """Every pair of placements of one galaxy: product of their relative errors and its kind."""
    a = rows[["galaxy", "placement", "frame", "band", "r"]]
    pairs = a.merge(a, on="galaxy", suffixes=("_1", "_2"))
    pairs = pairs[pairs["placement_1"] < pairs["placement_2"]]
    kind = np.where(pairs["frame_1"] == pairs["frame_2"], "same_frame",
                    np.where(pairs["band_1"] == pairs["band_2"], "same_band", "other_band"))
    return pd.DataFrame({"galaxy": pairs["galaxy"].to_numpy(), "kind": kind,
                         "product": (pairs["r_1"] * pairs["r_2"]).to_numpy()})


def _covariances(pairs: pd.DataFrame, galaxies: np.ndarray) -> dict[str, float]:
    return {k: float(pairs.loc[pairs["kind"] == k, "product"].mean()) if (pairs["kind"] == k).any() else float("nan")
            for k in KINDS}


def share_table(table: pd.DataFrame, *, min_snr: float, population: str | None) -> list[dict]:
    out = []
    if population is not None and "population" in table:
        table = table[table["population"] == population]
    for method, rows in table.groupby("method"):
        rows = rows[np.isfinite(rows["flux"]) & (rows["true_snr"] >= min_snr)].copy()
        if len(rows) < 30:
            continue
        stat = statistical_error(rows)
        floor = estimate_error_floor(rows["flux"], stat, rows["true_flux"], min_snr=0.0)
        r = (rows["flux"] - rows["true_flux"]) / rows["true_flux"]
        rows["r"] = r - r.groupby(rows["band"]).transform("median")
        excess = float(np.mean(rows["r"] ** 2) - np.mean((stat / rows["true_flux"]) ** 2))
        pairs = _pairs(rows)
        galaxies = np.unique(pairs["galaxy"])
        cov = _covariances(pairs, galaxies)
        by_galaxy = {g: p for g, p in pairs.groupby("galaxy")}
        rng = np.random.default_rng(0)
        draws = [_covariances(pd.concat([by_galaxy[g] for g in rng.choice(galaxies, galaxies.size)]), galaxies)
                 for _ in range(N_BOOT)]
        entry = {"method": method, "rows": int(len(rows)), "galaxies": int(rows["galaxy"].nunique()),
                 "floor": floor.floor, "floor_variance": floor.floor**2, "excess_variance": excess}
        for k in KINDS:
            n = int((pairs["kind"] == k).sum())
            err = float(np.nanstd([d[k] for d in draws])) if n else float("nan")
            entry[k] = {"pairs": n, "covariance": cov[k], "covariance_err": err,
                        "share_of_floor": cov[k] / floor.floor**2 if floor.floor > 0 else float("nan")}
        out.append(entry)
    return out


def _cell(entry: dict, kind: str) -> str:
    """Share of the floor ± its error (pairs); without a floor, the covariance in units of 1e-4 (``c``)."""
    k = entry[kind]
    if not k["pairs"]:
        return f"{'—':>26s}"
    if entry["floor"] > 0:
        return f"{k['share_of_floor']:6.2f} ± {k['covariance_err'] / entry['floor_variance']:4.2f} ({k['pairs']:5d})"
    return f"c {1e4 * k['covariance']:5.2f} ± {1e4 * k['covariance_err']:4.2f} ({k['pairs']:5d})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("tables", nargs="+")
    parser.add_argument("--min-snr", type=float, default=50.0)
    parser.add_argument("--population", default="sersic")
    args = parser.parse_args()
    result = {"min_snr": args.min_snr, "population": args.population, "tables": {}}
    print(f"{'table':44s} {'method':9s} {'floor':>6s} " + " ".join(f"{k:>26s}" for k in KINDS))
    for path in args.tables:
        entries = share_table(pd.read_parquet(path), min_snr=args.min_snr, population=args.population)
        result["tables"][path] = entries
        for e in entries:
            cells = " ".join(_cell(e, k) for k in KINDS)
            print(f"{path[-44:]:44s} {e['method']:9s} {100 * e['floor']:5.2f}% {cells}")
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
