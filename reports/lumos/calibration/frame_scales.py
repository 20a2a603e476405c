"""Blank-sky error scales k of each frame, on the frame alone (no injected galaxy), and the effect of
where the blank positions are (README.md here).

Each frame gets the header ``lumos inject`` gives it (its own PSF, pixel noise mapped to the shipped
model's training noise, EXPTIME 90 s); the blank-sky shapes are 300 Sersic galaxies drawn as the
``sersic`` injection population draws them. Two position rules, same shapes, same methods:

- ``production``: :func:`lumos_ops.noise_calibration.calibrate_noise` as
  ``measure_exposure`` runs it (positions clear of PSF-matched 4-sigma detections);
- ``injection-rule``: positions >= 10 px from every pixel of ``source_mask`` (single pixels above 3
  robust sigmas, grown by 4 px), the quietest few per cent of a crowded frame: where ``lumos inject``
  placed its galaxies before it used the detections of ``source_clearance``
  (``reports/lumos/placement-noise``).

Usage: .venv/bin/python reports/lumos/calibration/frame_scales.py OUT.json FRAME [FRAME ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from lumos_ops import noise_calibration as nc
from lumos_ops.constants import PIXEL_SCALE
from lumos_ops.evaluation.injection import (
    _write,
    draw_galaxies,
    estimate_psf_fwhm,
    frame_header,
    noise_autocovariance,
    read_frame,
)
from lumos_ops.evaluation.injection_report import json_clean
from lumos_ops.io.catalog import validate_catalog
from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.measure import get_method

METHODS = ("aperture", "optimal", "lumos")


def main(out: str, frames: list[str]) -> None:
    warnings.filterwarnings("ignore")
    training_noise = float(load_checkpoint(None, device="cpu").normalization.pixel_scale)
    methods = {m: get_method(m) for m in METHODS}
    rng = np.random.default_rng(0)
    results = []
    print("| frame | method | k at A_ref | slope | k(A=40) / k(A=250) | n | median blank pull "
          "| k, single-pixel 3σ rule (n; quiet area) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in frames:
            data = read_frame(path)
            cov = noise_autocovariance(data)
            sig = float(np.sqrt(cov[cov.shape[0] // 2, cov.shape[1] // 2]))
            fwhm = estimate_psf_fwhm(data)
            header = frame_header(sig, training_noise=training_noise, noise_ratio=1.0, band="NB685", psf_fwhm_px=fwhm,
                                  exptime=90.0)
            local = Path(tmp) / (Path(path).name.split(".")[0] + ".fits")
            _write(local, data, header)
            exposure = read_exposure(local)
            gals = draw_galaxies("sersic", 300, rng)
            catalog = validate_catalog(pd.DataFrame({
                "ref_id": np.arange(300), "x": -1e4, "y": -1e4, "r50": [g.r50_arcsec for g in gals],
                "sersic_n": [g.sersic_n for g in gals], "q": [g.q for g in gals], "pa": [g.pa for g in gals],
                "i_auto": 22.0}))
            production = nc.calibrate_noise(exposure, catalog, catalog["x"].to_numpy(), catalog["y"].to_numpy(), methods)
            quiet = ndimage.distance_transform_edt(~nc.source_mask(data)) < 10.0
            bx, by = nc.blank_sky_positions(exposure, np.zeros(0), np.zeros(0), catalog["r50"].to_numpy(), mask=quiet,
                                            clearance=0.5,
                                            separation=fwhm + 3.0 * float(catalog["r50"].median()) / PIXEL_SCALE)
            blank = nc.measure_blank_sky(exposure, catalog, bx, by, methods)
            rule = {m: nc.fit_error_scale(m, f["pull"][f["usable"]], f["area"][f["usable"]]) for m, f in blank.items()}
            for name in METHODS:
                p, r = production[name], rule[name]
                results.append({
                    "frame": Path(path).name, "method": name, "psf_fwhm_px": fwhm, "shape": list(data.shape),
                    "quiet_fraction": float(1.0 - quiet.mean()),
                    "production": {"k_ref": p.scale, "slope": p.slope, "slope_err": p.slope_err, "area_ref": p.area_ref,
                                   "k_A40": float(p.k(40.0)), "k_A250": float(p.k(250.0)), "n": p.n_positions,
                                   "median_pull": p.median_pull, "reliable": p.reliable},
                    "injection_rule": {"k_ref": r.scale, "slope": r.slope, "k_A40": float(r.k(40.0)),
                                       "k_A250": float(r.k(250.0)), "n": r.n_positions, "median_pull": r.median_pull},
                })
                q = results[-1]
                print(f"| {q['frame']} | {name} | {p.scale:.2f} | {p.slope:.2f} ± {p.slope_err:.2f} | "
                      f"{p.k(40.0):.2f} / {p.k(250.0):.2f} | {p.n_positions} | {p.median_pull:+.2f} | "
                      f"{r.scale:.2f} ({r.n_positions}; {q['quiet_fraction']:.0%} of the frame) |", flush=True)
    Path(out).write_text(json.dumps(json_clean(results), indent=1, allow_nan=False))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
