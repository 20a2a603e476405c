"""The centre of the blank-sky readings against the footprint's size, on real frames (README.md here).

Each frame is mapped as ``lumos inject`` maps it (its pixel noise to the shipped model's training
noise, the FWHM of its stars, ``injection.frame_header``) and written with a catalogue of 400
pseudo-galaxy shapes (``injection.draw_galaxies``). Blank-sky positions are chosen and measured
exactly as the production calibration does (``noise_calibration.blank_sky_positions``, then
``measure_blank_sky``); per method the median pull ``flux / flux_err`` (the error before
calibration) is printed per quartile of the matched-filter area ``A`` (``model_area``).
``--keep-other-sources`` measures as the production path did before other detected sources' pixels
were left out of the footprints (``measure_exposure(mask_other_sources=False)``).

Usage: .venv/bin/python reports/lumos/blank-offset/blank_pulls.py [--keep-other-sources] OUT.json FRAME [FRAME ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from lumos_ops import noise_calibration as nc
from lumos_ops.evaluation import injection as inj
from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.measure import get_method

METHODS = ("aperture", "optimal", "lumos")


def mapped_frame(path: str, work: Path, *, n_shapes: int = 400, seed: int = 3):
    """The frame mapped as ``lumos inject`` maps it (written under ``work``), read back as an
    Exposure, and ``n_shapes`` drawn Sérsic shapes (a catalogue without positions)."""
    data = inj.read_frame(path)
    cov = inj.noise_autocovariance(data)
    sigma = float(np.sqrt(cov[cov.shape[0] // 2, cov.shape[1] // 2]))
    training_noise = float(load_checkpoint(None, device="cpu").normalization.pixel_scale)
    header = inj.frame_header(sigma, training_noise=training_noise, noise_ratio=1.0, band="NB685",
                          psf_fwhm_px=inj.estimate_psf_fwhm(data), exptime=90.0)
    mapped = work / (Path(path).name.split(".")[0] + ".fits")
    hdu = fits.PrimaryHDU(data.astype(np.float32))
    for key, value in header.items():
        hdu.header[key] = value
    hdu.writeto(mapped, overwrite=True)
    exposure = read_exposure(mapped)
    rng = np.random.default_rng(seed)
    shapes = pd.DataFrame([{"r50": g.r50_arcsec, "sersic_n": g.sersic_n, "q": g.q, "pa": g.pa, "i_auto": 22.0}
                           for g in inj.draw_galaxies("sersic", n_shapes, rng, None, inj.PIXEL_SCALE)])
    return exposure, shapes


def frame_pulls(path: str, work: Path, *, n_positions: int = 400, seed: int = 3, mask_other_sources: bool = True) -> dict:
    exposure, shapes = mapped_frame(path, work, seed=seed)
    none = np.zeros(0)
    fwhm_px = exposure.psf_fwhm / exposure.pixel_scale
    # the calibration's clearance: FWHM + 3 r50 of the median shape, at least 5 px
    clearance = max(fwhm_px + 3.0 * float(shapes["r50"].median()) / exposure.pixel_scale, 5.0)
    bx, by = nc.blank_sky_positions(exposure, none, none, none, n_positions=n_positions, seed=seed, clearance=clearance,
                                    mask=nc.detect_sources(exposure.data, fwhm_px=fwhm_px))
    frames = nc.measure_blank_sky(exposure, shapes, bx, by, {m: get_method(m) for m in METHODS}, seed=seed,
                                  mask_other_sources=mask_other_sources)
    out = {"frame": Path(path).name, "positions": int(bx.size), "methods": {}}
    for name, frame in frames.items():
        use = frame[frame["usable"]]
        quartile = pd.qcut(use["area"], 4, labels=False)
        out["methods"][name] = {
            "area_edges_px2": [float(v) for v in np.quantile(use["area"], [0, 0.25, 0.5, 0.75, 1.0])],
            "median_pull_by_area": [float(v) for v in use.groupby(quartile)["pull"].median()],
            "sigma68_pull": float(0.5 * np.subtract(*np.percentile(use["pull"], [84, 16]))),
            "n": int(len(use)),
        }
    return out


def main(argv: list[str]) -> None:
    keep = "--keep-other-sources" in argv
    out_path, *frames = [a for a in argv if a != "--keep-other-sources"]
    with tempfile.TemporaryDirectory() as tmp:
        results = [frame_pulls(f, Path(tmp), mask_other_sources=not keep) for f in frames]
    for res in results:
        for name, m in res["methods"].items():
            edges = m["area_edges_px2"]
            print(f"{res['frame']:18s} {name:9s} n {m['n']:3d}  A {edges[0]:.0f}-{edges[-1]:.0f} px2  median pull by "
                  f"area quartile " + " / ".join(f"{v:+.2f}" for v in m["median_pull_by_area"])
                  + f"  (sigma68 {m['sigma68_pull']:.2f})")
    Path(out_path).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
