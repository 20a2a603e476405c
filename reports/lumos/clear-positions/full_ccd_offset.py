"""LUMOS against the optimal weighted sum on the simulator's own catalogue galaxies in full PAUCam CCDs.

Six full 4096 x 2048 CCD images (simulated survey, seed 31: NB455, NB685, NB845 x 2 camera epochs)
are measured through ``measure_exposure`` (optimal weighted sum and LUMOS with each model given),
and scored against the simulator's true flux by true SNR (true flux over the optimal sum's error):
median relative bias, pull sigma68, 68 % coverage, and LUMOS's median offset from the optimal sum
in units of the optimal sum's error. The targets are the catalogue's own galaxies at their own
positions, the production case, not stamps pasted on cut backgrounds.

Usage::

    .venv/bin/python reports/lumos/clear-positions/full_ccd_offset.py OUT.json MODEL [MODEL ...]
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

BINS = ((1.0, 3.0), (3.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 1e6))


def _score(flux: pd.Series, err: pd.Series, true: pd.Series, ref: pd.Series, ref_err: pd.Series) -> list[dict]:
    snr = true / ref_err
    out = []
    for lo, hi in BINS:
        b = ((snr >= lo) & (snr < hi)).to_numpy()
        pull = ((flux - true) / err).to_numpy()[b]
        out.append({"true_snr": [lo, hi], "n": int(b.sum()), "bias": float(np.median((flux / true - 1).to_numpy()[b])),
                    "pull_sigma68": sigma68(pull), "coverage68": float(np.mean(np.abs(pull) < 1)),
                    "offset_from_optimal_in_sigma": float(np.median(((flux - ref) / ref_err).to_numpy()[b]))})
    return out


def main(path: str, models: list[str]) -> None:
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        survey = simulate_survey(SurveyConfig(bands=("NB455", "NB685", "NB845"), n_exposures=1, n_epochs=2, seed=31),
                                 Path(tmp) / "survey")
        catalog = pd.read_parquet(survey.catalog_path)
        truth = pd.read_parquet(Path(tmp) / "survey" / "truth.parquet")
        for exposure_path in survey.exposure_paths:
            exposure = read_exposure(exposure_path)
            sel = (truth["band"] == exposure.band) & (truth["epoch"] == exposure.epoch)
            joined = truth.loc[sel, ["ref_id", "flux_true"]].set_index("ref_id")
            optimal = measure_exposure(exposure, catalog, methods=("optimal",)).set_index("ref_id")
            joined = joined.join(optimal[["flux", "flux_err"]].add_prefix("optimal_"), how="inner")
            for k, model in enumerate(models):
                lumos = measure_exposure(exposure, catalog, methods=("lumos",),
                                         instances={"lumos": LumosMethod(model=model, device="cpu")}).set_index("ref_id")
                joined = joined.join(lumos[["flux", "flux_err"]].add_prefix(f"m{k}_"), how="inner")
            tables.append(joined)
    data = pd.concat(tables)
    data = data[np.isfinite(data.to_numpy()).all(axis=1)]
    out = {"n_targets": int(len(data)), "optimal": _score(data["optimal_flux"], data["optimal_flux_err"], data["flux_true"],
                                                          data["optimal_flux"], data["optimal_flux_err"])}
    for k, model in enumerate(models):
        out[model] = _score(data[f"m{k}_flux"], data[f"m{k}_flux_err"], data["flux_true"], data["optimal_flux"],
                            data["optimal_flux_err"])
    Path(path).write_text(json.dumps(out, indent=2))
    for name in ["optimal", *models]:
        print(f"{name}: " + " | ".join(f"SNR {b['true_snr'][0]:.0f}-{b['true_snr'][1]:.0f} n {b['n']} bias {b['bias']:+.3f} "
                                       f"pull {b['pull_sigma68']:.2f} cov {b['coverage68']:.2f} "
                                       f"off {b['offset_from_optimal_in_sigma']:+.3f}" for b in out[name]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
