"""Co-added flux PDFs of several exposures of one galaxy in one band (§6.3), vectorised over sources.

:func:`coadd_likelihoods` is the product of the per-exposure flux likelihoods (the mixtures of a
reference-prior LUMOS model, ``docs/likelihood.md``) in calibrated nJy
(``f_nJy = f * 10**(-0.4 * (ZP - 31.4))``, :func:`njy_factor`), times a prior applied once (none by
default: the result is the co-added likelihood, which photo-z codes want), raised to the power
``1 / c`` where the exposures' errors share a part (``rho``, :mod:`lumos_ops.lumos.shared_error`).
Multiplying *posteriors* instead would count their training prior once per exposure and make
co-adds of N exposures too narrow by up to sqrt(N). :func:`pack_groups` packs a long table of measurements and
their :class:`~lumos_ops.lumos.mixture_table.Mixtures` into the padded per-source arrays it takes. The co-add of point estimates, eq. (21), has one home: the
SQL of :mod:`lumos_ops.pipeline.coadd`.

The product is evaluated on a per-source grid of ``n_grid`` points centred on the eq. (21)
combination of the mixtures' means with a half-width of ``span`` combined standard deviations (a
product of Gaussian mixtures lies there); all sources of a call are one batched numpy
computation, with no Python loop per source. Rows flagged ``truncated`` (eq. 10 posteriors of
population-prior models) are zero below f = 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special

from lumos_ops.constants import NJY_ZEROPOINT
from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.mixture_table import Mixtures
from lumos_ops.lumos.shared_error import coadd_variance_factor

__all__ = ["njy_factor", "CoaddResult", "coadd_likelihoods", "PackedGroups", "pack_groups", "OUTLIER_WIDTH"]

_QUANTILES = np.array([0.025, 0.16, 0.5, 0.84, 0.975])

OUTLIER_WIDTH: float = 10.0
"""Width of a bad exposure's likelihood in units of the exposure's standard deviation
(:func:`coadd_likelihoods`, ``outlier_width``)."""


def njy_factor(zero_point: ArrayLike) -> np.ndarray:
    """Multiplier from e-/s to nJy for AB zero points ``zero_point`` (mag for 1 e-/s)."""
    return 10.0 ** (-0.4 * (np.asarray(zero_point, dtype=np.float64) - NJY_ZEROPOINT))


@dataclasses.dataclass(frozen=True)
class CoaddResult:
    """Co-added flux PDFs of n sources (nJy).

    Attributes
    ----------
    stats : dict of str -> ndarray, shape (n,)
        ``mean``, ``std``, ``median``, ``mode`` (peak), ``sigma68`` ((q84 - q16) / 2), ``sigma95``
        ((q97.5 - q2.5) / 2) in nJy and ``eta`` (eq. 22); NaN where no exposure was usable.
    n_used : ndarray of int, shape (n,)
        Exposures that entered each product.
    edge_mass : ndarray, shape (n,)
        Density at the grid ends relative to the peak (the f = 0 end of a truncated PDF excluded):
        above ~1e-3 the grid clipped a tail.
    grid, pdf : ndarray, shape (n, n_grid)
        The evaluation grid (nJy) and the normalised PDF on it (per nJy).
    variance_factor : ndarray, shape (n,)
        ``c``, the factor the shared error (``rho``) put on the variance; 1 without ``rho``.
    n_outliers : ndarray of int, shape (n,)
        Exposures more likely bad than good at the co-add's median (``outlier_fraction``; 0 without it).
    """

    stats: dict[str, np.ndarray]
    n_used: np.ndarray
    edge_mass: np.ndarray
    grid: np.ndarray
    pdf: np.ndarray
    variance_factor: np.ndarray
    n_outliers: np.ndarray


def _moments(alpha: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = (alpha * mu).sum(axis=-1)
    var = (alpha * (sigma**2 + mu**2)).sum(axis=-1) - mean**2
    return mean, np.maximum(var, (sigma.min(axis=-1) * 1e-3) ** 2)


def _log_mixture(t: np.ndarray, log_a: np.ndarray, mu: np.ndarray, inv_sigma: np.ndarray) -> np.ndarray:
    """Sum over exposures of the log mixture densities at grid points t (n, G); mixtures (n, m, K).

    Everything is in per-source standardised units (grid centre 0, half-width 1), so float32 is
    exact to ~1e-6 of a standard deviation. The densities are summed over components directly
    (in place, one pass); sources where a density underflows float32 anywhere (an exposure far
    from the grid) are recomputed with torch's ``logsumexp``.
    """
    import torch

    x = torch.from_numpy(t.astype(np.float32))
    m = torch.from_numpy(mu.astype(np.float32))
    half_inv = torch.from_numpy((inv_sigma * np.sqrt(0.5)).astype(np.float32))
    la = torch.from_numpy(log_a.astype(np.float32))
    e = x[:, None, :, None] - m[:, :, None, :]
    e.mul_(half_inv[:, :, None, :]).square_().neg_().add_(la[:, :, None, :]).exp_()
    per_exposure = e.sum(dim=-1).log_()
    bad = torch.isinf(per_exposure).flatten(1).any(dim=1)
    if bool(bad.any()):
        z = (x[bad][:, None, :, None] - m[bad][:, :, None, :]) * half_inv[bad][:, :, None, :]
        per_exposure[bad] = torch.logsumexp(la[bad][:, :, None, :] - z * z, dim=-1)
    return per_exposure.sum(dim=1).double().numpy()


_MAX_REGRID = 3
_EDGE = 1e-4


def _evaluate(centre, half, rows, log_alpha, mu_n, s_n, ok, any_trunc, log_prior, n_grid: int, chunk: int,
              temper: np.ndarray):
    """Grid (lo, hi, grid) around ``centre +- half`` and the log product (to the power ``temper``, plus
    the log prior) of the given rows."""
    trunc_rows = any_trunc[rows]
    lo = centre - half
    lo = np.where(trunc_rows, np.maximum(lo, 0.0), lo)
    hi = np.where(centre + half > lo, centre + half, lo + half)
    grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, n_grid)[None, :]
    # Standardise per source (centre mid, half-width w); unused exposures become flat (log density 0).
    mid, w_half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    t = (grid - mid[:, None]) / w_half[:, None]
    mu_t = (mu_n[rows] - mid[:, None, None]) / w_half[:, None, None]
    inv_t = w_half[:, None, None] / s_n[rows]
    good = ok[rows][..., None]
    log_a = np.where(good, log_alpha[rows] + np.log(inv_t), -np.log(mu_n.shape[2]))
    inv_t = np.where(good, inv_t, 0.0)
    log_p = np.empty((rows.size, n_grid))
    for start in range(0, rows.size, chunk):
        part = slice(start, min(start + chunk, rows.size))
        log_p[part] = _log_mixture(t[part], log_a[part], mu_t[part], inv_t[part])
    log_p *= temper[rows, None]
    log_p = np.where(trunc_rows[:, None] & (grid < 0.0), -np.inf, log_p)
    if log_prior is not None:
        log_p = log_p + np.asarray(log_prior(grid), dtype=np.float64)
    return lo, hi, grid, log_p


def coadd_likelihoods(
    alpha: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
    zero_point: ArrayLike,
    *,
    valid: ArrayLike | None = None,
    truncated: ArrayLike | None = None,
    log_prior: Callable[[np.ndarray], np.ndarray] | None = None,
    rho: ArrayLike | None = None,
    outlier_fraction: float = 0.0,
    outlier_width: float = OUTLIER_WIDTH,
    n_grid: int = 193,
    span: float = 10.0,
    chunk: int = 256,
) -> CoaddResult:
    """Product of per-exposure flux likelihoods (Gaussian mixtures), a prior applied at most once.

    Parameters
    ----------
    alpha, mu, sigma : array_like, shape (n, m, K)
        Mixture of exposure j of source i (mu, sigma in e-/s; alpha summing to 1 over K).
    zero_point : array_like, shape (n, m)
        AB zero point of each exposure (to nJy).
    valid : array_like of bool, shape (n, m), optional
        Exposures to use (padding of sources with fewer than m exposures is False); rows with a
        non-finite parameter or zero point are skipped in any case.
    truncated : array_like of bool, shape (n, m), optional
        Mixtures that are zero below f = 0 (eq. 10 densities).
    log_prior : callable, optional
        ``log_prior(grid)`` with grid (n, G) in nJy returns the log prior density on it (any
        additive constant); applied once to the product. None (default): the co-added likelihood.
    rho : array_like, shape (n, m), optional
        Correlation of each exposure's error with the other exposures' of the same source, the part
        they share (:mod:`lumos_ops.lumos.shared_error`; ``SharedError.rho_at`` of the exposure's
        SNR). The product is raised to the power ``1 / c`` (``coadd_variance_factor``), which widens
        it by ``sqrt(c)``. None (default): independent exposures.
    outlier_fraction : float, keyword-only
        ``eps``, the prior probability that an exposure's measurement is bad (a cosmic ray, a
        satellite trail, light of an undetected source under this exposure only): each exposure's
        likelihood becomes ``(1 - eps) L_j(f) + eps B_j(f)``, ``B_j`` a Gaussian of the exposure's
        mean and ``outlier_width`` times its standard deviation. An exposure more than about
        ``sqrt(2 ln(outlier_width / eps))`` of its errors from the others' consensus then stops
        pulling the product; consistent exposures are left as they are. 0 (default): the plain product.
    outlier_width : float, keyword-only
        Width of ``B_j`` in units of the exposure's standard deviation.
    n_grid : int, keyword-only
        Grid points per source.
    span : float, keyword-only
        Grid half-width in combined standard deviations.
    chunk : int, keyword-only
        Sources per batched evaluation (memory ~ chunk * m * n_grid * K * 8 bytes).

    Returns
    -------
    CoaddResult
    """
    if n_grid < 16 or span <= 0 or chunk < 1:
        raise LumosValueError(f"need n_grid >= 16, span > 0 and chunk >= 1; got {n_grid}, {span}, {chunk}")
    if not (0.0 <= outlier_fraction < 1.0 and outlier_width > 1.0):
        raise LumosValueError(f"need 0 <= outlier_fraction < 1 and outlier_width > 1; got {outlier_fraction}, {outlier_width}")
    a = np.asarray(alpha, dtype=np.float64)
    m_ = np.asarray(mu, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if a.ndim != 3 or a.shape != m_.shape or a.shape != s.shape:
        raise LumosValueError(f"alpha, mu and sigma must share a shape (n, m, K); got {a.shape}, {m_.shape}, {s.shape}")
    n, m, _ = a.shape
    c = njy_factor(np.broadcast_to(np.asarray(zero_point, dtype=np.float64), (n, m)))
    ok = np.ones((n, m), dtype=bool) if valid is None else np.broadcast_to(np.asarray(valid, dtype=bool), (n, m)).copy()
    ok &= np.isfinite(a).all(-1) & np.isfinite(m_).all(-1) & np.isfinite(s).all(-1) & (s > 0).all(-1) & np.isfinite(c)
    trunc = np.zeros((n, m), dtype=bool) if truncated is None else np.broadcast_to(np.asarray(truncated, dtype=bool), (n, m))
    a = np.where(ok[..., None], a, 1.0 / a.shape[2])
    mu_n = np.where(ok[..., None], m_ * c[..., None], 0.0)
    s_n = np.where(ok[..., None], s * c[..., None], 1.0)
    trunc = trunc & ok

    mean_j, var_j = _moments(a, mu_n, s_n)
    if outlier_fraction > 0.0:
        a, mu_n, s_n, trunc_k = _with_outlier_component(a, mu_n, s_n, mean_j, var_j, outlier_fraction, outlier_width)
    else:
        trunc_k = trunc[..., None]
    w = np.where(ok, 1.0 / var_j, 0.0)
    wsum = w.sum(axis=1)
    if rho is None:
        inflation = np.ones(n)
    else:
        inflation = coadd_variance_factor(np.broadcast_to(np.asarray(rho, dtype=np.float64), (n, m)), w, ok)
    temper = 1.0 / inflation
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (w * mean_j).sum(axis=1) / wsum
        half = span * np.sqrt(inflation / wsum)
    n_used = ok.sum(axis=1)
    usable = n_used > 0
    centre = np.where(usable, centre, 0.0)
    half = np.where(usable, half, 1.0)
    any_trunc = trunc.any(axis=1)
    with np.errstate(divide="ignore"):
        log_alpha = np.log(a) - np.where(trunc_k & trunc[..., None], special.log_ndtr(mu_n / s_n), 0.0)
    lo, hi, grid, log_p = _evaluate(centre, half, np.arange(n), log_alpha, mu_n, s_n, ok, any_trunc, log_prior, n_grid, chunk,
                                 temper)
    # A product whose mass sits at a grid end (exposures in tension): recentre on the peak, widen, retry.
    for _ in range(_MAX_REGRID):
        with np.errstate(invalid="ignore"):
            top = log_p.max(axis=1)
            p_lo = np.exp(np.where(any_trunc & (lo == 0.0), -np.inf, log_p[:, 0]) - top)
            p_hi = np.exp(log_p[:, -1] - top)
        redo = np.flatnonzero(usable & ((p_lo > _EDGE) | (p_hi > _EDGE)))
        if redo.size == 0:
            break
        peak_at = grid[redo, np.argmax(log_p[redo], axis=1)]
        r_lo, r_hi, r_grid, r_log_p = _evaluate(peak_at, 2.0 * half[redo], redo, log_alpha, mu_n, s_n, ok, any_trunc,
                                                log_prior, n_grid, chunk, temper)
        lo[redo], hi[redo], grid[redo], log_p[redo] = r_lo, r_hi, r_grid, r_log_p
        half[redo] *= 2.0
    with np.errstate(invalid="ignore"):
        peak = log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p - peak)
    dx = (hi - lo) / (n_grid - 1)
    area = dx * (p.sum(axis=1) - 0.5 * (p[:, 0] + p[:, -1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        pdf = p / area[:, None]
    clipped_at_zero = any_trunc & (lo == 0.0)
    edge_mass = np.maximum(np.where(clipped_at_zero, 0.0, p[:, 0]), p[:, -1])
    stats = _grid_stats(grid, pdf, log_p, dx)
    bad = ~usable | ~np.isfinite(area) | (area <= 0)
    for key in stats:
        stats[key] = np.where(bad, np.nan, stats[key])
    n_outliers = np.zeros(n, dtype=np.int64)
    if outlier_fraction > 0.0:
        n_outliers = _outliers_at(np.where(bad, 0.0, stats["median"]), np.exp(log_alpha), mu_n, s_n, ok & ~bad[:, None])
    return CoaddResult(stats=stats, n_used=n_used, edge_mass=np.where(bad, np.nan, edge_mass), grid=grid, pdf=pdf,
                       variance_factor=inflation, n_outliers=n_outliers)


def _outliers_at(flux: np.ndarray, a: np.ndarray, mu: np.ndarray, s: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """How many of each source's exposures (mixtures (n, m, K + 1) whose last component is the bad
    exposures' :func:`_with_outlier_component`; weights ``a`` renormalised where a component is
    truncated at f = 0) are more likely bad than good at ``flux`` (n,)."""
    z = (flux[:, None, None] - mu) / s
    density = a * np.exp(-0.5 * z * z) / s
    bad = density[..., -1] > density[..., :-1].sum(axis=-1)
    return (bad & ok).sum(axis=1)


def _with_outlier_component(a: np.ndarray, mu: np.ndarray, s: np.ndarray, mean: np.ndarray, var: np.ndarray,
                            fraction: float, width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mixtures (n, m, K) with their weights times ``1 - fraction`` and one more component of
    weight ``fraction`` at each exposure's ``mean`` with ``width`` times its standard deviation
    (``var`` the mixture's variance); the last array (n, m, K + 1) says which components keep the
    exposure's truncation at f = 0 (not the new one)."""
    a = np.concatenate([a * (1.0 - fraction), np.full(a.shape[:2] + (1,), fraction)], axis=-1)
    mu = np.concatenate([mu, mean[..., None]], axis=-1)
    s = np.concatenate([s, width * np.sqrt(var)[..., None]], axis=-1)
    keep = np.ones(a.shape, dtype=bool)
    keep[..., -1] = False
    return a, mu, s, keep


def _grid_stats(grid: np.ndarray, pdf: np.ndarray, log_p: np.ndarray, dx: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, std, quantiles (linear CDF interpolation) and the parabola-refined peak of gridded PDFs."""
    n, g = pdf.shape
    cell = 0.5 * (pdf[:, 1:] + pdf[:, :-1]) * dx[:, None]
    cdf = np.concatenate([np.zeros((n, 1)), np.cumsum(cell, axis=1)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf_norm = cdf[:, -1]
        cdf = cdf / cdf_norm[:, None]
        weights = pdf * dx[:, None]
        weights[:, [0, -1]] *= 0.5
        mean = (weights * grid).sum(axis=1)
        std = np.sqrt(np.maximum((weights * (grid - mean[:, None]) ** 2).sum(axis=1), 0.0))
    rows = np.arange(n)
    quantiles = np.empty((n, _QUANTILES.size))
    for j, q in enumerate(_QUANTILES):
        hi = np.clip((cdf < q).sum(axis=1), 1, g - 1)
        # Within the cell the density is linear, p0 + (p1 - p0) u, so the CDF is quadratic in u.
        c0 = cdf[rows, hi - 1]
        p0, p1 = pdf[rows, hi - 1] * dx / cdf_norm, pdf[rows, hi] * dx / cdf_norm
        slope = p1 - p0
        target = q - c0
        with np.errstate(invalid="ignore", divide="ignore"):
            root = 2.0 * target / (p0 + np.sqrt(np.maximum(p0 * p0 + 2.0 * slope * target, 0.0)))
        frac = np.clip(np.where(np.isfinite(root), root, 0.5), 0.0, 1.0)
        quantiles[:, j] = grid[rows, hi - 1] + frac * dx
    k = np.clip(np.nanargmax(np.where(np.isfinite(log_p), log_p, -np.inf), axis=1), 1, g - 2)
    y0, y1, y2 = (np.where(np.isfinite(v), v, -1e300) for v in (log_p[rows, k - 1], log_p[rows, k], log_p[rows, k + 1]))
    denom = y0 - 2.0 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(denom < 0, 0.5 * (y0 - y2) / denom, 0.0)
    mode = grid[rows, k] + np.clip(shift, -1.0, 1.0) * dx
    s68 = 0.5 * (quantiles[:, 3] - quantiles[:, 1])
    s95 = 0.5 * (quantiles[:, 4] - quantiles[:, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        eta = s95 / s68 - 1.0
    return {"mean": mean, "std": std, "median": quantiles[:, 2], "mode": mode, "sigma68": s68, "sigma95": s95, "eta": eta}


@dataclasses.dataclass(frozen=True)
class PackedGroups:
    """Rows of a long table packed into (groups, max exposures, K) arrays; ``valid`` marks real rows."""

    keys: pd.DataFrame
    alpha: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    zero_point: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    shared_rho: np.ndarray


def pack_groups(table: pd.DataFrame, mixtures: Mixtures, *, by: tuple[str, ...]) -> PackedGroups:
    """Pack a long table (one row per exposure) and the mixtures of its rows into padded per-group
    arrays, without a Python loop per group.

    ``table`` holds the ``by`` keys, ``zero_point`` and optionally ``flux``/``flux_err`` (NaN when
    absent) and ``shared_rho`` (0 when absent or NaN); ``mixtures``
    (:class:`~lumos_ops.lumos.mixture_table.Mixtures`, one row per table row) the components and
    truncation flags.
    """
    frame = table.reset_index(drop=True)
    if len(mixtures) != len(frame):
        raise LumosValueError(f"pack_groups: {len(mixtures)} mixtures for {len(frame)} table rows")
    group_id = frame.groupby(list(by), sort=True, dropna=False).ngroup().to_numpy()
    order = np.argsort(group_id, kind="stable")
    gid = group_id[order]
    n_groups = int(gid.max()) + 1 if gid.size else 0
    counts = np.bincount(gid, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(gid.size) - starts[gid]
    width = int(counts.max()) if counts.size else 1
    mix = mixtures[order]
    k = mix.alpha.shape[1]

    def pad(values: np.ndarray, fill: float | bool, shape: tuple[int, ...]) -> np.ndarray:
        out = np.full((n_groups, width, *shape), fill, dtype=bool if values.dtype == bool else np.float64)
        out[gid, slot] = values
        return out

    valid = np.zeros((n_groups, width), dtype=bool)
    valid[gid, slot] = True
    column = lambda name: (frame[name].to_numpy(np.float64) if name in frame else np.full(len(frame), np.nan))[order]  # noqa: E731
    keys = frame.loc[order[starts], list(by)].reset_index(drop=True) if n_groups else pd.DataFrame(columns=list(by))
    return PackedGroups(
        keys=keys,
        alpha=pad(mix.alpha, 1.0 / k, (k,)),
        mu=pad(mix.mu, 0.0, (k,)),
        sigma=pad(mix.sigma, 1.0, (k,)),
        zero_point=pad(column("zero_point"), np.nan, ()),
        truncated=pad(mix.truncated, False, ()),
        valid=valid,
        flux=pad(column("flux"), np.nan, ()),
        flux_err=pad(column("flux_err"), np.nan, ()),
        shared_rho=pad(np.nan_to_num(column("shared_rho")), 0.0, ()),
    )
