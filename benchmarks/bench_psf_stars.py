"""The PSF measured on a PAUS CCD's own stars (``photometry.psf_stars``): CPU time per exposure and the FWHM it reads.

Run as ``.venv/bin/python benchmarks/bench_psf_stars.py [--repeat 3] [--stars 300] [--galaxies 2500]``.

A synthetic 4096 x 2048 CCD (``lumos_ops.bench.synthetic``: Sersic galaxies and point sources
through the renderer's Moffat of beta 3.5, Poisson noise on a flat sky) for each seeing. The
figures are CPU time of this process on one thread (``time.process_time``), the minimum over
``--repeat`` calls of :func:`lumos_ops.photometry.psf_stars.measure_psf_fwhm` with beta fixed (the
survey's ``psf_fwhm.from_stars``) and fitted (``psf_beta.from_stars`` too). This is what
``read_exposure`` adds to an exposure whose survey asks for it (``bench_ccd``: about 3 s for the
whole CCD's photometry).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure  # noqa: E402
from lumos_ops.constants import CCD_SHAPE, PIXEL_SCALE  # noqa: E402
from lumos_ops.photometry.psf_stars import measure_psf_fwhm  # noqa: E402

SEEING_ARCSEC = (0.6, 0.9, 1.3)


def ccd(seeing: float, n_stars: int, n_galaxies: int, seed: int) -> np.ndarray:
    """A CCD image (ADU) of galaxies and ``n_stars`` point sources (r50 0.01 arcsec) at ``seeing``."""
    galaxies = random_catalog(n_galaxies, shape=CCD_SHAPE, margin=0.0, seed=seed)
    stars = random_catalog(n_stars, shape=CCD_SHAPE, margin=0.0, seed=seed + 1).assign(r50=0.01, sersic_n=1.0, q=1.0)
    catalog = pd.concat([galaxies, stars], ignore_index=True)
    flux = np.concatenate([10 ** (-0.4 * (galaxies["i_auto"].to_numpy() - 25.0)),
                           np.random.default_rng(seed).uniform(300.0, 3000.0, n_stars)])
    image = synthetic_exposure(catalog, flux, shape=CCD_SHAPE, psf_fwhm=seeing, seed=seed + 2)
    return np.asarray(image.adu, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stars", type=int, default=300)
    parser.add_argument("--galaxies", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"CCD {CCD_SHAPE[0]} x {CCD_SHAPE[1]} px, {args.galaxies} galaxies, {args.stars} stars (Moffat beta 3.5); "
          f"CPU s of one thread, min of {args.repeat}")
    print(f"{'seeing':>8} {'true px':>8} | {'beta 3.5: CPU s':>15} {'FWHM px':>8} {'stars':>6} | "
          f"{'beta fitted: CPU s':>18} {'FWHM px':>8} {'beta':>5} {'stars':>6}")
    for seeing in SEEING_ARCSEC:
        data = ccd(seeing, args.stars, args.galaxies, args.seed)
        row = []
        for beta in (3.5, None):
            times, result = [], None
            for _ in range(args.repeat):
                start = time.process_time()
                result = measure_psf_fwhm(data, beta=beta)
                times.append(time.process_time() - start)
            row.append((min(times), result))
        (fixed_s, fixed), (free_s, free) = row
        print(f"{seeing:>7.1f}\" {seeing / PIXEL_SCALE:>8.2f} | {fixed_s:>15.2f} {fixed.fwhm_px:>8.3f} {fixed.n_stars:>6d} | "
              f"{free_s:>18.2f} {free.fwhm_px:>8.3f} {free.beta:>5.2f} {free.n_stars:>6d}")


if __name__ == "__main__":
    main()
