"""The information reference of ``lumos validate``: optimal weights made Bayesian with the true flux prior.

LUMOS beats the optimal weighted sum (paper §3.3) only by what it knows beyond that sum's
likelihood: the flux distribution of each band (its prior) and whatever the pixels hold that a
linear sum misses. This module builds the estimator that knows the first exactly and nothing of
the second, so that the sigma68 ratios of the targets can be read against what the information in the
stamps allows:

* likelihood: ``N(f_opt | f, s * sigma_opt)``, with ``f_opt`` and ``sigma_opt`` the optimal
  weighted sum and its reported error (e-/s) and ``s`` the measured width (sigma68) of the pulls
  ``(f_opt - f0) / sigma_opt``, so that the likelihood is calibrated;
* prior: the true fluxes (e-/s) of the same band;
* both ``s`` and the prior are cross-fitted, as in :mod:`lumos_ops.evaluation.prior_only`: stamps with an
  even ``stamp_id`` use those with an odd one and vice versa, so no stamp sees its own truth.

The posterior is evaluated on the prior's samples (importance weights), and its median, the
point estimate whose relative error has zero median whenever the posterior is calibrated (the
bias of eq. 17 is a median), is returned. A network whose PDF median reaches the same sigma68
extracts from the pixels as much as optimal weights plus a perfect prior; the reference is not
a bound on LUMOS, which may also read the background better than a linear sum.
"""

from __future__ import annotations

import numpy as np

from lumos_ops.exceptions import LumosValueError

__all__ = ["bayes_optimal_median", "pull_width"]

_CHUNK = 512


def pull_width(flux: np.ndarray, err: np.ndarray, truth: np.ndarray) -> float:
    """sigma68 of ``(flux - truth) / err`` over the finite rows with ``err > 0`` (1.0 if none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pulls = (np.asarray(flux, np.float64) - np.asarray(truth, np.float64)) / np.asarray(err, np.float64)
    pulls = pulls[np.isfinite(pulls)]
    if pulls.size < 2:
        return 1.0
    q16, q84 = np.percentile(pulls, [16, 84])
    return float(0.5 * (q84 - q16)) or 1.0


def _posterior_median(measured: np.ndarray, sigma: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Median of ``prior(f) * N(measured | f, sigma)`` on the sorted prior samples, per row."""
    prior = np.sort(prior)
    out = np.empty(measured.size)
    for lo in range(0, measured.size, _CHUNK):
        m = measured[lo : lo + _CHUNK, None]
        s = sigma[lo : lo + _CHUNK, None]
        logw = -0.5 * ((m - prior[None, :]) / s) ** 2
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        cdf = np.cumsum(w, axis=1)
        idx = (cdf < 0.5 * cdf[:, -1:]).sum(axis=1)
        out[lo : lo + _CHUNK] = prior[np.minimum(idx, prior.size - 1)]
    return out


def bayes_optimal_median(
    band: np.ndarray,
    optimal_flux: np.ndarray,
    optimal_err: np.ndarray,
    truth: np.ndarray,
    stamp_id: np.ndarray,
) -> np.ndarray:
    """Cross-fitted posterior median of the flux given the optimal weighted sum and the band's flux prior.

    Parameters
    ----------
    band : array_like of str, shape (n,)
        Band of every stamp.
    optimal_flux, optimal_err : array_like, shape (n,)
        Optimal weighted sum and its reported 1-sigma error (e-/s); NaN for a failed measurement.
    truth : array_like, shape (n,)
        True flux (e-/s): the prior samples and the pull width of the other fold.
    stamp_id : array_like of int, shape (n,)
        Parity chooses the fold.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Posterior median (e-/s); NaN where the measurement failed or the other fold of the band
        has no stamps.
    """
    band = np.asarray(band).astype(str)
    flux = np.asarray(optimal_flux, dtype=np.float64)
    err = np.asarray(optimal_err, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    fold = np.asarray(stamp_id, dtype=np.int64) % 2
    if not (band.shape == flux.shape == err.shape == truth.shape == fold.shape):
        raise LumosValueError("band, optimal_flux, optimal_err, truth and stamp_id must have the same shape (n,)")
    out = np.full(flux.shape, np.nan)
    for k in (0, 1):
        other = fold != k
        scale = pull_width(flux[other], err[other], truth[other])
        for name in np.unique(band):
            prior = truth[other & (band == name) & np.isfinite(truth)]
            use = np.flatnonzero((fold == k) & (band == name) & np.isfinite(flux) & (err > 0))
            if prior.size == 0 or use.size == 0:
                continue
            out[use] = _posterior_median(flux[use], scale * err[use], prior)
    return out
