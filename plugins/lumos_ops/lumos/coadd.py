"""Co-added fluxes of several exposures of one galaxy in one band (§6.3).

Two co-adds, both in calibrated nJy (``f_nJy = f * 10**(-0.4 * (ZP - 31.4))``):

* :func:`coadd_inverse_variance` -- eq. (21), the inverse-variance weighted mean of point estimates;
* :func:`coadd_pdf` -- the normalised product of the calibrated per-exposure mixture PDFs. The
  product of Gaussian mixtures is itself a Gaussian mixture (one component per combination of
  components), so the co-added PDF is exact: no grid, no quantiles on uneven grids. To keep the
  component count bounded with many exposures, components below ``prune`` x the heaviest weight
  are dropped (the dropped mass is reported) and, beyond ``max_components``, components that are
  nearly identical (same cell of a fine (mu, log sigma) lattice, refined to the coarsest cell that
  fits) are merged preserving their weight, mean and variance; the number of merges is reported.

A per-exposure mixture flagged ``truncated`` (eq. 10 density, zero for f < 0) makes the product
truncated too; each product component is then renormalised on f >= 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special

from lumos_ops.constants import NJY_ZEROPOINT
from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.mixture import summarize, validate_mixture

__all__ = ["njy_factor", "coadd_inverse_variance", "CoaddPDF", "coadd_pdf", "coadd_table"]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def njy_factor(zero_point: ArrayLike) -> np.ndarray:
    """Multiplier from e-/s to nJy for AB zero points ``zero_point`` (mag for 1 e-/s)."""
    return 10.0 ** (-0.4 * (np.asarray(zero_point, dtype=np.float64) - NJY_ZEROPOINT))


def coadd_inverse_variance(flux: ArrayLike, flux_err: ArrayLike, zero_point: ArrayLike) -> tuple[float, float]:
    """Eq. (21) on calibrated fluxes.

    Parameters
    ----------
    flux, flux_err : array_like, shape (m,)
        Per-exposure flux and 1-sigma error (e-/s).
    zero_point : array_like, shape (m,)
        AB zero point of each exposure.

    Returns
    -------
    (flux_nJy, error_nJy) : tuple of float
        NaN when no exposure has a finite flux and a positive finite error.
    """
    c = njy_factor(zero_point)
    f = np.asarray(flux, dtype=np.float64) * c
    s = np.asarray(flux_err, dtype=np.float64) * c
    ok = np.isfinite(f) & np.isfinite(s) & (s > 0)
    if not ok.any():
        return float("nan"), float("nan")
    w = 1.0 / s[ok] ** 2
    return float((w * f[ok]).sum() / w.sum()), float(1.0 / np.sqrt(w.sum()))


@dataclasses.dataclass(frozen=True)
class CoaddPDF:
    """A co-added flux PDF (nJy).

    Attributes
    ----------
    alpha, mu, sigma : ndarray, shape (K,)
        Mixture of the co-added PDF (sorted by decreasing weight).
    truncated : bool
        Whether components are renormalised on f >= 0.
    pruned_mass : float
        Probability mass dropped by pruning.
    n_merged : int
        Components merged (moment-preserving) to respect ``max_components``; 0 means exact.
    stats : dict of str -> float
        ``mean``, ``std``, ``median``, ``mode`` (peak), ``sigma68``, ``sigma95``, ``eta`` (nJy).
    n_exposures : int
    """

    alpha: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    truncated: bool
    pruned_mass: float
    stats: dict[str, float]
    n_exposures: int
    n_merged: int = 0


def _product(log_a, mu_a, s_a, trunc_a, log_b, mu_b, s_b, trunc_b):
    var = s_a[:, None] ** 2 + s_b[None, :] ** 2
    diff = mu_a[:, None] - mu_b[None, :]
    inv = 1.0 / s_a[:, None] ** 2 + 1.0 / s_b[None, :] ** 2
    mu = (mu_a[:, None] / s_a[:, None] ** 2 + mu_b[None, :] / s_b[None, :] ** 2) / inv
    sigma = np.sqrt(1.0 / inv)
    log_w = log_a[:, None] + log_b[None, :] - 0.5 * diff * diff / var - 0.5 * np.log(var) - _LOG_SQRT_2PI
    truncated = trunc_a or trunc_b
    if truncated:
        if trunc_a:
            log_w = log_w - special.log_ndtr(mu_a / s_a)[:, None]
        if trunc_b:
            log_w = log_w - special.log_ndtr(mu_b / s_b)[None, :]
        log_w = log_w + special.log_ndtr(mu / sigma)
    return log_w.ravel(), mu.ravel(), sigma.ravel(), truncated


def _merge(log_w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Moment-preserving merge of near-identical components until at most ``cap`` remain."""
    w = np.exp(log_w - log_w.max())
    cell_mu = 0.02 * sigma.min()
    cell_ls = 0.02
    while True:
        keys = np.stack([np.floor(mu / cell_mu), np.floor(np.log(sigma) / cell_ls)], axis=1)
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        n_groups = int(inverse.max()) + 1
        if n_groups <= cap:
            break
        cell_mu *= 2.0
        cell_ls *= 2.0
    wsum = np.bincount(inverse, weights=w, minlength=n_groups)
    mean = np.bincount(inverse, weights=w * mu, minlength=n_groups) / wsum
    second = np.bincount(inverse, weights=w * (sigma**2 + mu**2), minlength=n_groups) / wsum
    var = np.maximum(second - mean**2, (sigma.min() * 1e-6) ** 2)
    return np.log(wsum) + log_w.max(), mean, np.sqrt(var), mu.size - n_groups


def coadd_pdf(
    alpha: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
    zero_point: ArrayLike,
    truncated: ArrayLike | None = None,
    *,
    prune: float = 1e-12,
    max_components: int = 1024,
) -> CoaddPDF:
    """Normalised product of the calibrated mixture PDFs of m exposures of one object.

    Parameters
    ----------
    alpha, mu, sigma : array_like, shape (m, K)
        Per-exposure mixtures (mu, sigma in e-/s).
    zero_point : array_like, shape (m,)
        AB zero point of each exposure.
    truncated : array_like of bool, shape (m,), optional
        Which exposures' mixtures are eq. (10) densities (zero below f = 0).
    prune : float, keyword-only
        Components with a weight below ``prune`` (after normalisation) are dropped.
    max_components : int, keyword-only
        At most this many components are kept after each product (near-identical ones merged).

    Returns
    -------
    CoaddPDF
        Rows with any non-finite parameter are skipped; with none left the result holds NaNs.
    """
    if prune < 0 or max_components < 1:
        raise LumosValueError(f"prune must be >= 0 and max_components >= 1, got {prune}, {max_components}")
    alpha, mu, sigma, trunc = validate_mixture(alpha, mu, sigma, truncated)
    zp = np.broadcast_to(np.asarray(zero_point, dtype=np.float64), (alpha.shape[0],))
    c = njy_factor(zp)
    ok = (
        np.isfinite(alpha).all(axis=1)
        & np.isfinite(mu).all(axis=1)
        & np.isfinite(sigma).all(axis=1)
        & np.isfinite(c)
    )
    nan = float("nan")
    if not ok.any():
        empty = np.full(1, nan)
        stats = {k: nan for k in ("mean", "std", "median", "mode", "sigma68", "sigma95", "eta")}
        return CoaddPDF(empty, empty, empty, False, 0.0, stats, 0)
    rows = np.flatnonzero(ok)
    pruned = 0.0
    n_merged = 0
    with np.errstate(divide="ignore"):
        log_w = np.log(alpha[rows[0]])
    cur_mu, cur_s, cur_t = mu[rows[0]] * c[rows[0]], sigma[rows[0]] * c[rows[0]], bool(trunc[rows[0]])
    for r in rows[1:]:
        with np.errstate(divide="ignore"):
            log_b = np.log(alpha[r])
        log_w, cur_mu, cur_s, cur_t = _product(log_w, cur_mu, cur_s, cur_t, log_b, mu[r] * c[r], sigma[r] * c[r], bool(trunc[r]))
        log_w = log_w - special.logsumexp(log_w)
        weights = np.exp(log_w)
        order = np.argsort(-weights, kind="stable")
        keep = order[weights[order] >= prune * weights[order[0]]]
        pruned += (1.0 - pruned) * float(1.0 - weights[keep].sum())
        log_w, cur_mu, cur_s = log_w[keep], cur_mu[keep], cur_s[keep]
        if log_w.size > max_components:
            log_w, cur_mu, cur_s, merged = _merge(log_w, cur_mu, cur_s, max_components)
            n_merged += merged
    log_w = log_w - special.logsumexp(log_w)
    order = np.argsort(-log_w, kind="stable")
    a, m, s = np.exp(log_w[order]), cur_mu[order], cur_s[order]
    a = a / a.sum()
    summary = summarize(a[None, :], m[None, :], s[None, :], np.array([cur_t]))
    stats = {k: float(v[0]) for k, v in summary.items()}
    return CoaddPDF(a, m, s, cur_t, max(pruned, 0.0), stats, int(rows.size), n_merged)


def coadd_table(
    table: pd.DataFrame,
    *,
    by: tuple[str, ...] = ("ref_id", "band"),
    n_components: int = 5,
) -> pd.DataFrame:
    """Co-add every group of rows of a LUMOS measurement table.

    Parameters
    ----------
    table : DataFrame
        One row per exposure measurement with ``flux``, ``flux_err`` (e-/s), ``zero_point``,
        ``alpha_k``, ``mu_k``, ``sigma_k`` (k = 0..n_components-1, e-/s) and optionally a bool
        ``truncated`` column, plus the ``by`` columns.
    by : tuple of str, keyword-only
        Grouping columns (one co-add per group).

    Returns
    -------
    DataFrame
        One row per group: the ``by`` columns, ``n_exposures``, ``flux_ivar``/``flux_ivar_err``
        (eq. 21) and ``pdf_mean``, ``pdf_std``, ``pdf_median``, ``pdf_peak``, ``pdf_sigma68``,
        ``pdf_sigma95``, ``pdf_eta``, ``pdf_pruned_mass`` -- all in nJy.
    """
    k = range(n_components)
    needed = list(by) + ["flux", "flux_err", "zero_point"] + [f"{p}_{i}" for p in ("alpha", "mu", "sigma") for i in k]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise LumosValueError(f"coadd_table: missing column(s) {missing}")
    records = []
    for key, group in table.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        alpha = group[[f"alpha_{i}" for i in k]].to_numpy(np.float64)
        mu = group[[f"mu_{i}" for i in k]].to_numpy(np.float64)
        sigma = group[[f"sigma_{i}" for i in k]].to_numpy(np.float64)
        trunc = group["truncated"].to_numpy(bool) if "truncated" in group else None
        zp = group["zero_point"].to_numpy(np.float64)
        f_iv, e_iv = coadd_inverse_variance(group["flux"].to_numpy(), group["flux_err"].to_numpy(), zp)
        pdf = coadd_pdf(alpha, mu, sigma, zp, trunc)
        record = dict(zip(by, key))
        record.update(n_exposures=pdf.n_exposures, flux_ivar=f_iv, flux_ivar_err=e_iv)
        record.update({f"pdf_{name}": pdf.stats[name] for name in ("mean", "std", "median", "sigma68", "sigma95", "eta")})
        record.update(pdf_peak=pdf.stats["mode"], pdf_pruned_mass=pdf.pruned_mass)
        records.append(record)
    return pd.DataFrame.from_records(records)
