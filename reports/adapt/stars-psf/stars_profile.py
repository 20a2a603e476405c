"""Which PSF do the SDSS frames' stars show: the measurement's Moffat or a Kolmogorov of its FWHM?

For each frame: the stars on the stellar locus (``lumos_ops.photometry.psf_stars``, FWHM and β
fitted), their effective PSF built by photutils (``EPSFBuilder``, 4x oversampled, 15 px boxes, the
frame's median sky subtracted), and for the Moffat of the locus FWHM and median β and a Kolmogorov
of the same FWHM (GalSim, pixel-integrated): the light within 1, 1.5, 2 and 3 px of the centre
over the light within 5 px (the ePSF's far wings hold the neighbours' and the sky's noise), and the
flux that the Moffat catalogue model reads for noiseless Sérsic galaxies (optimal weights, r50 0.5,
1 and 2 px, n 1 and 4) drawn with each PSF.

    .venv/bin/python reports/adapt/stars-psf/stars_profile.py OUT.json FRAME...
"""

from __future__ import annotations

import json
import sys

import galsim
import numpy as np
from astropy.io import fits
from astropy.nddata import NDData
from astropy.table import Table
from photutils.psf import EPSFBuilder, extract_stars

from lumos_ops.photometry.psf_stars import fit_stars, stellar_locus

OVER = 4
RADII = (1.0, 1.5, 2.0, 3.0)
SHAPES = ((0.5, 1.0), (0.5, 4.0), (1.0, 1.0), (1.0, 4.0), (2.0, 1.0), (2.0, 4.0))


def encircled(image: np.ndarray, scale: float) -> list[float]:
    """Light within each of RADII (px) over the light within 5 px, of an image of pixel ``scale`` px."""
    n = image.shape[0]
    yy, xx = (np.indices(image.shape) - (n - 1) / 2.0) * scale
    r = np.hypot(xx, yy)
    total = image[r <= 5.0].sum()
    return [float(image[r <= R].sum() / total) for R in RADII]


def frame(path: str) -> dict:
    data = np.nan_to_num(fits.getdata(path).astype(np.float64))
    data = data - np.median(data)
    stars = fit_stars(data, beta=None)
    fwhm, on = stellar_locus(stars["fwhm_px"].to_numpy())
    stars = stars[on]
    beta = float(np.median(stars["beta"]))
    cut = extract_stars(NDData(data), Table({"x": stars["x"].to_numpy(), "y": stars["y"].to_numpy()}), size=15)
    epsf, _ = EPSFBuilder(oversampling=OVER, maxiters=10, progress_bar=False).build_epsf(cut)
    grid = epsf.data.shape[0]
    # the ePSF is pixel-convolved and sampled OVER times per pixel: read its light on its own grid
    moffat, kolmogorov = galsim.Moffat(beta=beta, fwhm=fwhm), galsim.Kolmogorov(fwhm=fwhm)
    pixel = galsim.Pixel(1.0)

    def drawn(profile) -> np.ndarray:
        return galsim.Convolve([profile, pixel]).drawImage(nx=grid, ny=grid, scale=1.0 / OVER, method="no_pixel").array

    out = {"frame": path.split("/")[-1], "n_stars": int(len(stars)), "fwhm_px": float(fwhm), "beta": beta,
           "encircled_over_5px": {"radii_px": list(RADII), "stars_epsf": encircled(epsf.data, 1.0 / OVER),
                                  "moffat": encircled(drawn(moffat), 1.0 / OVER),
                                  "kolmogorov": encircled(drawn(kolmogorov), 1.0 / OVER)},
           "read_through_moffat": []}
    core = epsf.data.copy()
    yy, xx = (np.indices(core.shape) - (grid - 1) / 2.0) / OVER
    core[np.hypot(xx, yy) > 5.0] = 0.0  # the ePSF within 5 px: its wings beyond are the frame's noise
    stars_psf = galsim.InterpolatedImage(galsim.Image(core / core.sum()), scale=1.0 / OVER, flux=1.0)
    for r50, n in SHAPES:
        galaxy = galsim.Sersic(n=n, half_light_radius=r50, flux=1.0)
        model = galsim.Convolve([galaxy, moffat]).drawImage(nx=41, ny=41, scale=1.0).array
        row = {"r50_px": r50, "sersic_n": n}
        for name, image in (
            ("stars_epsf", galsim.Convolve([galaxy, stars_psf]).drawImage(nx=41, ny=41, scale=1.0,
                                                                          method="no_pixel").array),
            ("kolmogorov", galsim.Convolve([galaxy, kolmogorov]).drawImage(nx=41, ny=41, scale=1.0).array),
        ):
            row[name] = float((model * image).sum() / (model * model).sum() / image.sum())
        out["read_through_moffat"].append(row)
    return out


def main() -> None:
    result = [frame(p) for p in sys.argv[2:]]
    with open(sys.argv[1], "w") as fh:
        json.dump(result, fh, indent=1)
    for f in result:
        ee = f["encircled_over_5px"]
        print(f"{f['frame']}: {f['n_stars']} stars, FWHM {f['fwhm_px']:.2f} px, beta {f['beta']:.2f}")
        for name in ("stars_epsf", "moffat", "kolmogorov"):
            print(f"  light within {ee['radii_px']} px / 5 px, {name:<10}: " + " ".join(f"{v:.3f}" for v in ee[name]))
        for row in f["read_through_moffat"]:
            print(f"  r50 {row['r50_px']} px n {row['sersic_n']}: read through the Moffat: stars' ePSF "
                  f"{row['stars_epsf']:.3f}, Kolmogorov {row['kolmogorov']:.3f}")


if __name__ == "__main__":
    main()
