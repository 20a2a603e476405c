"""How the production methods read a real frame's stars with the PSF of a survey's default and with the PSF measured on the stars (README.md here).

For each frame, read through a survey file (default ``examples/surveys/sdss-gri-reprojected.json``)
three times: with a fixed PSF FWHM (``--fixed-fwhm-px``, 2.2 px: what that file gave before it
measured the stars, the second-moment width of ``lumos_ops.evaluation.injection.estimate_psf_fwhm``)
and beta 3.5; with the FWHM measured on the stars at beta 3.5; with both measured on the stars
(``from_stars``, :func:`lumos_ops.photometry.psf_stars.measure_psf_fwhm`). The stars are the bright isolated peaks
(> 30 sigma) on the stellar locus of their own Moffat fits (``fit_stars``, ``stellar_locus``);
their catalogue positions are the fits' sub-pixel centres, their shape a point
(r50 0.01 arcsec). ``measure_exposure`` (aperture, optimal, LUMOS; no error calibration) reads
them; the reference is the model-free flux in a 6 px radius less the median of the 9-13 px annulus.

Usage: .venv/bin/python reports/lumos/psf-from-stars/star_flux_check.py OUT.json [--survey FILE] [--fixed-fwhm-px F] FRAME ...
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.io.catalog import validate_catalog
from lumos_ops.io.exposure import read_exposure
from lumos_ops.measure import measure_exposure
from lumos_ops.noise_calibration import robust_sigma, subtract_sky
from lumos_ops.photometry.psf_stars import fit_stars, stellar_locus
from lumos_ops.survey import HeaderKey, load_survey

METHODS = ("aperture", "optimal", "lumos")


def stars(data: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Catalogue of the frame's locus stars (their fits' sub-pixel centres, point shapes) and their
    model-free fluxes in 6 px (less the median of the 9-13 px annulus), in the frame's unit."""
    fits = fit_stars(data, max_stars=1000)
    _, on = stellar_locus(fits["fwhm_px"].to_numpy())
    img = subtract_sky(np.asarray(data, dtype=np.float64))
    img = img - robust_sigma(img)[0]
    yy, xx = np.mgrid[-13:14, -13:14]
    r = np.hypot(xx, yy)
    rows, reference = [], []
    for x, y in fits.loc[on, ["x", "y"]].to_numpy():
        iy, ix = int(round(y)), int(round(x))
        big = img[iy - 13 : iy + 14, ix - 13 : ix + 14]
        if big.shape != r.shape or not np.isfinite(big).all():
            continue
        rows.append({"ref_id": len(rows), "x": x, "y": y, "r50": 0.01, "sersic_n": 1.0, "q": 1.0, "pa": 0.0,
                     "i_auto": 18.0})
        reference.append(float((big[r <= 6] - np.median(big[(r >= 9) & (r <= 13)])).sum()))
    return validate_catalog(pd.DataFrame(rows)), np.asarray(reference)


def frame_check(path: str, survey_path: str, fixed_px: float) -> dict:
    given = load_survey(survey_path)

    def variant(name: str, fwhm: HeaderKey, beta: HeaderKey):
        return dataclasses.replace(given, name=f"{given.name}+{name}", psf_fwhm_unit="pixel",
                                   header={**given.header, "psf_fwhm": fwhm, "psf_beta": beta})

    variants = (
        (f"fixed {fixed_px:g} px, beta 3.5", variant("fixed", HeaderKey(None, fixed_px), HeaderKey(None, 3.5))),
        ("stars' FWHM, beta 3.5", variant("stars", HeaderKey(None, from_stars=True), HeaderKey(None, 3.5))),
        ("stars' FWHM and beta", variant("stars-beta", HeaderKey(None, from_stars=True), HeaderKey(None, from_stars=True))),
    )
    out: dict = {"frame": Path(path).name, "survey": survey_path, "psf": {}}
    catalog = reference = None
    for label, survey in variants:
        exposure = read_exposure(path, survey=survey)
        if catalog is None:
            catalog, reference = stars(exposure.data)
        table = measure_exposure(exposure, catalog, methods=METHODS, calibrate_errors=False)
        entry = {"fwhm_px": exposure.psf_fwhm / exposure.pixel_scale, "beta": exposure.psf_beta, "n_stars": len(catalog)}
        for method in METHODS:
            flux = table[table["method"] == method].set_index("ref_id")["flux"].reindex(catalog["ref_id"]).to_numpy()
            ratio = flux / reference
            ratio = ratio[np.isfinite(ratio)]
            entry[method] = {"median": float(np.median(ratio)), "p16": float(np.percentile(ratio, 16)),
                             "p84": float(np.percentile(ratio, 84))}
        out["psf"][label] = entry
        print(f"{out['frame']:18s} {label:22s} FWHM {entry['fwhm_px']:.2f} px, beta {entry['beta']:.2f}, "
              f"{entry['n_stars']} stars; flux / 6 px "
              "aperture: " + ", ".join(f"{m} {entry[m]['median']:.3f} ({entry[m]['p16']:.2f}-{entry[m]['p84']:.2f})"
                                       for m in METHODS))
    return out


def main(argv: list[str]) -> None:
    out_path, *rest = argv
    survey_path, fixed_px = "examples/surveys/sdss-gri-reprojected.json", 2.2
    while rest[:1] in (["--survey"], ["--fixed-fwhm-px"]):
        if rest[0] == "--survey":
            survey_path = rest[1]
        else:
            fixed_px = float(rest[1])
        rest = rest[2:]
    Path(out_path).write_text(json.dumps([frame_check(f, survey_path, fixed_px) for f in rest], indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
