"""The neighbour leak κ each frame's isolated targets measure (lumos_ops.photometry.crosstalk), against what
its blended pairs keep noiselessly.

    .venv/bin/python reports/lumos/crosstalk/leaks.py OUT.json REPORT_DIR[:LEAKS_JSON] [...]

Each frame's measured leak, its error and the factor's model ``-(1 - 1/k)``: from the report's
Sérsic rows (``neighbour_leak``, ``neighbour_leak_err``, ``aperture_correction`` of the optimal sum),
or, for a report whose Sérsic rows predate the leak, from ``LEAKS_JSON``: the ``leaks.json`` that
``splice_blended.py REPORT_DIR WORK_DIR`` measured on the same galaxies injected again. The report's blended rows give the leak their pairs have noiselessly: the
least-squares slope of ``model_flux / true_flux - k_iso`` on ``c / true_flux`` (``model_flux`` the
catalogue models' noiseless joint-fit reading, ``k_iso`` the Sérsic galaxies' median noiseless
reading, ``c`` the neighbour light in the uncorrected unit, rows with ``c / true_flux`` > 0.05).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
from splice_blended import frame_leaks


def noiseless_leaks(report_dir: str) -> dict[str, float]:
    """Each frame's noiseless leak of its blended pairs (module docstring), from the report's table."""
    table = pd.read_parquet(f"{report_dir}/injection_table.parquet")
    out = {}
    for frame, rows in table[table["method"] == "optimal"].groupby("frame"):
        blended, sersic = rows[rows["population"] == "blended"], rows[rows["population"] == "sersic"]
        if blended.empty or sersic.empty:
            continue
        k_iso = float(np.median(sersic["model_flux"] / sersic["true_flux"]))
        light = (blended["neighbour_light"] * blended["aperture_correction"] / blended["true_flux"]).to_numpy()
        excess = (blended["model_flux"] / blended["true_flux"]).to_numpy() - k_iso
        use = np.isfinite(light) & np.isfinite(excess) & (light > 0.05)
        out[str(frame)] = float(np.sum(light[use] * excess[use]) / np.sum(light[use] ** 2))
    return out


def table_leaks(report_dir: str) -> dict[str, dict[str, float | None]]:
    """Each frame's leak as the report's Sérsic rows of the optimal sum record it."""
    table = pd.read_parquet(f"{report_dir}/injection_table.parquet")
    return frame_leaks(table[(table["population"] == "sersic") & (table["method"] == "optimal")])


def main(out: str, pairs: list[str]) -> None:
    result = {}
    for pair in pairs:
        report_dir, _, leaks = pair.partition(":")
        measured = json.load(open(leaks)) if leaks else table_leaks(report_dir)
        noiseless = noiseless_leaks(report_dir)
        result[report_dir] = {frame: {**values, "noiseless_pairs": noiseless.get(frame)} for frame, values in measured.items()}
        print(report_dir, json.dumps(result[report_dir], indent=1), flush=True)
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
