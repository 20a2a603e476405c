"""Residual of each method at fixed true SNR, by quartile of galaxy size, in two injection runs.

    python by_size.py BEFORE_TABLE AFTER_TABLE OUT.json

Each table is a ``lumos inject`` ``injection_table.parquet`` of the same galaxies and placements.
Size is the geometric mean of the aperture method's semi-axes (pixels), a proxy for the
matched-filter area the correction is fitted in. Per method, population ``sersic``, rows at true
SNR >= 20: median of ``flux / true_flux - 1``, median pull ``(flux - true_flux) / flux_err`` and the
share within ``flux_err``, per size quartile (edges from the ``before`` table); errors are the
spread over 200 resamples of whole galaxies.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

KEY = ["galaxy", "place", "frame"]
MIN_TRUE_SNR = 20.0


def _sized(table: pd.DataFrame) -> pd.DataFrame:
    t = table[table["population"] == "sersic"]
    size = t[t["method"] == "aperture"].set_index(KEY)
    size = np.sqrt(size["aperture_a"] * size["aperture_b"]).rename("size")
    return t.join(size, on=KEY)


def _stats(rows: pd.DataFrame, rng: np.random.Generator) -> dict[str, float]:
    rel = (rows["flux"] / rows["true_flux"] - 1.0).to_numpy()
    pull = ((rows["flux"] - rows["true_flux"]) / rows["flux_err"]).to_numpy()
    gal = rows["galaxy"].to_numpy()
    ids = np.unique(gal)
    where = {g: np.flatnonzero(gal == g) for g in ids}
    boot = [np.concatenate([where[g] for g in rng.choice(ids, ids.size)]) for _ in range(200)]
    return {"n": int(rel.size), "rel": float(np.median(rel)), "rel_err": float(np.std([np.median(rel[b]) for b in boot])),
            "pull_median": float(np.median(pull)), "pull_median_err": float(np.std([np.median(pull[b]) for b in boot])),
            "coverage68": float(np.mean(np.abs(pull) <= 1.0)),
            "flux_correction": float(np.median(rows["flux_correction"])) if "flux_correction" in rows else 1.0}


def main(before_path: str, after_path: str, out_path: str) -> None:
    runs = {"before": _sized(pd.read_parquet(before_path)), "after": _sized(pd.read_parquet(after_path))}
    bright = runs["before"][runs["before"]["true_snr"] >= MIN_TRUE_SNR]
    edges = np.quantile(bright["size"].dropna(), [0.0, 0.25, 0.5, 0.75, 1.0])
    edges[-1] += 1e-9
    out: dict = {"min_true_snr": MIN_TRUE_SNR, "size_edges_px": edges.tolist(), "runs": {}}
    rng = np.random.default_rng(0)
    for run, table in runs.items():
        rows = table[table["true_snr"] >= MIN_TRUE_SNR]
        out["runs"][run] = {}
        for method, group in rows.groupby("method", sort=True):
            cells = []
            for lo, hi in zip(edges[:-1], edges[1:]):
                cells.append({"size_lo": float(lo), "size_hi": float(hi),
                              **_stats(group[(group["size"] >= lo) & (group["size"] < hi)], rng)})
            out["runs"][run][method] = cells
            print(f"{run:>6} {method:<9} " + " | ".join(
                f"[{c['size_lo']:.1f}-{c['size_hi']:.1f}] {100 * c['rel']:+.2f}±{100 * c['rel_err']:.2f} % "
                f"pull {c['pull_median']:+.2f} cov {c['coverage68']:.2f} c {c['flux_correction']:.3f}" for c in cells))
    with open(out_path, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
