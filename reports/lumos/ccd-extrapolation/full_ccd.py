"""The shipped default on full 4096 x 2048 PAUCam CCDs, whose far half it never saw in training.

The default was trained on simulated 2048 x 2048 CCD images: on a PAUS CCD (4096 rows) every target
with y >= 2048 px is measured with an extrapolated CCD-position input and flagged CCD_EXTRAPOLATED.
This simulates full PAUCam CCDs (seed 31, three narrow bands x 2 camera epochs, one exposure each),
measures their catalogues through ``measure_exposure`` with the default and with its no-CCD companion
(which does not read the position), and scores each half of the CCD at fixed true SNR (the truth
table's flux over the measured error): median relative bias, pull sigma68, 68 % coverage, and the
default's shift from the companion in units of its error.

Usage::

    .venv/bin/python reports/lumos/ccd-extrapolation/full_ccd.py reports/lumos/ccd-extrapolation/full_ccd.json
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.method import LumosMethod
from lumos_ops.measure import measure_exposure
from lumos_ops.sim import SurveyConfig, simulate_survey
from lumos_ops.stats import sigma68

BINS = ((1.0, 5.0), (5.0, 20.0), (20.0, 1e6))
MODELS = ("default", "fast-noccd")


def main(path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = SurveyConfig(bands=("NB455", "NB685", "NB845"), n_exposures=1, n_epochs=2, seed=31)
        survey = simulate_survey(config, Path(tmp) / "survey")
        catalog = pd.read_parquet(survey.catalog_path)
        truth = pd.read_parquet(Path(tmp) / "survey" / "truth.parquet")
        rows = []
        for exposure_path in survey.exposure_paths:
            exposure = read_exposure(exposure_path)
            ny, nx = exposure.data.shape
            parts = {}
            for name in MODELS:
                table = measure_exposure(exposure, catalog, methods=("lumos",),
                                         instances={"lumos": LumosMethod(model=name, device="cpu")})
                parts[name] = table[["ref_id", "flux", "flux_err", "flag"]].set_index("ref_id")
            both = parts["default"].join(parts["fast-noccd"].add_suffix("_noccd"))
            sel = (truth["band"] == exposure.band) & (truth["epoch"] == exposure.epoch)
            both = both.join(truth.loc[sel, ["ref_id", "x", "y", "flux_true"]].set_index("ref_id"), how="inner")
            both["exposure"] = Path(exposure_path).name
            both["shape"] = f"{ny}x{nx}"
            rows.append(both[np.isfinite(both["flux"]) & np.isfinite(both["flux_noccd"])])
    data = pd.concat(rows)
    out = {"ccd_shape": sorted(set(data["shape"])), "n_targets": int(len(data)), "halves": {}}
    for half, sel in (("y < 2048 (trained area)", data["y"] < 2048), ("y >= 2048 (CCD_EXTRAPOLATED)", data["y"] >= 2048)):
        part = data[sel]
        entry = {"n": int(len(part)), "flagged_ccd_extrapolated": int(((part["flag"].astype(int) & 256) > 0).sum()),
                 "shift_default_minus_noccd_in_sigma": {
                     "median": float(np.median((part["flux"] - part["flux_noccd"]) / part["flux_err"])),
                     "sigma68": sigma68(((part["flux"] - part["flux_noccd"]) / part["flux_err"]).to_numpy())}}
        for name, suffix in (("default", ""), ("fast-noccd", "_noccd")):
            flux, err = part[f"flux{suffix}"], part[f"flux_err{suffix}"]
            snr = part["flux_true"] / err
            bins = []
            for lo, hi in BINS:
                b = (snr >= lo) & (snr < hi)
                pull = ((flux - part["flux_true"]) / err)[b].to_numpy()
                rel = (flux / part["flux_true"] - 1)[b].to_numpy()
                bins.append({"true_snr": [lo, hi], "n": int(b.sum()), "bias": float(np.median(rel)),
                             "pull_sigma68": sigma68(pull), "coverage68": float(np.mean(np.abs(pull) < 1))})
            entry[name] = bins
        out["halves"][half] = entry
        print(half, json.dumps(entry, indent=None))
    Path(path).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
