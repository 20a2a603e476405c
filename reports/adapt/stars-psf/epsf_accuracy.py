"""How well ``lumos_ops.evaluation.star_psf.star_psf`` recovers a frame's PSF from its stars.

Synthetic frames (400 x 400 px, 45 GalSim stars and 30 exponential galaxies on a noisy sky,
``tests/starframes.py``) for four PSFs and three seeds; Sérsic galaxies (r50 0.7 px n 1, 1.5 px n 1,
1.5 px n 4) drawn with the ePSF, read by a matched filter of the same galaxy drawn with the true
PSF: the printed numbers are that reading minus 1.

    .venv/bin/python reports/adapt/stars-psf/epsf_accuracy.py OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import galsim
import numpy as np

from lumos_ops.evaluation.star_psf import star_psf

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from starframes import star_frame  # noqa: E402

TRUTHS = {
    "kolmogorov 1.2 px with a 0.35 px jitter": galsim.Convolve([galsim.Kolmogorov(fwhm=1.2), galsim.Gaussian(sigma=0.35)]),
    "moffat beta 2.5, 0.7 px": galsim.Moffat(beta=2.5, fwhm=0.7),
    "moffat beta 2.5, 1.3 px": galsim.Moffat(beta=2.5, fwhm=1.3),
    "moffat beta 3.5, 3 px": galsim.Moffat(beta=3.5, fwhm=3.0),
}
GALAXIES = ((0.7, 1.0), (1.5, 1.0), (1.5, 4.0))


def main() -> None:
    out = {}
    for name, truth in TRUTHS.items():
        rows = []
        for seed in (1, 2, 3):
            psf = star_psf(star_frame(truth, n_stars=45, n_galaxies=30, shape=(400, 400), seed=seed))
            for r50, n in GALAXIES:
                galaxy = galsim.Sersic(n=n, half_light_radius=r50)
                drawn = galsim.Convolve([galaxy, psf.galsim()]).drawImage(nx=41, ny=41, scale=1.0, method="no_pixel").array
                true = galsim.Convolve([galaxy, truth]).drawImage(nx=41, ny=41, scale=1.0).array
                rows.append({"seed": seed, "r50_px": r50, "sersic_n": n, "n_stars": psf.n_stars,
                             "read_minus_1": float((true * drawn).sum() / (true * true).sum() - 1.0)})
        out[name] = rows
        errors = np.array([r["read_minus_1"] for r in rows])
        print(f"{name:<42} mean {errors.mean():+.4f}  mean |.| {np.abs(errors).mean():.4f}  worst {np.abs(errors).max():.4f}")
    every = np.array([r["read_minus_1"] for rows in out.values() for r in rows])
    print(f"{'all':<42} mean {every.mean():+.4f}  mean |.| {np.abs(every).mean():.4f}  worst {np.abs(every).max():.4f}")
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
