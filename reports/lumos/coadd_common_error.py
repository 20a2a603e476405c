"""Why co-add pulls exceed per-exposure pulls: the part of each method's error that every exposure
of a galaxy shares.

Reads an injection table (``lumos inject`` / ``lumos adapt``: one row per method, galaxy and
placement, with ``flux``, ``flux_err``, ``true_flux`` in e-/s and ``true_snr``) and models the pull
of galaxy ``i`` in placement ``j`` as

    p_ij = (flux - true_flux) / flux_err = c_i + e_ij,    var(c) = tau^2,  var(e) = s^2

``c_i`` is what every placement of the galaxy shares (its shape, its size, the network's response
to them) and ``e_ij`` what changes between placements (noise, background, sub-pixel position); the
split is :func:`lumos_ops.lumos.shared_error.decompose_pulls`. An inverse-variance co-add that treats
the exposures as independent then has pull ``sqrt(n tau^2 + s^2)``, not ``sqrt(tau^2 + s^2)``:
the shared part does not average down. Every variance is a robust one, the square of sigma68
(half the 16-84 % range, ``lumos_ops.stats.sigma68``), as the report's pull sigma68.

For each population, method and bin of per-placement true SNR (the galaxy's median), the JSON holds:
``n_galaxies``; ``pull_sigma68`` (per placement); ``s`` and ``tau`` (in units of the reported
error), ``rho = tau^2 / (tau^2 + s^2)`` (the correlation between two exposures of one galaxy);
``coadd_pull_sigma68``, the pull of the inverse-variance co-add of all placements of a galaxy
(galaxies binned as above), next to ``sqrt(n tau^2 + s^2)``; and the median of the galaxy-mean pull
per size quartile (aperture semi-major axis of the aperture rows, px), which shows how much of
``c_i`` is a shape-dependent offset.

Usage::

    .venv/bin/python reports/lumos/coadd_common_error.py TABLE.parquet OUT.json [--placements 5]

``--placements N`` keeps the placements ``place < N`` of each galaxy, as the injection report's
N-exposure co-adds do (galaxies with fewer are dropped); by default all are used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops import stats
from lumos_ops.lumos.shared_error import decompose_pulls

SNR_BINS: tuple[tuple[float, float], ...] = ((2.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 50.0), (50.0, np.inf))


def sigma68(values: np.ndarray) -> float:
    """:func:`lumos_ops.stats.sigma68` of the finite values; NaN when fewer than 10 (a bin too small to read)."""
    values = np.asarray(values, dtype=np.float64)
    return stats.sigma68(values) if np.isfinite(values).sum() >= 10 else float("nan")


def galaxy_table(rows: pd.DataFrame, sizes: pd.Series) -> pd.DataFrame:
    """One row per galaxy: placements ``n``, median true SNR, mean pull, co-add flux and error (e-/s)."""
    rows = rows[np.isfinite(rows["flux"]) & (rows["flux_err"] > 0)].copy()
    rows["pull"] = (rows["flux"] - rows["true_flux"]) / rows["flux_err"]
    rows["weight"] = rows["flux_err"] ** -2.0
    rows["weighted"] = rows["weight"] * rows["flux"]
    grouped = rows.groupby("galaxy")
    table = pd.DataFrame({
        "n": grouped.size(),
        "true_flux": grouped["true_flux"].first(),
        "snr": grouped["true_snr"].median(),
        "mean_pull": grouped["pull"].mean(),
        "coadd_flux": grouped["weighted"].sum() / grouped["weight"].sum(),
        "coadd_err": grouped["weight"].sum() ** -0.5,
    })
    table["coadd_pull"] = (table["coadd_flux"] - table["true_flux"]) / table["coadd_err"]
    table["size"] = sizes.reindex(table.index).to_numpy()
    return table, rows


def decompose(table: pd.DataFrame, rows: pd.DataFrame) -> dict[str, Any]:
    """``s``, ``tau``, ``rho`` (:func:`lumos_ops.lumos.shared_error.decompose_pulls`) and the co-add
    pulls of one bin of galaxies."""
    n = float(np.median(table["n"])) if len(table) else float("nan")
    split = decompose_pulls(rows["pull"], rows["galaxy"])
    return {
        "n_galaxies": int(len(table)),
        "placements": n,
        "pull_sigma68": sigma68(rows["pull"]),
        "s": split.s,
        "tau": split.tau,
        "rho": split.rho,
        "coadd_pull_sigma68": sigma68(table["coadd_pull"]),
        "coadd_pull_model": float(np.sqrt(n * split.tau**2 + split.s**2)),
        "coadd_pull_median": float(np.median(table["coadd_pull"])) if len(table) else float("nan"),
    }


def analyse(path: Path, placements: int | None = None) -> dict[str, Any]:
    """The decomposition for every population and method of the injection table at ``path``, on the
    placements ``place < placements`` of each galaxy (all when None)."""
    data = pd.read_parquet(path)
    if placements is not None:
        data = data[data["place"] < placements]
        counts = data.groupby(["population", "method", "galaxy"])["place"].transform("size")
        data = data[counts == placements]
    result: dict[str, Any] = {"table": str(path), "placements": placements, "populations": {}}
    for population, block in data.groupby("population", sort=True):
        sizes = block[block["method"] == "aperture"].groupby("galaxy")["aperture_a"].median()
        methods: dict[str, Any] = {}
        for method, rows in block.groupby("method", sort=True):
            table, placed = galaxy_table(rows, sizes)
            entry: dict[str, Any] = {"all": decompose(table, placed), "by_true_snr": []}
            for low, high in SNR_BINS:
                chosen = table[(table["snr"] >= low) & (table["snr"] < high)]
                entry["by_true_snr"].append({"lo": low, "hi": None if np.isinf(high) else high,
                                             **decompose(chosen, placed[placed["galaxy"].isin(chosen.index)])})
            bright = table[(table["snr"] >= 10) & np.isfinite(table["size"])]
            if len(bright) >= 40:
                quartile = pd.qcut(bright["size"], 4, duplicates="drop")
                entry["mean_pull_by_size_snr10"] = [
                    {"size_px": [float(interval.left), float(interval.right)], "n": int(len(group)),
                     "median_mean_pull": float(group["mean_pull"].median())}
                    for interval, group in bright.groupby(quartile, observed=True)
                ]
            methods[str(method)] = entry
        result["populations"][str(population)] = methods
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"{'population':10s} {'method':9s} {'true SNR':>9s} {'n':>4s} {'pull':>5s} {'s':>5s} {'tau':>5s} "
          f"{'rho':>5s} {'co-add':>6s} {'model':>6s}")
    for population, methods in result["populations"].items():
        for method, entry in methods.items():
            for row in [*entry["by_true_snr"], {**entry["all"], "lo": None, "hi": None}]:
                label = "all" if row["lo"] is None else f"{row['lo']:g}-{row['hi'] or 'inf'}"
                print(f"{population:10s} {method:9s} {label:>9s} {row['n_galaxies']:4d} {row['pull_sigma68']:5.2f} "
                      f"{row['s']:5.2f} {row['tau']:5.2f} {row['rho']:5.2f} {row['coadd_pull_sigma68']:6.2f} "
                      f"{row['coadd_pull_model']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="injection_table.parquet")
    parser.add_argument("out", type=Path, help="JSON to write")
    parser.add_argument("--placements", type=int, default=None, help="use the placements place < N of each galaxy")
    args = parser.parse_args()
    result = analyse(args.table, args.placements)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    _print(result)


if __name__ == "__main__":
    main()
