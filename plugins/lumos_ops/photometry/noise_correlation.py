"""The spatial correlation of an exposure's sky noise, and the covariance of linear flux sums under it.

The pixel noise of a real frame is not white. Resampling correlates neighbouring pixels, and
sources too faint to be detected, the wings of detected ones and sky structure below the scale
of a coarse sky fit add light that varies over several to tens of pixels. On the real frames of
``reports/lumos/injection`` the blank-sky scatter of a matched filter is 1.2-1.7 times what the
pixel variance implies, most of it from lags of 8 to 32 px.

The blank-sky calibration (:mod:`lumos_ops.noise_calibration`) measures that excess for an
isolated target. A joint fit of blended targets (:mod:`lumos_ops.photometry.neighbours`) needs the
covariance of two targets' sums as well: noise correlated over the pair's separation is shared by
both sums and partly cancels in the joint amplitude, so the white-noise variance factor overstates
the cost of the fit (``docs/neighbours.md``, "Correlated sky noise").

For a linear estimator ``sum_p u_i(p) d(p)`` the covariance of two of them is
``sum_p sum_q u_i(p) C(p - q) u_j(q)``, with ``C`` the noise autocovariance at lag ``p - q``.
:func:`noise_correlation` measures ``C / C(0)`` on the frame's source-free pixels;
:func:`weight_covariances` evaluates the double sum for stamps of weights by FFT.
"""

from __future__ import annotations

import weakref

import numpy as np

__all__ = ["NOISE_LAG", "masked_autocovariance", "noise_correlation", "frame_noise_correlation", "weight_covariances"]

NOISE_LAG: int = 32
"""Largest lag (pixels) of :func:`noise_correlation`: beyond it the frames' noise, less their
64 px coarse sky, has no measurable correlation, and a 60 px stamp's annulus lies within it."""

_MAX_SIDE = 1024
"""Side (pixels) of the central window the correlation is measured on: a million pixels give each
lag to about 1e-3 of the variance, at about 0.15 s for any frame larger than the window."""


def masked_autocovariance(field: np.ndarray, keep: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocovariance of ``field`` over the pixel pairs that are both in ``keep``, lags up to ``max_lag``.

    ``field`` (2-D, zero-mean noise, same unit as the result's square root) is read only where
    ``keep`` is true. The masked field's autocorrelation (FFT) is divided by the mask's, so every
    lag is a mean over the pairs that were both kept. Returns a ``(2 max_lag + 1)^2`` array centred
    on lag 0, entry ``[max_lag, max_lag]`` the variance; ``[max_lag + dy, max_lag + dx]`` is the lag
    of ``dy`` rows and ``dx`` columns.
    """
    from scipy import fft

    keep = np.asarray(keep, dtype=bool)
    field = np.where(keep, np.nan_to_num(np.asarray(field, dtype=np.float64)), 0.0)
    ny, nx = field.shape
    shape = (fft.next_fast_len(ny + max_lag + 1, real=True), fft.next_fast_len(nx + max_lag + 1, real=True))
    f_field = fft.rfft2(field, shape)
    f_mask = fft.rfft2(keep.astype(np.float64), shape)
    acf = fft.irfft2(np.abs(f_field) ** 2, shape)
    pairs = fft.irfft2(np.abs(f_mask) ** 2, shape)
    lags = np.r_[-max_lag : max_lag + 1]
    acf = acf[np.ix_(lags % shape[0], lags % shape[1])]
    pairs = pairs[np.ix_(lags % shape[0], lags % shape[1])]
    return acf / np.maximum(pairs, 1.0)


def noise_correlation(image: np.ndarray, source_mask: np.ndarray | None = None, *,
                      max_lag: int = NOISE_LAG, sky_box: int = 64) -> np.ndarray:
    """Correlation ``C(lag) / C(0)`` of a frame's sky noise, lags up to ``max_lag`` px.

    Measured on the central window of at most 1024 x 1024 px: the image less its coarse sky
    (:func:`lumos_ops.noise_calibration.subtract_sky`, blocks of ``sky_box`` px, continued to the
    edges; structure on larger scales is the sky's, not the noise's), less
    the median of the kept pixels, keeping the finite pixels outside ``source_mask`` (the frame's
    detected sources, :func:`lumos_ops.photometry.frame_sources.frame_sources`; None keeps every
    finite pixel) and above 5 robust sigmas below that median. No running mean is taken out:
    the photometry's own local backgrounds decide how much of the sky's structure reaches a flux,
    and :func:`weight_covariances` takes them in through the estimator's weights.

    Returns
    -------
    ndarray of float64, shape (2 max_lag + 1, 2 max_lag + 1)
        Centred on lag 0, where it is 1. A frame with fewer than 1,000 usable pixels, or no
        noise, gets white noise (1 at lag 0, 0 elsewhere).
    """
    from lumos_ops.noise_calibration import robust_sigma, subtract_sky

    image = np.asarray(image)
    ny, nx = image.shape
    hy, hx = min(ny, _MAX_SIDE), min(nx, _MAX_SIDE)
    y0, x0 = (ny - hy) // 2, (nx - hx) // 2
    window = (slice(y0, y0 + hy), slice(x0, x0 + hx))
    white = np.zeros((2 * max_lag + 1, 2 * max_lag + 1))
    white[max_lag, max_lag] = 1.0
    resid = subtract_sky(image[window], box=sky_box, extrapolate=True)
    keep = np.isfinite(resid)
    if source_mask is not None:
        keep &= ~np.asarray(source_mask, dtype=bool)[window]
    if keep.sum() < 1000:
        return white
    median, sigma = robust_sigma(resid[keep])
    if not (np.isfinite(sigma) and sigma > 0):
        return white
    resid = resid - median
    with np.errstate(invalid="ignore"):
        keep &= resid > -5.0 * sigma
    acf = masked_autocovariance(resid, keep, max_lag)
    if not acf[max_lag, max_lag] > 0:
        return white
    return acf / acf[max_lag, max_lag]


_LAST: list[tuple[weakref.ref, np.ndarray]] = []


def frame_noise_correlation(data: np.ndarray) -> np.ndarray:
    """:func:`noise_correlation` of a frame outside its detected sources
    (:func:`lumos_ops.photometry.frame_sources.frame_sources`), kept for the last frame asked for:
    the joint fit of the blends and the neighbour leak of one exposure (the same array object)
    both ask for it."""
    if _LAST and _LAST[0][0]() is data:
        return _LAST[0][1]
    from lumos_ops.photometry.frame_sources import frame_sources

    result = noise_correlation(data, frame_sources(data).mask)
    _LAST[:] = [(weakref.ref(data), result)]
    return result


def weight_covariances(weights: np.ndarray, x0: np.ndarray, y0: np.ndarray, pairs: np.ndarray,
                       correlation: np.ndarray, *, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``sum_p sum_q u_i(p) K(p - q) u_j(q)`` of stamps of weights under a noise correlation ``K``.

    Parameters
    ----------
    weights : ndarray, shape (n, S, S)
        Each stamp's weights ``u_i`` (per unit pixel value; convolved in single precision, summed in
        double) on the image grid, stamp ``i`` having
        its lower-left pixel at image pixel ``(x0[i], y0[i])``.
    x0, y0 : ndarray of int, shape (n,)
        The stamps' lower-left pixels.
    pairs : ndarray of int, shape (m, 2)
        Index pairs ``(i, j)`` wanted (stamps farther apart than ``S + L`` px in either axis give 0).
    correlation : ndarray, shape (2 L + 1, 2 L + 1)
        ``K``, centred on lag 0 (:func:`noise_correlation`): the noise autocovariance in units of
        the pixel variance.
    chunk : int, keyword-only
        Stamps convolved at a time (memory: ``chunk (S + 2 L)^2`` floats).

    Returns
    -------
    diagonal : ndarray of float64, shape (n,)
        ``H_ii``: each sum's variance in units of the pixel variance.
    off : ndarray of float64, shape (m,)
        ``H_ij`` of each pair.
    """
    from scipy import fft

    weights = np.asarray(weights)
    n, size = weights.shape[0], weights.shape[-1]
    lag = correlation.shape[0] // 2
    full = size + 2 * lag
    shape = (fft.next_fast_len(full, real=True), fft.next_fast_len(full, real=True))
    # single precision FFTs (half the time): the covariances' relative error is about 1e-6
    f_kernel = fft.rfft2(np.asarray(correlation, dtype=np.float32), shape)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    diagonal = np.zeros(n)
    off = np.zeros(len(pairs))
    by_second = np.argsort(pairs[:, 1], kind="stable")
    second = pairs[by_second, 1]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # K * u_j over the full support: entry [r + L, c + L] is pixel (r, c) of stamp j's grid
        block = np.asarray(weights[start:stop], dtype=np.float32)
        smoothed = fft.irfft2(fft.rfft2(block, shape) * f_kernel, shape)[:, :full, :full]
        diagonal[start:stop] = np.einsum("kij,kij->k", block, smoothed[:, lag : lag + size, lag : lag + size],
                                         dtype=np.float64)
        lo, hi = np.searchsorted(second, [start, stop])
        for k in by_second[lo:hi]:
            i, j = pairs[k]
            # pixel (r, c) of stamp i is pixel (r + oy, c + ox) of stamp j
            ox, oy = int(x0[i] - x0[j]), int(y0[i] - y0[j])
            r0, r1 = max(0, -lag - oy), min(size, size + lag - oy)
            c0, c1 = max(0, -lag - ox), min(size, size + lag - ox)
            if r1 <= r0 or c1 <= c0:
                continue
            window = smoothed[j - start, r0 + oy + lag : r1 + oy + lag, c0 + ox + lag : c1 + ox + lag]
            off[k] = float(np.einsum("ij,ij->", weights[i, r0:r1, c0:c1], window, dtype=np.float64))
    return diagonal, off
