"""How much of a target's flux the model-weighted estimate and a large aperture read, without noise.

Usage: .venv/bin/python reports/lumos/aperture-correction/noiseless.py OUT.json [N_GALAXIES]

For ``N_GALAXIES`` (default 60) galaxies of ``lumos inject``'s ``sersic`` and ``knots`` populations
(:func:`lumos_ops.evaluation.injection.draw_galaxies`), drawn with a Kolmogorov, a Gaussian and a
Moffat (beta 2.5 and 3.5) PSF of FWHM 3 px and read through their catalogue model with the
measurement's Moffat of beta 3.5 (:func:`~lumos_ops.evaluation.injection.catalogue_model`): the
median over the galaxies of

- the optimal weighted sum's reading, background-limited (``sum m d / sum m m``);
- the model-corrected aperture reading (light in the catalogue-shaped ellipse that holds a fraction
  ``p`` of the model light, over ``p``; pixel centres inside the ellipse) for p = 0.625 (PAUS),
  0.8, 0.9, 0.95 and 0.98;

over the true flux, and the ratio of the aperture's background-limited error to the optimal sum's
(``sqrt(N_pixels sum m^2) / p``).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from lumos_ops.evaluation import injection

FWHM_PX = 3.0
FRACTIONS = (0.625, 0.8, 0.9, 0.95, 0.98)


def psfs():
    import galsim

    return {"kolmogorov": galsim.Kolmogorov(fwhm=FWHM_PX), "gaussian": galsim.Gaussian(fwhm=FWHM_PX),
            "moffat 2.5": galsim.Moffat(beta=2.5, fwhm=FWHM_PX), "moffat 3.5": galsim.Moffat(beta=3.5, fwhm=FWHM_PX)}


def elliptical_radius(galaxy: injection.Galaxy, size: int) -> np.ndarray:
    """Circularised elliptical radius (pixels) of every pixel centre of a ``size`` px stamp."""
    centre = (size - 1) / 2
    y, x = np.mgrid[:size, :size] - centre
    t = np.deg2rad(galaxy.pa)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    return np.sqrt(u**2 * galaxy.q + v**2 / galaxy.q)


def readings(galaxy: injection.Galaxy, psf) -> tuple[float, list[float], list[float]]:
    """(optimal reading, aperture readings, aperture error over the optimal's) of one galaxy."""
    light = injection._render(galaxy, psf, 0.0, 0.0)
    model = injection.catalogue_model(galaxy, fwhm_px=FWHM_PX, beta=3.5, dx=0.0, dy=0.0)
    optimal = float((model * light).sum() / (model * model).sum())
    order = np.argsort(elliptical_radius(galaxy, model.shape[0]).ravel())
    model_sum, light_sum = np.cumsum(model.ravel()[order]), np.cumsum(light.ravel()[order])
    aperture, noise = [], []
    for p in FRACTIONS:
        k = int(np.searchsorted(model_sum, p * model.sum()))
        aperture.append(float(light_sum[k] / model_sum[k]))
        noise.append(float(np.sqrt((k + 1) * (model**2).sum()) / model_sum[k]))
    return optimal, aperture, noise


def main(out: str, n: int) -> None:
    result = {"fwhm_px": FWHM_PX, "n_galaxies": n, "fractions": list(FRACTIONS), "readings": {}}
    for population in ("sersic", "knots"):
        galaxies = injection.draw_galaxies(population, n, np.random.default_rng(5))
        for name, psf in psfs().items():
            rows = [readings(g, psf) for g in galaxies]
            optimal = float(np.median([r[0] for r in rows]))
            aperture = np.median([r[1] for r in rows], axis=0).tolist()
            noise = np.median([r[2] for r in rows], axis=0).tolist()
            result["readings"][f"{population}/{name}"] = {"optimal": optimal, "aperture": aperture,
                                                          "aperture_error_over_optimal": noise}
            print(f"{population:7s} {name:11s} optimal {optimal:.3f}  aperture "
                  + " ".join(f"{p:g}: {a:.3f}" for p, a in zip(FRACTIONS, aperture))
                  + "  error ratio " + " ".join(f"{e:.2f}" for e in noise), flush=True)
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60)
