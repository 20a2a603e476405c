"""The aperture correction's reference against the truth: what scale the corrected fluxes are on.

Usage: .venv/bin/python reports/lumos/aperture-correction/reference_truth.py OUT.json NAME=TABLE.parquet ...

Each ``TABLE`` is a ``lumos inject`` table (``injection_table.parquet``). For every table, population
and frame it takes the matched filter's calibrators (the ``optimal`` rows flagged
``aperture_calibrator``) and prints, as medians over them:

- ``ref/true``: the 98 % reference aperture's flux over the injected flux, with its standard error
  (200 resamples of whole galaxies);
- ``mf/true``: the matched filter before the correction (``flux × aperture_correction``) over the truth;
- ``factor``: the exposure's factor, which puts the model-weighted methods on the reference's scale;
- ``optimal``, ``aperture``: the corrected fluxes over the truth at true SNR >= 50 (all placements,
  not only calibrators), the scale a survey reads.

No new measurement: the tables are those ``scripts/report-lumos.sh`` writes. Writes every figure to
OUT.json and prints the table.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

_RESAMPLES = 200


def _median_err(values: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> float:
    """Standard error of the median of ``values`` over resamples of whole ``groups``."""
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(unique.size)]
    draws = [np.median(values[np.concatenate([members[k] for k in rng.integers(0, unique.size, unique.size)])])
             for _ in range(_RESAMPLES)]
    return float(np.std(draws))


def scale_rows(name: str, table: pd.DataFrame) -> list[dict[str, object]]:
    """One row per population and frame of ``table`` (columns of the module docstring)."""
    rng = np.random.default_rng(0)
    rows = []
    for (population, frame), part in table.groupby(["population", "frame"], sort=True):
        optimal = part[part["method"] == "optimal"]
        cal = optimal[optimal["aperture_calibrator"].astype(bool)]
        bright = part[part["true_snr"] >= 50]
        row: dict[str, object] = {"injection": name, "population": population, "frame": str(frame).rsplit("/", 1)[-1],
                                  "n_calibrators": int(len(cal))}
        if len(cal):
            ref = (cal["reference_flux"] / cal["true_flux"]).to_numpy()
            row["ref_true"] = float(np.median(ref))
            row["ref_true_err"] = _median_err(ref, cal["galaxy"].to_numpy(), rng)
            row["mf_true"] = float(np.median(cal["flux"] * cal["aperture_correction"] / cal["true_flux"]))
            row["factor"] = float(np.median(cal["aperture_correction"]))
        for method in ("optimal", "aperture", "lumos"):
            rel = bright.loc[bright["method"] == method, "flux"] / bright.loc[bright["method"] == method, "true_flux"]
            row[method] = float(np.median(rel)) if len(rel) else float("nan")
        rows.append(row)
    return rows


def main(out: str, specs: list[str]) -> None:
    rows = []
    for spec in specs:
        name, path = spec.split("=", 1)
        rows.extend(scale_rows(name, pd.read_parquet(path)))
    with open(out, "w") as handle:
        json.dump(rows, handle, indent=1)
    print(f"{'injection':16s} {'population':10s} {'frame':20s} {'n cal':>5s} {'ref/true':>15s} {'mf/true':>8s} "
          f"{'factor':>7s} | SNR>=50: {'optimal':>7s} {'aperture':>8s} {'lumos':>7s}")
    for r in rows:
        ref = f"{r['ref_true']:.4f} ± {r['ref_true_err']:.4f}" if "ref_true" in r else "-"
        mf = f"{r['mf_true']:.4f}" if "mf_true" in r else "-"
        factor = f"{r['factor']:.4f}" if "factor" in r else "-"
        print(f"{r['injection']:16s} {r['population']:10s} {r['frame']:20s} {r['n_calibrators']:5d} {ref:>15s} {mf:>8s} "
              f"{factor:>7s} |          {r['optimal']:7.4f} {r['aperture']:8.4f} {r['lumos']:7.4f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
