"""The mixture mode and the pdf/cdf of the quantile search give the bits of a plain reference:
the iteration on every still-active row gathered from full-size arrays at each step, and the
pdf/cdf with the log Phi terms subtracted from every row."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from lumos_ops.lumos import mixture as M


def _reference_pdf_cdf(x, alpha, mu, sigma, trunc):
    log_z = np.where(trunc[:, None], special.log_ndtr(mu / sigma), 0.0)[:, None, :]
    a, m, s = alpha[:, None, :], mu[:, None, :], sigma[:, None, :]
    t = trunc[:, None, None]
    xx = x[:, :, None]
    z = (xx - m) / s
    pdf_k = np.exp(-0.5 * z * z - np.log(s) - M._LOG_SQRT_2PI - log_z)
    cdf_k = np.where(t, -np.expm1(special.log_ndtr(-z) - log_z), special.ndtr(z))
    below = t & (xx < 0.0)
    pdf_k = np.where(below, 0.0, pdf_k)
    cdf_k = np.where(below, 0.0, cdf_k)
    return (a * pdf_k).sum(axis=2), np.clip((a * cdf_k).sum(axis=2), 0.0, 1.0)


def _reference_mode(alpha, mu, sigma, trunc, *, rtol: float = 1e-9, max_iter: int = 500) -> np.ndarray:
    """:func:`mixture_mode` for valid rows and K <= 64, the active rows gathered anew at each step."""
    with np.errstate(divide="ignore"):
        log_w = np.log(alpha) - np.where(trunc[:, None], special.log_ndtr(mu / sigma), 0.0)
    lower = np.where(trunc, 0.0, -np.inf)[:, None]
    x = np.maximum(mu.copy(), lower)
    inv_var = 1.0 / (sigma * sigma)
    tol = rtol * sigma.max(axis=1, keepdims=True)
    active = np.ones_like(x, dtype=bool)
    history = np.empty((M._CYCLE_SLOTS, *x.shape))
    history[0] = x
    for done in range(1, max_iter + 1):
        r_idx = np.flatnonzero(active.any(axis=1))
        if r_idx.size == 0:
            break
        xs = x[r_idx]
        z = (xs[:, :, None] - mu[r_idx][:, None, :]) / sigma[r_idx][:, None, :]
        log_r = log_w[r_idx][:, None, :] - 0.5 * z * z - np.log(sigma[r_idx])[:, None, :]
        log_r -= log_r.max(axis=2, keepdims=True)
        r = np.exp(log_r) * inv_var[r_idx][:, None, :]
        shift = (r * mu[r_idx][:, None, :]).sum(axis=2) / r.sum(axis=2)
        u = (mu[r_idx][:, None, :] - xs[:, :, None]) * inv_var[r_idx][:, None, :]
        w = r / inv_var[r_idx][:, None, :]
        d1 = (w * u).sum(axis=2)
        d2 = (w * (u * u - inv_var[r_idx][:, None, :])).sum(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = xs - d1 / d2
        new = np.where((d2 < 0) & np.isfinite(newton), newton, shift)
        new = np.maximum(new, lower[r_idx])
        active[r_idx] = np.abs(new - xs) > tol[r_idx]
        x[r_idx] = new
        history[done % M._CYCLE_SLOTS, r_idx] = new
        M._skip_cycles(x, active, history, r_idx, done, max_iter)
    candidates = np.concatenate([x, np.where(trunc, 0.0, x[:, 0])[:, None]], axis=1)
    log_p = M._log_pdf_unnorm(candidates, log_w, mu, sigma)
    return candidates[np.arange(x.shape[0]), np.argmax(log_p, axis=1)]


def _mixtures(n: int, seed: int, truncated_fraction: float):
    rng = np.random.default_rng(seed)
    alpha = rng.dirichlet(np.full(5, 0.5), n)
    mu = rng.normal(50, 40, (n, 5))
    sigma = np.exp(rng.uniform(np.log(3), np.log(100), (n, 5)))
    return alpha, mu, sigma, rng.random(n) < truncated_fraction


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("max_iter", [500, 37, 3])
@pytest.mark.parametrize("truncated_fraction", [0.0, 0.3])
def test_mode_is_the_reference_iteration(max_iter, truncated_fraction):
    alpha, mu, sigma, trunc = _mixtures(400, seed=3, truncated_fraction=truncated_fraction)
    got = M.mixture_mode(alpha, mu, sigma, trunc, max_iter=max_iter)
    assert _same(got, _reference_mode(alpha, mu, sigma, trunc, max_iter=max_iter))


def test_mode_keeps_invalid_rows_out():
    alpha, mu, sigma, trunc = _mixtures(30, seed=4, truncated_fraction=0.3)
    mu[[2, 17]] = np.nan
    got = M.mixture_mode(alpha, mu, sigma, trunc)
    ok = np.isfinite(mu).all(axis=1)
    assert np.isnan(got[~ok]).all()
    assert _same(got[ok], _reference_mode(alpha[ok], mu[ok], sigma[ok], trunc[ok]))


@pytest.mark.parametrize("truncated_fraction", [0.0, 0.3, 1.0])
def test_pdf_cdf_is_the_reference(truncated_fraction):
    alpha, mu, sigma, trunc = _mixtures(200, seed=5, truncated_fraction=truncated_fraction)
    x = np.random.default_rng(6).normal(40, 60, (200, 3))
    want = _reference_pdf_cdf(x, alpha, mu, sigma, trunc)
    for got in (M._pdf_cdf(x, alpha, mu, sigma, trunc), M._pdf_cdf(x, alpha, mu, sigma, trunc, np.log(sigma))):
        assert _same(got[0], want[0]) and _same(got[1], want[1])
