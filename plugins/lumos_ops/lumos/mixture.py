"""Statistics of Gaussian-mixture flux PDFs, vectorised over rows (§5.1, §6.1.3, §6.3).

A row is a mixture ``p(f) = sum_k alpha_k N(f; mu_k, sigma_k)`` given by arrays of shape (n, K).
Rows with ``truncated[n] = True`` stand for the eq. (10) density: every component renormalised on
f >= 0, ``p(f) = sum_k alpha_k N(f; mu_k, sigma_k) / Phi(mu_k / sigma_k)`` for f >= 0 and 0 below.
This is the density a network trained with eq. (10) predicts for faint targets; the mean and
variance (eqs. 15-16) then use the truncated-normal moments of each component. Rows without
truncation follow eqs. (15)-(16) literally, *including* the between-component variance term.

Everything is numpy float64; no grid is used anywhere: quantiles use safeguarded Newton iterations
on the exact CDF, the mode a mean-shift search started from every component.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from lumos_ops.exceptions import LumosValueError

__all__ = [
    "validate_mixture",
    "mixture_pdf",
    "mixture_cdf",
    "mixture_mean",
    "mixture_variance",
    "mixture_quantile",
    "mixture_mode",
    "sigma68",
    "sigma95",
    "gaussianity_eta",
    "pit",
    "d_statistic",
    "summarize",
    "SUMMARY_QUANTILES",
]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_TAIL = 12.0

SUMMARY_QUANTILES: tuple[float, ...] = (0.025, 0.16, 0.5, 0.84, 0.975)
"""Quantiles computed by :func:`summarize` (sigma95 uses the 2.5 % and 97.5 % ones)."""


def validate_mixture(
    alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, truncated: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes and values; return float64 (n, K) arrays and a bool (n,) truncation mask.

    Raises
    ------
    LumosValueError
        Shapes differ, sigma <= 0, alpha < 0 or rows whose alphas do not sum to 1 (within 1e-4).
    """
    alpha = np.atleast_2d(np.asarray(alpha, dtype=np.float64))
    mu = np.atleast_2d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if not (alpha.shape == mu.shape == sigma.shape) or alpha.ndim != 2:
        raise LumosValueError(
            f"alpha, mu and sigma must share a shape (n, K); got {alpha.shape}, {mu.shape}, {sigma.shape}"
        )
    finite = np.isfinite(sigma)
    if np.any(sigma[finite] <= 0):
        raise LumosValueError("sigma must be > 0 in every component")
    if np.any(alpha[np.isfinite(alpha)] < 0):
        raise LumosValueError("alpha must be >= 0 in every component")
    sums = alpha.sum(axis=1)
    ok = np.isfinite(sums)
    if np.any(np.abs(sums[ok] - 1.0) > 1e-4):
        row = int(np.flatnonzero(ok & (np.abs(sums - 1.0) > 1e-4))[0])
        raise LumosValueError(f"alpha must sum to 1 in every row; row {row} sums to {sums[row]:.6g}")
    n = alpha.shape[0]
    if truncated is None:
        trunc = np.zeros(n, dtype=bool)
    else:
        trunc = np.broadcast_to(np.asarray(truncated, dtype=bool), (n,)).copy()
    return alpha, mu, sigma, trunc


def _log_norm(mu: np.ndarray, sigma: np.ndarray, trunc: np.ndarray) -> np.ndarray:
    """log of each component's normalisation on its support: log Phi(mu/sigma) or 0."""
    if not trunc.any():
        return np.zeros(np.shape(mu))
    return np.where(trunc[:, None], special.log_ndtr(mu / sigma), 0.0)


def _expand(x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        return np.full((n, 1), float(x))
    if x.ndim == 1:
        if x.shape[0] != n:
            raise LumosValueError(f"x must have one value per row ({n}), got shape {x.shape}")
        return x[:, None]
    if x.ndim == 2 and x.shape[0] == n:
        return x
    raise LumosValueError(f"x must be a scalar, shape ({n},) or ({n}, m); got {x.shape}")


def _pdf_cdf(x: np.ndarray, alpha, mu, sigma, trunc, log_sigma: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """pdf and cdf at x of shape (n, m); ``log_sigma`` is ``np.log(sigma)`` where the caller has it."""
    if log_sigma is None:
        log_sigma = np.log(sigma)
    a, m, s = alpha[:, None, :], mu[:, None, :], sigma[:, None, :]
    xx = x[:, :, None]
    z = (xx - m) / s
    log_pdf = -0.5 * z * z - log_sigma[:, None, :] - _LOG_SQRT_2PI
    if not trunc.any():  # log Phi terms all 0: subtracting them changes no bit
        return (a * np.exp(log_pdf)).sum(axis=2), np.clip((a * special.ndtr(z)).sum(axis=2), 0.0, 1.0)
    log_z = _log_norm(mu, sigma, trunc)[:, None, :]
    t = trunc[:, None, None]
    pdf_k = np.exp(log_pdf - log_z)
    cdf_tr = -np.expm1(special.log_ndtr(-z) - log_z)
    cdf_k = np.where(t, cdf_tr, special.ndtr(z))
    below = t & (xx < 0.0)
    pdf_k = np.where(below, 0.0, pdf_k)
    cdf_k = np.where(below, 0.0, cdf_k)
    return (a * pdf_k).sum(axis=2), np.clip((a * cdf_k).sum(axis=2), 0.0, 1.0)


def mixture_pdf(
    x: ArrayLike, alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, truncated: ArrayLike | None = None
) -> np.ndarray:
    """Density at ``x`` (scalar, (n,) or (n, m)); returns (n,) for scalar/(n,) x, else (n, m)."""
    alpha, mu, sigma, trunc = validate_mixture(alpha, mu, sigma, truncated)
    xx = _expand(x, alpha.shape[0])
    pdf, _ = _pdf_cdf(xx, alpha, mu, sigma, trunc)
    return pdf[:, 0] if np.ndim(x) < 2 else pdf


def mixture_cdf(
    x: ArrayLike, alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, truncated: ArrayLike | None = None
) -> np.ndarray:
    """Cumulative distribution at ``x`` (scalar, (n,) or (n, m)), same output shapes as :func:`mixture_pdf`."""
    alpha, mu, sigma, trunc = validate_mixture(alpha, mu, sigma, truncated)
    xx = _expand(x, alpha.shape[0])
    _, cdf = _pdf_cdf(xx, alpha, mu, sigma, trunc)
    return cdf[:, 0] if np.ndim(x) < 2 else cdf


def _component_moments(mu, sigma, trunc) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each component (truncated-normal moments where ``trunc``)."""
    t = mu / sigma
    lam = np.exp(-0.5 * t * t - _LOG_SQRT_2PI - special.log_ndtr(t))
    mean_tr = mu + sigma * lam
    var_tr = sigma * sigma * np.clip(1.0 - t * lam - lam * lam, 0.0, None)
    tt = trunc[:, None]
    return np.where(tt, mean_tr, mu), np.where(tt, var_tr, sigma * sigma)


def mixture_mean(alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, truncated: ArrayLike | None = None) -> np.ndarray:
    """Eq. (15): ``sum_k alpha_k E_k[f]``; shape (n,). E_k = mu_k for untruncated rows."""
    alpha, mu, sigma, trunc = validate_mixture(alpha, mu, sigma, truncated)
    means, _ = _component_moments(mu, sigma, trunc)
    return (alpha * means).sum(axis=1)


def mixture_variance(alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, truncated: ArrayLike | None = None) -> np.ndarray:
    """Eq. (16): ``sum_k alpha_k (Var_k + (E_k - mean)^2)``, with the between-component term; shape (n,)."""
    alpha, mu, sigma, trunc = validate_mixture(alpha, mu, sigma, truncated)
    means, variances = _component_moments(mu, sigma, trunc)
    mean = (alpha * means).sum(axis=1, keepdims=True)
    return (alpha * (variances + (means - mean) ** 2)).sum(axis=1)


def _bracket(mu, sigma, trunc) -> tuple[np.ndarray, np.ndarray]:
    lo = (mu - _TAIL * sigma).min(axis=1)
    hi = (np.where(trunc[:, None], np.maximum(mu, 0.0), mu) + _TAIL * sigma).max(axis=1)
    lo = np.where(trunc, np.maximum(lo, 0.0), lo)
    return lo, hi


def mixture_quantile(
    q: ArrayLike,
    alpha: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
    truncated: ArrayLike | None = None,
    *, rtol: float = 1e-9,
    max_iter: int = 200,
) -> np.ndarray:
    """Quantiles of every row by safeguarded Newton iterations on the exact CDF.

    Parameters
    ----------
    q : float or array_like, shape (m,)
        Probabilities in (0, 1).
    alpha, mu, sigma : array_like, shape (n, K)
    truncated : array_like of bool, shape (n,), optional
    rtol : float, keyword-only
        Convergence tolerance relative to the widest component.

    Returns
    -------
    ndarray, shape (n,) for scalar q, else (n, m)
    """
    alpha, mu, sigma, trunc = validate_mixture(alpha, mu, sigma, truncated)
    qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if qs.ndim != 1 or np.any(~((qs > 0) & (qs < 1))):
        raise LumosValueError(f"q must be probabilities in (0, 1), got {q!r}")
    n, m = alpha.shape[0], qs.size
    valid = np.isfinite(alpha).all(axis=1) & np.isfinite(mu).all(axis=1) & np.isfinite(sigma).all(axis=1)
    out = np.full((n, m), np.nan)
    rows = np.flatnonzero(valid)
    if rows.size:
        a, mm, s, t = alpha[rows], mu[rows], sigma[rows], trunc[rows]
        log_s = np.log(s)
        lo1, hi1 = _bracket(mm, s, t)
        lo = np.repeat(lo1[:, None], m, axis=1)
        hi = np.repeat(hi1[:, None], m, axis=1)
        target = np.broadcast_to(qs, (rows.size, m)).copy()
        x = 0.5 * (lo + hi)
        tol = rtol * s.max(axis=1, keepdims=True) * np.ones((1, m))
        active = np.ones((rows.size, m), dtype=bool)
        last_dx = hi - lo
        for _ in range(max_iter):
            idx_r, idx_c = np.nonzero(active)
            if idx_r.size == 0:
                break
            xa = x[idx_r, idx_c][:, None]
            pdf, cdf = _pdf_cdf(xa, a[idx_r], mm[idx_r], s[idx_r], t[idx_r], log_s[idx_r])
            f = cdf[:, 0] - target[idx_r, idx_c]
            p = pdf[:, 0]
            low, high = lo[idx_r, idx_c], hi[idx_r, idx_c]
            low = np.where(f < 0, xa[:, 0], low)
            high = np.where(f > 0, xa[:, 0], high)
            with np.errstate(divide="ignore", invalid="ignore"):
                step = xa[:, 0] - f / p
            # bisect when Newton leaves the bracket or does not at least halve the last step
            bad = ~np.isfinite(step) | (step <= low) | (step >= high) | (np.abs(2 * f) > np.abs(last_dx[idx_r, idx_c] * p))
            exact = np.abs(f) < 1e-15
            new = np.where(exact, xa[:, 0], np.where(bad, 0.5 * (low + high), step))
            done = exact | (np.abs(new - xa[:, 0]) < tol[idx_r, idx_c]) | (high - low < tol[idx_r, idx_c])
            last_dx[idx_r, idx_c] = new - xa[:, 0]
            x[idx_r, idx_c] = new
            lo[idx_r, idx_c] = low
            hi[idx_r, idx_c] = high
            active[idx_r, idx_c] = ~done
        out[rows] = x
    return out[:, 0] if np.ndim(q) == 0 else out


def _log_pdf_unnorm(x: np.ndarray, log_w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log sum_k w_k N(x; mu_k, sigma_k) for x of shape (n, m)."""
    z = (x[:, :, None] - mu[:, None, :]) / sigma[:, None, :]
    return special.logsumexp(log_w[:, None, :] - 0.5 * z * z - np.log(sigma[:, None, :]), axis=2)


def mixture_mode(
    alpha: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
    truncated: ArrayLike | None = None,
    *, rtol: float = 1e-9, max_iter: int = 500, max_starts: int = 64
) -> np.ndarray:
    """Global maximum (peak) of every row's density; shape (n,).

    A mean-shift fixed-point iteration ``x <- sum r_k mu_k / s_k^2 / sum r_k / s_k^2`` (r_k the
    component responsibilities at x, every local maximum of a Gaussian mixture being a fixed point),
    switching to Newton steps on p'(x) where the density is locally concave, is started from every
    component mean (from the ``max_starts`` heaviest components when K is larger); truncated rows
    are projected onto f >= 0 at each step and also consider the boundary f = 0. The candidate of
    highest density wins.
    """
    alpha, mu, sigma, trunc = validate_mixture(alpha, mu, sigma, truncated)
    n = alpha.shape[0]
    out = np.full(n, np.nan)
    valid = np.isfinite(alpha).all(axis=1) & np.isfinite(mu).all(axis=1) & np.isfinite(sigma).all(axis=1)
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return out
    a, mm, s, t = alpha[rows], mu[rows], sigma[rows], trunc[rows]
    with np.errstate(divide="ignore"):
        log_w = np.log(a) - _log_norm(mm, s, t)
    lower = np.where(t, 0.0, -np.inf)[:, None]
    starts = mm
    if mm.shape[1] > max_starts:
        heaviest = np.argsort(-a, axis=1, kind="stable")[:, :max_starts]
        starts = np.take_along_axis(mm, heaviest, axis=1)
    x = np.maximum(starts.copy(), lower)
    inv_var = 1.0 / (s * s)
    log_s = np.log(s)
    tol = rtol * s.max(axis=1, keepdims=True)
    # The rows still iterating (r_idx) and, in that order, everything the iteration reads of them:
    # their state xs, which starts moved more than tol in the last step, the states after the
    # last _CYCLE_SLOTS iterations (slot: iteration number modulo the count), the row constants.
    r_idx = np.arange(x.shape[0])
    xs = x.copy()
    active = np.ones_like(xs, dtype=bool)
    history = np.empty((_CYCLE_SLOTS, *xs.shape))
    history[0] = xs
    m_r, s_r, iv_r = mm[:, None, :], s[:, None, :], inv_var[:, None, :]
    log_w_r, log_s_r, lower_r, tol_r = log_w[:, None, :], log_s[:, None, :], lower, tol
    local = np.arange(r_idx.size)
    for done in range(1, max_iter + 1):
        going = active.any(axis=1)
        if not going.all():  # a row whose starts all stopped keeps its state (rows never resume)
            x[r_idx[~going]] = xs[~going]
            r_idx, xs, active, history = r_idx[going], xs[going], active[going], history[:, going]
            m_r, s_r, iv_r, log_w_r, log_s_r = m_r[going], s_r[going], iv_r[going], log_w_r[going], log_s_r[going]
            lower_r, tol_r, local = lower_r[going], tol_r[going], local[: r_idx.size]
            if r_idx.size == 0:
                break
        z = (xs[:, :, None] - m_r) / s_r
        log_r = log_w_r - 0.5 * z * z - log_s_r
        log_r -= log_r.max(axis=2, keepdims=True)
        r = np.exp(log_r) * iv_r
        shift = (r * m_r).sum(axis=2) / r.sum(axis=2)
        # Newton step on p'(x) where the density is locally concave (quadratic convergence near
        # a peak); the mean-shift step elsewhere.
        u = (m_r - xs[:, :, None]) * iv_r
        w = r / iv_r
        d1 = (w * u).sum(axis=2)
        d2 = (w * (u * u - iv_r)).sum(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = xs - d1 / d2
        new = np.where((d2 < 0) & np.isfinite(newton), newton, shift)
        new = np.maximum(new, lower_r)
        active = np.abs(new - xs) > tol_r
        xs = new
        history[done % _CYCLE_SLOTS] = new
        _skip_cycles(xs, active, history, local, done, max_iter)
    x[r_idx] = xs
    candidates = np.concatenate([x, np.where(t, 0.0, x[:, 0])[:, None]], axis=1)
    log_p = _log_pdf_unnorm(candidates, log_w, mm, s)
    out[rows] = candidates[np.arange(rows.size), np.argmax(log_p, axis=1)]
    return out


_CYCLE_SLOTS = 16
"""Iterations of :func:`mixture_mode` remembered to recognise a start cycling with a period of up to 15."""


def _skip_cycles(x: np.ndarray, active: np.ndarray, history: np.ndarray, r_idx: np.ndarray, done: int,
                 max_iter: int) -> None:
    """Give the rows of ``r_idx`` that repeat a state exactly the state they would reach at ``max_iter``.

    A start whose Newton and mean-shift steps alternate (far from the peak, at a light component)
    can repeat its values bit for bit with a short period and never meet the tolerance. Each start's
    next state depends on its own state alone, so a row whose state after ``done`` iterations
    equals that after ``done - p`` repeats with period ``p``; it stayed active through that whole
    cycle, so it would iterate to ``max_iter`` and end in the state of the cycle at that count.
    That state is set here and the row retired (``active`` False), bit for bit the result of
    iterating on.
    """
    still = r_idx[active[r_idx].any(axis=1)]
    periods = np.arange(2, min(_CYCLE_SLOTS, done + 1))
    if still.size == 0 or periods.size == 0:
        return
    past = history[((done - periods) % _CYCLE_SLOTS)[:, None], still[None, :]]  # (periods, rows, starts)
    # the bits: equal states, equal futures
    same = (past.view(np.int64) == x[still].view(np.int64)).all(axis=2)
    hit = same.any(axis=0)
    if hit.any():
        rows = still[hit]
        period = periods[np.argmax(same[:, hit], axis=0)]
        x[rows] = history[(done - period + (max_iter - done) % period) % _CYCLE_SLOTS, rows]
        active[rows] = False


def sigma68(alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, truncated: ArrayLike | None = None) -> np.ndarray:
    """Eq. (14): ``(q84 - q16) / 2``; shape (n,)."""
    q = mixture_quantile([0.16, 0.84], alpha, mu, sigma, truncated)
    return 0.5 * (q[:, 1] - q[:, 0])


def sigma95(alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, truncated: ArrayLike | None = None) -> np.ndarray:
    """``(q97.5 - q2.5) / 2`` (1.96 sigma for a Gaussian); shape (n,)."""
    q = mixture_quantile([0.025, 0.975], alpha, mu, sigma, truncated)
    return 0.5 * (q[:, 1] - q[:, 0])


def gaussianity_eta(s68: np.ndarray, s95: np.ndarray) -> np.ndarray:
    """Eq. (22): ``eta = sigma95 / sigma68 - 1`` (0.96 for a Gaussian with the definitions above)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(s95, dtype=np.float64) / np.asarray(s68, dtype=np.float64) - 1.0


def pit(truth: ArrayLike, alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, truncated: ArrayLike | None = None) -> np.ndarray:
    """Eq. (13): the CDF of every row at its true flux ``truth`` (shape (n,)); shape (n,)."""
    return mixture_cdf(np.asarray(truth, dtype=np.float64), alpha, mu, sigma, truncated)


def d_statistic(f1: ArrayLike, sigma1: ArrayLike, f2: ArrayLike, sigma2: ArrayLike) -> np.ndarray:
    """Eq. (19): ``(f1 - f2) / sqrt(sigma1^2 + sigma2^2)`` element-wise."""
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    s1, s2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (f1 - f2) / np.sqrt(s1 * s1 + s2 * s2)


def summarize(alpha: ArrayLike, mu: ArrayLike, sigma: ArrayLike, truncated: ArrayLike | None = None) -> dict[str, np.ndarray]:
    """Point estimates and widths of every row.

    Returns
    -------
    dict of str -> ndarray, shape (n,)
        ``mean`` (eq. 15), ``std`` (sqrt of eq. 16), ``median``, ``mode`` (peak), ``sigma68``
        (eq. 14), ``sigma95`` and ``eta`` (eq. 22), in the unit of ``mu``.
    """
    alpha, mu, sigma, trunc = validate_mixture(alpha, mu, sigma, truncated)
    q = mixture_quantile(SUMMARY_QUANTILES, alpha, mu, sigma, trunc)
    s68 = 0.5 * (q[:, 3] - q[:, 1])
    s95 = 0.5 * (q[:, 4] - q[:, 0])
    return {
        "mean": mixture_mean(alpha, mu, sigma, trunc),
        "std": np.sqrt(mixture_variance(alpha, mu, sigma, trunc)),
        "median": q[:, 2],
        "mode": mixture_mode(alpha, mu, sigma, trunc),
        "sigma68": s68,
        "sigma95": s95,
        "eta": gaussianity_eta(s68, s95),
    }
