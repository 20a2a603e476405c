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


def grid_catalog(rng: np.random.Generator, shape: tuple[int, int], *, margin: float, step: float, seed: int):
    """A catalogue of Sérsic targets on a grid ``step`` px apart, ``margin`` px from the edges, each
    moved by up to half a pixel: ``r50`` 0.3-0.8 arcsec, ``sersic_n`` 0.8-2.5, ``q`` 0.5-1 (drawn from
    ``rng`` in that order, after the positions), the other columns of ``random_catalog``."""
    from lumos_ops.bench.synthetic import random_catalog

    grid = np.arange(margin, shape[0] - margin, step, dtype=np.float64)
    gx, gy = (g.ravel() for g in np.meshgrid(grid, grid))
    catalog = random_catalog(gx.size, shape=shape, seed=seed)
    catalog["x"] = gx + rng.uniform(-0.5, 0.5, gx.size)
    catalog["y"] = gy + rng.uniform(-0.5, 0.5, gx.size)
    catalog["r50"] = rng.uniform(0.3, 0.8, gx.size)
    catalog["sersic_n"] = rng.uniform(0.8, 2.5, gx.size)
    catalog["q"] = rng.uniform(0.5, 1.0, gx.size)
    return catalog
