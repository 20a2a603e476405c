"""Candidate E's calibration: how crowded and how noisy single simulated 2048^2 exposures are at the default
sky and at a sky k times darker, against the real frames.

Usage: ``.venv/bin/python reports/lumos/truth-mismatch/candidate-e.calibration.py OUT.json WORKDIR REALDATA [SURVEY [TEAHUPOO]]``.
WORKDIR receives the simulated exposures; SURVEY (optional) is a simulated survey directory (the recipe's
``OUT/survey``) of which 16 exposures are measured too; TEAHUPOO (optional) is the recipe's training set
(``OUT/teahupoo``), whose first 2,000 stamps' noise is measured from the pixel differences in their 12-px
top and bottom borders (e-/s).

Per image: ``mask`` = fraction inside ``noise_calibration.source_mask`` (3 sigma, grown 4 px, defaults) of the
image as read; ``mask_flat`` = the same after a smooth background is subtracted (median of 64 x 64 px blocks,
3 x 3-block median filter, bilinear), which removes the simulator's scattered-light gradient and amplifier
offsets (they put up to half of a default exposure's mask on empty sky); ``sigma_e_s`` = robust sigma
(e-/s per pixel: counts x GAIN / EXPTIME, as ``io.exposure.read_exposure`` gives TEAHUPOO its cutouts) of the
whole image; ``sigma_diff_e_s`` = robust sigma of horizontal pixel differences / sqrt(2), the pixel noise
without the gradient (0.275 e-/s at the default NB685 sky, ``fast-v11``'s normalisation ``pixel_scale``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from lumos_ops.evaluation.injection import read_frame
from lumos_ops.io.exposure import read_exposure
from lumos_ops.noise_calibration import robust_sigma, source_mask
from lumos_ops.sim import SurveyConfig, simulate_survey

REAL = ("sep_image.fits", "sdss_g.fits.bz2", "sdss_r.fits.bz2", "sdss_i.fits.bz2")


def flat(d: np.ndarray) -> np.ndarray:
    ny, nx = d.shape
    b = 64
    med = np.nanmedian(d[: ny // b * b, : nx // b * b].reshape(ny // b, b, nx // b, b), axis=(1, 3))
    med = ndimage.median_filter(med, size=3, mode="nearest")
    return d - ndimage.zoom(med, (ny / med.shape[0], nx / med.shape[1]), order=1)[:ny, :nx]


def masks(d: np.ndarray) -> dict:
    return {"mask": float(source_mask(d).mean()), "mask_flat": float(source_mask(flat(d)).mean())}


def simulated(path: Path) -> dict:
    e = read_exposure(path)
    data = e.data.astype(np.float64)
    diff = (data[:, 1:] - data[:, :-1]) / np.sqrt(2)
    return {"band": e.band, "epoch": e.epoch, **masks(read_frame(path)), "median_e_s": robust_sigma(data)[0],
            "sigma_e_s": robust_sigma(data)[1], "sigma_diff_e_s": robust_sigma(diff)[1]}


def main(out: str, work: str, realdata: str, survey: str | None = None, teahupoo: str | None = None) -> None:
    result: dict = {"real": {}, "single_exposures": [], "survey": None, "stamps": None}
    for name in REAL:
        result["real"][name] = masks(read_frame(Path(realdata) / name))
        print(name, result["real"][name], flush=True)
    for band, ks in (("NB685", (1, 4, 16, 64, 256)), ("NB455", (1, 256)), ("NB845", (1, 256))):
        for k in ks:
            cfg = SurveyConfig(ccd_shape=(2048, 2048), bands=(band,), n_exposures=1, n_epochs=1, seed=1, sky_rate=6.0 / k)
            manifest = simulate_survey(cfg, Path(work) / f"{band}-k{k}")
            row = {"k": k, "sky_rate": 6.0 / k, **simulated(Path(manifest.exposure_paths[0]))}
            result["single_exposures"].append(row)
            print(json.dumps(row), flush=True)
    if survey:
        paths = sorted(Path(survey).glob("exposures/*/*.fits"))
        pick = sorted(np.random.default_rng(0).choice(len(paths), 16, replace=False))
        rows = [{"file": paths[i].name, **simulated(paths[i])} for i in pick]
        keys = ("mask", "mask_flat", "sigma_diff_e_s")
        result["survey"] = {"dir": survey, "rows": rows,
                            "min_median_max": {k: np.percentile([r[k] for r in rows], [0, 50, 100]).tolist() for k in keys}}
        print(json.dumps(result["survey"]["min_median_max"]), flush=True)
    if teahupoo:
        manifest = json.loads((Path(teahupoo) / "manifest.json").read_text())
        cutouts = np.asarray(np.load(Path(teahupoo) / manifest["shards"][0]["file"], mmap_mode="r")[:2000, 0], dtype=np.float64)
        noise = []
        for stamp in cutouts:
            diffs = [(part[:, 1:] - part[:, :-1]).ravel() / np.sqrt(2) for part in (stamp[:12], stamp[-12:])]
            noise.append(robust_sigma(np.concatenate(diffs))[1])
        q = np.nanpercentile(noise, [5, 16, 50, 84, 95]).tolist()
        result["stamps"] = {"dir": teahupoo, "n": len(noise), "noise_e_s_percentiles_5_16_50_84_95": q}
        print("stamp noise", np.round(q, 3), flush=True)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
