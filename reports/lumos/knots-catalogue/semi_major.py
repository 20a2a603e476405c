"""What a semi-major-axis half-light radius read as the circularised ``r50`` does to the flux.

Usage: .venv/bin/python reports/lumos/knots-catalogue/semi_major.py OUT.json

Sersic galaxies (r50 0.4 and 0.8 arcsec, n 1 and 2.5, q 0.3 / 0.5 / 0.7, the package pixel scale)
drawn by GalSim with the measurement's Moffat PSF of FWHM 3 px, read noiselessly through their
catalogue model (:func:`lumos_ops.evaluation.injection.noiseless_reading`, the optimal sum's
background-limited weights) with the right ``r50`` and with ``r50 / sqrt(q)``, the semi-major axis
that Sersic-fit catalogues give. Prints the readings over the true flux and writes them to OUT.json.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np

from lumos_ops.constants import PIXEL_SCALE
from lumos_ops.evaluation import injection
from lumos_ops.render import DEFAULT_MOFFAT_BETA

FWHM_PX = 3.0


def _reading(light: np.ndarray, galaxy: injection.Galaxy) -> float:
    """Noiseless reading over the true flux of unit-flux ``light`` through ``galaxy``'s catalogue model."""
    model = injection.catalogue_model(galaxy, fwhm_px=FWHM_PX, beta=DEFAULT_MOFFAT_BETA, dx=0.0, dy=0.0)
    return injection.noiseless_reading([(light, 1.0)], [model])


def main(out: str) -> None:
    import galsim

    psf = injection._psf("moffat", FWHM_PX)
    rows = []
    for r50 in (0.4, 0.8):
        for q in (0.3, 0.5, 0.7):
            for n in (1.0, 2.5):
                profile = galsim.Sersic(n=n, half_light_radius=r50 / PIXEL_SCALE, trunc=0.0).shear(
                    q=q, beta=20.0 * galsim.degrees)
                galaxy = injection.Galaxy(profile, r50, n, q, 20.0)
                light = injection._render(galaxy, psf, 0.0, 0.0)
                major = dataclasses.replace(galaxy, r50_arcsec=r50 / np.sqrt(q))
                rows.append({"r50": r50, "q": q, "sersic_n": n, "circularised": _reading(light, galaxy),
                             "semi_major": _reading(light, major)})
                print(f"r50 {r50:.1f}\"  q {q:.1f}  n {n:.1f}: r50 {rows[-1]['circularised']:.3f}, "
                      f"semi-major as r50 {rows[-1]['semi_major']:.3f}")
    with open(out, "w") as fh:
        json.dump({"fwhm_px": FWHM_PX, "pixel_scale": PIXEL_SCALE, "readings": rows}, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
