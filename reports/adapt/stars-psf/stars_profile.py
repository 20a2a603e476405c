"""Which PSF do the SDSS frames' stars show: the measurement's Moffat or a Kolmogorov of its FWHM?

For each frame: its effective PSF built from its stars (``lumos_ops.evaluation.star_psf.star_psf``,
what ``--psf-profile stars`` injects), the measurement's Moffat (FWHM and β fitted to the stars,
``measure_psf_fwhm(beta=None)``, as a survey's ``from_stars`` reads them) and a Kolmogorov of the same FWHM (GalSim, pixel-integrated): the light within 1, 1.5, 2
and 3 px of the centre over the light within 5 px, and the
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

from lumos_ops.evaluation.star_psf import star_psf
from lumos_ops.photometry.psf_stars import measure_psf_fwhm

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
    psf = star_psf(data, label=path)
    measured = measure_psf_fwhm(data, beta=None, label=path)  # the measurement's Moffat, as read_exposure fits it
    fwhm, beta = measured.fwhm_px, measured.beta
    grid, scale = psf.image.shape[0], 1.0 / psf.oversampling
    moffat, kolmogorov = galsim.Moffat(beta=beta, fwhm=fwhm), galsim.Kolmogorov(fwhm=fwhm)

    def drawn(profile) -> np.ndarray:  # pixel-integrated, on the ePSF's grid
        return galsim.Convolve([profile, galsim.Pixel(1.0)]).drawImage(nx=grid, ny=grid, scale=scale,
                                                                       method="no_pixel").array

    out = {"frame": path.split("/")[-1], "n_stars": psf.n_stars, "fwhm_px": fwhm, "beta": beta,
           "epsf_locus_fwhm_px": psf.fwhm_px,
           "encircled_over_5px": {"radii_px": list(RADII), "stars_epsf": encircled(psf.image, scale),
                                  "moffat": encircled(drawn(moffat), scale),
                                  "kolmogorov": encircled(drawn(kolmogorov), scale)},
           "read_through_moffat": []}
    for r50, n in SHAPES:
        galaxy = galsim.Sersic(n=n, half_light_radius=r50, flux=1.0)
        model = galsim.Convolve([galaxy, moffat]).drawImage(nx=41, ny=41, scale=1.0).array
        row = {"r50_px": r50, "sersic_n": n}
        for name, image in (
            ("stars_epsf", galsim.Convolve([galaxy, psf.galsim()]).drawImage(nx=41, ny=41, scale=1.0,
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
