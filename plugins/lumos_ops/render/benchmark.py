"""Speed and accuracy of the renderer against GalSim on one random parameter set.

Used by ``benchmarks/bench_render.py`` and ``lumos bench methods``. GalSim is imported lazily;
:class:`~lumos_ops.render.galsim_reference.GalSimMissingError` says how to install it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from lumos_ops.constants import PIXEL_SCALE, STAMP_SIZE
from lumos_ops.exceptions import LumosValueError
from lumos_ops.render.draw import render_galaxies
from lumos_ops.render.galsim_reference import draw_galsim_galaxy, import_galsim

__all__ = ["PROFILE_SETS", "random_profiles", "render_profile_set", "galsim_profile_set", "run_render_benchmark"]

PROFILE_SETS: tuple[str, ...] = ("uniform", "catalogue")
"""``uniform``: the validation range drawn uniformly (r50 0.1-2.5 arcsec, n 0.3-n_max, q 0.1-1);
``catalogue``: PAUS/COSMOS-like (log-normal r50 around 0.57 arcsec and n around 1.1)."""


def random_profiles(
    n_profiles: int, *, seed: int, n_max: float = 6.2, kind: str = "uniform", distinct_n: int | None = None
) -> dict[str, np.ndarray]:
    """Random galaxy + PSF parameters over the validation range.

    Parameters
    ----------
    n_profiles : int
        Number of profiles.
    seed : int
        Seed of :func:`numpy.random.default_rng`.
    n_max : float
        Largest Sérsic index (6.2: GalSim's limit).
    kind : {"uniform", "catalogue"}
        Parameter distribution (see :data:`PROFILE_SETS`).
    distinct_n : int, optional
        Draw the Sérsic indices from only this many random values, one per equal-width stratum of
        [0.3, n_max] (each profile picks one at random), so that GalSim reuses its per-index
        tables; None (default): all distinct, from the ``kind`` distribution.

    Returns
    -------
    dict of ndarray, each of shape (n_profiles,)
        ``r50`` (arcsec), ``sersic_n``, ``q``, ``pa`` (deg), ``psf_fwhm`` (arcsec, 0.6-1.6),
        ``psf_beta`` (2-5), ``psf`` (str: "moffat" for 70 %, else "gaussian"), ``dx``, ``dy``
        (pixels, +-0.5), ``flux`` (1-1000).
    """
    if kind not in PROFILE_SETS:
        raise LumosValueError(f"kind must be one of {PROFILE_SETS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        r50 = rng.uniform(0.1, 2.5, n_profiles)
        sersic_n = rng.uniform(0.3, n_max, n_profiles)
    else:
        r50 = np.clip(rng.lognormal(np.log(0.57), 0.5, n_profiles), 0.1, 2.5)
        sersic_n = np.clip(rng.lognormal(np.log(1.1), 0.6, n_profiles), 0.3, n_max)
    if distinct_n is not None:
        # one random index per equal-width stratum of the range, so both ends are covered
        strata = (np.arange(distinct_n) + rng.random(distinct_n)) / distinct_n
        sersic_n = rng.choice(0.3 + (n_max - 0.3) * strata, size=n_profiles)
    return {
        "r50": r50,
        "sersic_n": sersic_n,
        "q": rng.uniform(0.1, 1.0, n_profiles),
        "pa": rng.uniform(0.0, 360.0, n_profiles),
        "psf_fwhm": rng.uniform(0.6, 1.6, n_profiles),
        "psf_beta": rng.uniform(2.0, 5.0, n_profiles),
        "psf": np.where(rng.random(n_profiles) < 0.7, "moffat", "gaussian"),
        "dx": rng.uniform(-0.5, 0.5, n_profiles),
        "dy": rng.uniform(-0.5, 0.5, n_profiles),
        "flux": rng.uniform(1.0, 1000.0, n_profiles),
    }


def render_profile_set(params: dict[str, np.ndarray], *, size: int = STAMP_SIZE, pixel_scale: float = PIXEL_SCALE) -> np.ndarray:
    """Render a :func:`random_profiles` set with :func:`render_galaxies` (one call per PSF family).

    Returns
    -------
    ndarray, shape (n, size, size), float32
    """
    images = np.empty((params["r50"].size, size, size), dtype=np.float32)
    for psf in np.unique(params["psf"]):
        rows = params["psf"] == psf
        shape = {name: value[rows] for name, value in params.items() if name != "psf"}
        images[rows] = render_galaxies(psf=str(psf), size=size, pixel_scale=pixel_scale, **shape).images
    return images


def galsim_profile_set(params: dict[str, np.ndarray], *, size: int = STAMP_SIZE, pixel_scale: float = PIXEL_SCALE) -> np.ndarray:
    """Draw a :func:`random_profiles` set with GalSim, one profile at a time.

    Returns
    -------
    ndarray, shape (n, size, size), float64
    """
    images = np.empty((params["r50"].size, size, size))
    for i in range(images.shape[0]):
        one = {name: (str(value[i]) if name == "psf" else float(value[i])) for name, value in params.items()}
        images[i] = draw_galsim_galaxy(size=size, pixel_scale=pixel_scale, **one)
    return images


def run_render_benchmark(
    n_profiles: int,
    *,
    seed: int,
    kind: str = "uniform",
    size: int = STAMP_SIZE,
    pixel_scale: float = PIXEL_SCALE,
) -> dict[str, Any]:
    """Profiles per second of :func:`render_galaxies` and of GalSim on the same random set, and accuracy.

    Sérsic indices are random (GalSim caches its tables per index, real catalogues defeat that
    cache). Our timing follows one warm-up call that builds the Fourier tables. Times are CPU
    time of this process (:func:`time.process_time`), robust to other load on a shared machine;
    run torch with one thread (``torch.set_num_threads(1)``) to compare with single-threaded GalSim.

    Parameters
    ----------
    n_profiles : int
        Profiles in the set (both codes render all of them).
    seed : int
        Seed of :func:`random_profiles`.
    kind : {"uniform", "catalogue"}
        Parameter distribution.
    size, pixel_scale : int, float
        Stamp side (pixels) and arcsec per pixel.

    Returns
    -------
    dict
        ``n_profiles``, ``seed``, ``kind``, ``torch_threads``, ``ours_seconds``, ``galsim_seconds``,
        ``ours_per_second``, ``galsim_per_second``, ``speedup``, and the L1 error
        ``sum|ours - galsim| / flux``: ``l1_median``, ``l1_p95``, ``l1_max``.

    Raises
    ------
    GalSimMissingError
        GalSim is not installed.
    """
    if n_profiles < 1:
        raise LumosValueError(f"n_profiles must be at least 1, got {n_profiles}")
    import_galsim()
    params = random_profiles(n_profiles, seed=seed, kind=kind)
    warm = random_profiles(4, seed=seed + 1, kind=kind)
    render_profile_set(warm, size=size, pixel_scale=pixel_scale)
    start = time.process_time()
    ours = render_profile_set(params, size=size, pixel_scale=pixel_scale)
    ours_seconds = time.process_time() - start
    start = time.process_time()
    reference = galsim_profile_set(params, size=size, pixel_scale=pixel_scale)
    galsim_seconds = time.process_time() - start
    errors = np.abs(ours - reference).sum(axis=(1, 2)) / params["flux"]
    return {
        "n_profiles": n_profiles,
        "seed": seed,
        "kind": kind,
        "torch_threads": torch.get_num_threads(),
        "ours_seconds": ours_seconds,
        "galsim_seconds": galsim_seconds,
        "ours_per_second": n_profiles / ours_seconds,
        "galsim_per_second": n_profiles / galsim_seconds,
        "speedup": galsim_seconds / ours_seconds,
        "l1_median": float(np.median(errors)),
        "l1_p95": float(np.percentile(errors, 95)),
        "l1_max": float(errors.max()),
    }
