"""A survey's flux population as a prior, and the PIT of likelihoods turned into posteriors with it.

A likelihood is calibrated at fixed truth; a posterior only for the prior it assumes. To check a
LUMOS likelihood as a posterior (PIT over the population, paper §6.1), multiply it by the density
of the population the test targets were drawn from -- estimated here by a Gaussian kernel density
in ``asinh(f / scale)`` (fluxes in e-/s span decades and reach below 0) -- and evaluate the CDF of
the product at the truth. :func:`posterior_pit` cross-fits: the prior of each half of the rows is
estimated on the other half, so no row's own truth enters its prior.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from lumos_ops.constants import NJY_ZEROPOINT
from lumos_ops.exceptions import LumosValueError

__all__ = ["kde_log_prior", "posterior_pit"]


def kde_log_prior(samples: ArrayLike, *, scale: float = 5.0, bandwidth: float | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Log density (per e-/s, up to a constant) of a flux population from samples (e-/s).

    The kernel density is built in ``u = asinh(f / scale)`` with Silverman's bandwidth (or
    ``bandwidth``) on a 2,048-point table and mapped back with the Jacobian ``du/df``.
    """
    f = np.asarray(samples, dtype=np.float64)
    f = f[np.isfinite(f)]
    if f.size < 10:
        raise LumosValueError(f"a population prior needs >= 10 finite fluxes, got {f.size}")
    u = np.arcsinh(f / scale)
    bw = bandwidth or 1.06 * float(np.std(u)) * f.size ** (-0.2)
    table = np.linspace(u.min() - 5 * bw, u.max() + 5 * bw, 2048)
    hist, edges = np.histogram(u, bins=4096, range=(table[0] - bw, table[-1] + bw))
    centres = 0.5 * (edges[1:] + edges[:-1])
    dens = np.zeros_like(table)
    for lo in range(0, table.size, 256):
        t = table[lo : lo + 256]
        dens[lo : lo + 256] = (hist[None, :] * np.exp(-0.5 * ((t[:, None] - centres[None, :]) / bw) ** 2)).sum(axis=1)
    log_table = np.log(np.maximum(dens / dens.max(), 1e-300))
    floor = log_table.min()

    def log_prior(grid: np.ndarray) -> np.ndarray:
        g = np.asarray(grid, dtype=np.float64)
        ug = np.arcsinh(g / scale)
        value = np.interp(ug, table, log_table, left=floor, right=floor)
        return value - 0.5 * np.log(g * g + scale * scale)

    return log_prior


def posterior_pit(
    truth: ArrayLike, alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, *, truncated: ArrayLike | None = None,
    seed: int = 0,
) -> np.ndarray:
    """PIT of likelihood mixtures (e-/s) made posteriors with a cross-fitted population prior.

    Parameters
    ----------
    truth : array_like, shape (n,)
        True fluxes (e-/s); they define the population prior (two-fold cross-fitted).
    alpha, mu, sigma : array_like, shape (n, K)
        Per-row likelihood mixtures (e-/s).

    Returns
    -------
    ndarray, shape (n,)
        ``P(f <= truth | data)`` under ``likelihood x prior``; uniform for a calibrated likelihood.
    """
    from lumos_ops.lumos.coadd import coadd_likelihoods

    t = np.asarray(truth, dtype=np.float64)
    a, m, s = (np.asarray(v, dtype=np.float64) for v in (alpha, mu, sigma))
    n = t.size
    fold = np.random.default_rng(seed).permutation(n) % 2
    out = np.full(n, np.nan)
    trunc = None if truncated is None else np.asarray(truncated, dtype=bool)
    for k in (0, 1):
        rows = np.flatnonzero(fold == k)
        prior = kde_log_prior(t[fold != k])
        # zero point NJY_ZEROPOINT: the co-add's nJy grid is the e-/s grid
        res = coadd_likelihoods(a[rows, None], m[rows, None], s[rows, None], np.full((rows.size, 1), NJY_ZEROPOINT),
                                truncated=None if trunc is None else trunc[rows, None], log_prior=prior, span=14.0)
        grid, pdf = res.grid, res.pdf
        dx = grid[:, 1] - grid[:, 0]
        cdf = np.concatenate([np.zeros((rows.size, 1)), np.cumsum(0.5 * (pdf[:, 1:] + pdf[:, :-1]), axis=1) * dx[:, None]], axis=1)
        cdf /= cdf[:, -1:]
        # linear interpolation of every row's CDF at its truth (0 below the grid, 1 above)
        pos = np.clip((t[rows] - grid[:, 0]) / dx, 0.0, grid.shape[1] - 1.0)
        lo = np.minimum(np.floor(pos).astype(int), grid.shape[1] - 2)
        frac = pos - lo
        idx = np.arange(rows.size)
        out[rows] = (1.0 - frac) * cdf[idx, lo] + frac * cdf[idx, lo + 1]
    return out
