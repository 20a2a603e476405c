"""Two runs of ``inject_at_beta.py`` (the same galaxies, placements and noise; models at two β), row by row.

    .venv/bin/python reports/lumos/psf-beta/compare_at_beta.py OUT_JSON LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Per run, method and bin of true SNR: the median of ``(flux - true_flux) / true_flux`` (bias), its
sigma68, the pull's sigma68 and the 68 % coverage, on the rows as measured (every correction and
the default error floor applied); and the error floor the rows at measured SNR >= 50 ask for, with
its error (the report's ``error_floor.asked``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.stats import sigma68

EDGES = (2.0, 5.0, 10.0, 20.0, 50.0, np.inf)


def summary(run_dir: Path) -> dict:
    table = pd.read_parquet(run_dir / "injection_table.parquet")
    report = json.loads((run_dir / "injection_report.json").read_text())["populations"]["sersic"]["methods"]
    out = {}
    for method, rows in table.groupby("method"):
        rel = ((rows["flux"] - rows["true_flux"]) / rows["true_flux"]).to_numpy()
        pull = ((rows["flux"] - rows["true_flux"]) / rows["flux_err"]).to_numpy()
        snr = rows["true_snr"].to_numpy()
        bins = []
        for lo, hi in zip(EDGES[:-1], EDGES[1:]):
            k = (snr >= lo) & (snr < hi) & np.isfinite(rel)
            bins.append({"true_snr": [lo, hi], "n": int(k.sum()), "bias": float(np.median(rel[k])),
                         "sigma68": sigma68(rel[k]), "pull_sigma68": sigma68(pull[k]),
                         "coverage68": float(np.mean(np.abs(pull[k]) < 1.0))})
        asked = report[method]["error_floor"]["asked"]
        out[method] = {"bins": bins, "floor_asked": asked["floor"], "floor_asked_err": asked["floor_err"],
                       "aperture_factors": report[method]["aperture_correction"]}
    return out


def main(out_json: str, runs: list[str]) -> None:
    result = {}
    for item in runs:
        label, run_dir = item.split("=", 1)
        result[label] = summary(Path(run_dir))
    methods = sorted(next(iter(result.values())))
    for method in methods:
        print(f"{method}: per true-SNR bin, bias / sigma68 / pull sigma68 / coverage; floor asked at measured SNR >= 50")
        for label, runs_out in result.items():
            entry = runs_out[method]
            cells = " | ".join(f"{b['true_snr'][0]:g}-{b['true_snr'][1]:g}: {100 * b['bias']:+.1f} % / {100 * b['sigma68']:.1f} % / "
                               f"{b['pull_sigma68']:.2f} / {b['coverage68']:.2f}" for b in entry["bins"])
            print(f"  {label:8s} {cells} | floor {100 * entry['floor_asked']:.2f} ± {100 * entry['floor_asked_err']:.2f} %")
    with open(out_json, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
