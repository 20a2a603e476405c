"""How the measurement's Moffat PSF model reads the flux of a real frame's own stars (README.md here).

For every bright (> 40 robust sigmas above the frame less its coarse sky), unsaturated, isolated
(brightest within 10 px) peak, a pixel-integrated GalSim Moffat of fixed beta (2.5, 3.5 = the
renderer's default, 4.5) is fitted by least squares to the 15 x 15 px cutout: flux, sub-pixel
centre, FWHM and a constant. The fitted flux is compared with the star's aperture flux (radius
6 px, background the median of the 9-13 px annulus). Stars are the half of the peaks with the
smallest fitted FWHM (galaxies are larger). A ratio of 1 means the profile, given the FWHM that fits
the star, reads its light right; total flux hangs on the wings that the ratio tests.

Usage: .venv/bin/python reports/lumos/psf-profile/star_flux.py OUT.json FRAME [FRAME ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import galsim
import numpy as np
from scipy import ndimage, optimize

from lumos_ops.evaluation.injection import estimate_psf_fwhm, read_frame
from lumos_ops.noise_calibration import robust_sigma, subtract_sky

BETAS = (2.5, 3.5, 4.5)
HALF = 7


def _fit(cut: np.ndarray, beta: float, fwhm0: float, sigma: float) -> tuple[float, float, float]:
    """Fitted (flux, FWHM px, chi2 per pixel) of a Moffat of ``beta`` to ``cut``."""
    n = cut.shape[0]

    def residual(p: np.ndarray) -> np.ndarray:
        flux, x0, y0, fwhm, const = p
        if fwhm <= 0.3:
            return np.full(cut.size, 1e6)
        unit = galsim.Moffat(beta=beta, fwhm=fwhm).drawImage(nx=n, ny=n, scale=1.0, offset=(x0, y0)).array
        return (flux * unit + const - cut).ravel() / sigma

    start = [cut.sum(), 0.0, 0.0, fwhm0, 0.0]
    fit = optimize.least_squares(residual, start, x_scale=[max(cut.sum(), 1e-9), 0.3, 0.3, 0.5, sigma], max_nfev=200)
    return float(fit.x[0]), float(fit.x[3]), float(np.mean(fit.fun**2))


def frame_stars(path: str) -> dict:
    data = read_frame(path)
    img = subtract_sky(data)
    med, sig = robust_sigma(img)
    img = np.nan_to_num(img - med)
    fwhm0 = 0.7 * estimate_psf_fwhm(data)
    peaks = (img == ndimage.maximum_filter(img, size=21)) & (img > 40 * sig)
    yy, xx = np.mgrid[-13:14, -13:14]
    r = np.hypot(xx, yy)
    rows = []
    for y, x in zip(*np.nonzero(peaks)):
        if y < 15 or x < 15 or y >= img.shape[0] - 15 or x >= img.shape[1] - 15:
            continue
        cut = img[y - HALF : y + HALF + 1, x - HALF : x + HALF + 1]
        if np.count_nonzero(cut >= 0.98 * cut.max()) > 2:  # flat-topped: saturated
            continue
        big = img[y - 13 : y + 14, x - 13 : x + 14]
        aperture = float((big[r <= 6] - np.median(big[(r >= 9) & (r <= 13)])).sum())
        rows.append({"aperture": aperture, **{beta: _fit(cut, beta, fwhm0, sig) for beta in BETAS}})
    fwhm = np.array([row[3.5][1] for row in rows])
    stars = [row for row, f in zip(rows, fwhm) if f <= 1.1 * np.median(fwhm)]
    out = {"frame": Path(path).name, "peaks": len(rows), "stars": len(stars),
           "fwhm_px_beta3.5": float(np.median([s[3.5][1] for s in stars])), "by_beta": {}}
    for beta in BETAS:
        ratio = np.array([s[beta][0] / s["aperture"] for s in stars])
        q16, q50, q84 = np.percentile(ratio, [16, 50, 84])
        out["by_beta"][str(beta)] = {"flux_over_aperture_median": float(q50), "p16": float(q16), "p84": float(q84),
                                     "chi2_per_pixel_median": float(np.median([s[beta][2] for s in stars]))}
    return out


def main(out_path: str, frames: list[str]) -> None:
    results = [frame_stars(f) for f in frames]
    for res in results:
        cells = "; ".join(f"beta {b}: {v['flux_over_aperture_median']:.3f} ({v['p16']:.3f}-{v['p84']:.3f}), "
                          f"chi2/px {v['chi2_per_pixel_median']:.1f}" for b, v in res["by_beta"].items())
        print(f"{res['frame']}: {res['stars']} stars of {res['peaks']} peaks, FWHM {res['fwhm_px_beta3.5']:.2f} px; {cells}")
    Path(out_path).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
