"""Synthetic frames of GalSim stars and galaxies, for the tests of what is read from a frame's stars."""

from __future__ import annotations

import numpy as np


def star_frame(psf, *, n_stars: int = 30, n_galaxies: int = 30, shape: tuple[int, int] = (360, 360), seed: int = 0,
               sky: float = 100.0, noise: float = 10.0) -> np.ndarray:
    """GalSim stars of ``psf`` and ``psf``-convolved exponential galaxies (half-light radius 2-5 px)
    at random sub-pixel positions on a noisy sky (counts)."""
    import galsim

    rng = np.random.default_rng(seed)
    image = galsim.ImageF(shape[1], shape[0], scale=1.0)
    for k in range(n_stars + n_galaxies):
        x, y = rng.uniform(20, shape[1] - 20), rng.uniform(20, shape[0] - 20)
        source = psf if k < n_stars else galsim.Convolve(galsim.Exponential(half_light_radius=rng.uniform(2.0, 5.0)), psf)
        stamp = source.withFlux(rng.uniform(2e4, 2e5)).drawImage(nx=41, ny=41, scale=1.0,
                                                                offset=(x % 1 - 0.5, y % 1 - 0.5))
        stamp.setCenter(int(x) + 1, int(y) + 1)
        bounds = stamp.bounds & image.bounds
        image[bounds] += stamp[bounds]
    return image.array + rng.normal(sky, noise, shape)
