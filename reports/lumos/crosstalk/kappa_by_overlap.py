"""The calibrators' leak by offset, applied to the injected pairs by their overlap (offline, optimal sum).

    .venv/bin/python reports/lumos/crosstalk/kappa_by_overlap.py REPORT_DIR BY_SEPARATION_JSON

Each frame's per-offset leaks (``by_separation.py``) interpolated in the offsets' median overlap
``ρ²`` at each blended row's ``neighbour_overlap`` (clamped at the ends) replace the pooled leak:
``flux + (κ_pooled − κ(ρ²)) c / k``. Printed per quarter of overlap (rows with ``c >= 0.3 f`` at
true SNR >= 30): what is left after the correction, % of ``c``, with the pooled leak and with the
interpolated one; and the median relative error of every blended row at true SNR >= 30.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd


def main(report_dir: str, by_separation: str) -> None:
    calibrators = json.load(open(by_separation))["calibrators"]
    table = pd.read_parquet(f"{report_dir}/injection_table.parquet")
    rows = table[(table["population"] == "blended") & (table["method"] == "optimal")]
    overlap = rows["neighbour_overlap"].to_numpy()
    kappa = np.full(len(rows), np.nan)
    for frame, offsets in calibrators.items():
        order = np.argsort([o["overlap"] for o in offsets])
        at = np.array([offsets[i]["overlap"] for i in order])
        values = np.array([offsets[i]["kappa"] for i in order])
        on = (rows["frame"] == frame).to_numpy()
        kappa[on] = np.interp(overlap[on], at, values)
    light = rows["neighbour_light"].to_numpy()
    truth = rows["true_flux"].to_numpy()
    flux = rows["flux"].to_numpy()
    moved = flux + (rows["neighbour_leak"].to_numpy() - kappa) * light / rows["aperture_correction"].fillna(1.0).to_numpy()
    bright = rows["true_snr"].to_numpy() >= 30
    strong = light >= 0.3 * truth
    edges = np.quantile(overlap[strong], [0.0, 0.25, 0.5, 0.75, 1.0])
    cells = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        part = bright & strong & (overlap >= lo) & (overlap <= hi)
        cells.append(f"ρ² {lo:.2f}-{hi:.2f}: {100 * np.median((flux - truth)[part] / light[part]):+.2f} -> "
                     f"{100 * np.median((moved - truth)[part] / light[part]):+.2f}")
    print(report_dir, " | ".join(cells), f"| all bright: {100 * np.median(flux[bright] / truth[bright] - 1):+.2f} -> "
          f"{100 * np.median(moved[bright] / truth[bright] - 1):+.2f} %")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
