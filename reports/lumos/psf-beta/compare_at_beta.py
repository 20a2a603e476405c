"""Two runs of ``inject_at_beta.py`` (the same galaxies, placements and noise; models at two β), row by row.

    .venv/bin/python reports/lumos/psf-beta/compare_at_beta.py OUT_JSON LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Per run, method and bin of true SNR: the median of ``(flux - true_flux) / true_flux`` (bias), its
sigma68, the pull's sigma68 and the 68 % coverage, on the rows as measured (every correction and
the default error floor applied); and the error floor the rows at measured SNR >= 50 ask for, with
its error (the report's ``error_floor.asked``).

Every run after the first is also scored on the first run's reference apertures (label
``LABEL@FIRST``): its uncorrected fluxes (``flux * aperture_correction``) divided, per frame and
method, by their median ratio to the first run's ``reference_flux`` on the first run's calibrators.
The draws are the same, so that is the run's fluxes under a reference that keeps the first run's
models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.stats import sigma68

EDGES = (2.0, 5.0, 10.0, 20.0, 50.0, np.inf)


def _bins(rows: pd.DataFrame) -> list[dict]:
    rel = ((rows["flux"] - rows["true_flux"]) / rows["true_flux"]).to_numpy()
    pull = ((rows["flux"] - rows["true_flux"]) / rows["flux_err"]).to_numpy()
    snr = rows["true_snr"].to_numpy()
    bins = []
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        k = (snr >= lo) & (snr < hi) & np.isfinite(rel)
        bins.append({"true_snr": [lo, hi], "n": int(k.sum()), "bias": float(np.median(rel[k])),
                     "sigma68": sigma68(rel[k]), "pull_sigma68": sigma68(pull[k]),
                     "coverage68": float(np.mean(np.abs(pull[k]) < 1.0))})
    return bins


def on_references(run: pd.DataFrame, first: pd.DataFrame) -> pd.DataFrame:
    """``run``'s rows with their aperture correction redone on ``first``'s reference apertures (module
    docstring); the two tables hold the same draws in the same order."""
    keys = ["method", "frame", "placement"]
    if not (run[keys].to_numpy() == first[keys].to_numpy()).all():
        raise ValueError("the two runs do not hold the same draws in the same order")
    raw = run["flux"].to_numpy() * run["aperture_correction"].to_numpy()
    raw_err = run["flux_err"].to_numpy() * run["aperture_correction"].to_numpy()
    ratio = raw / first["reference_flux"].to_numpy()
    use = first["aperture_calibrator"].astype(bool).to_numpy() & np.isfinite(ratio)
    factor = pd.Series(np.where(use, ratio, np.nan)).groupby([run["method"].to_numpy(), run["frame"].to_numpy()]).transform("median")
    return run.assign(flux=raw / factor.to_numpy(), flux_err=raw_err / factor.to_numpy())


def summary(run_dir: Path, table: pd.DataFrame) -> dict:
    """Per method: :func:`_bins` of the run's ``table``, its floor asked and its aperture factors."""
    report = json.loads((run_dir / "injection_report.json").read_text())["populations"]["sersic"]["methods"]
    out = {}
    for method, rows in table.groupby("method"):
        bins = _bins(rows)
        asked = report[method]["error_floor"]["asked"]
        out[method] = {"bins": bins, "floor_asked": asked["floor"], "floor_asked_err": asked["floor_err"],
                       "aperture_factors": report[method]["aperture_correction"]}
    return out


def main(out_json: str, runs: list[str]) -> None:
    result = {}
    first: tuple[str, pd.DataFrame] | None = None
    for item in runs:
        label, run_dir = item.split("=", 1)
        table = pd.read_parquet(Path(run_dir) / "injection_table.parquet")
        result[label] = summary(Path(run_dir), table)
        if first is None:
            first = (label, table)
            continue
        moved = on_references(table, first[1])
        result[f"{label}@{first[0]}"] = {method: {"bins": _bins(rows), "floor_asked": float("nan"),
                                                   "floor_asked_err": float("nan"), "aperture_factors": None}
                                          for method, rows in moved.groupby("method")}
    methods = sorted(next(iter(result.values())))
    for method in methods:
        print(f"{method}: per true-SNR bin, bias / sigma68 / pull sigma68 / coverage; floor asked at measured SNR >= 50")
        for label, runs_out in result.items():
            entry = runs_out[method]
            cells = " | ".join(f"{b['true_snr'][0]:g}-{b['true_snr'][1]:g}: {100 * b['bias']:+.1f} % / {100 * b['sigma68']:.1f} % / "
                               f"{b['pull_sigma68']:.2f} / {b['coverage68']:.2f}" for b in entry["bins"])
            floor = (f" | floor {100 * entry['floor_asked']:.2f} ± {100 * entry['floor_asked_err']:.2f} %"
                     if np.isfinite(entry["floor_asked"]) else "")
            print(f"  {label:12s} {cells}{floor}")
    with open(out_json, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
