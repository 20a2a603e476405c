"""Co-adds against brute-force products on fine grids."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lumos_ops.lumos.coadd import coadd_inverse_variance, coadd_pdf, coadd_table, njy_factor


def _exposures(m=3, k=3, seed=0):
    rng = np.random.default_rng(seed)
    alpha = rng.dirichlet(np.ones(k), m)
    mu = rng.normal(6, 3, (m, k))
    sigma = rng.uniform(1.0, 4.0, (m, k))
    zp = rng.uniform(26.0, 26.6, m)
    return alpha, mu, sigma, zp


def test_njy_factor():
    assert njy_factor(31.4) == pytest.approx(1.0)
    assert njy_factor(26.4) == pytest.approx(100.0)


def test_inverse_variance_matches_eq21():
    f, e, zp = np.array([10.0, 12.0, np.nan]), np.array([1.0, 2.0, 1.0]), np.array([31.4, 31.4, 31.4])
    flux, err = coadd_inverse_variance(f, e, zp)
    assert flux == pytest.approx((10 / 1 + 12 / 4) / (1 + 1 / 4))
    assert err == pytest.approx(1 / np.sqrt(1.25))


@pytest.mark.parametrize("truncated", [False, True])
def test_pdf_coadd_matches_grid_product(truncated):
    alpha, mu, sigma, zp = _exposures()
    trunc = np.array([truncated, False, truncated])
    result = coadd_pdf(alpha, mu, sigma, zp, trunc)
    c = njy_factor(zp)
    grid = np.linspace(-2000, 4000, 600_001)
    log_p = np.zeros_like(grid)
    for i in range(3):
        comps = alpha[i] * stats.norm.pdf(grid[:, None], mu[i] * c[i], sigma[i] * c[i])
        if trunc[i]:
            comps = comps / stats.norm.cdf(mu[i] / sigma[i]) * (grid[:, None] >= 0)
        with np.errstate(divide="ignore"):
            log_p += np.log(comps.sum(1))
    p = np.exp(log_p - log_p.max())
    p /= np.trapezoid(p, grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(grid))])
    mean = np.trapezoid(grid * p, grid)
    std = np.sqrt(np.trapezoid((grid - mean) ** 2 * p, grid))
    q = lambda x: np.interp(x, cdf, grid)  # noqa: E731
    assert result.truncated == truncated
    assert result.n_exposures == 3
    assert result.pruned_mass < 1e-9
    assert result.stats["mean"] == pytest.approx(mean, abs=0.05)
    assert result.stats["std"] == pytest.approx(std, abs=0.05)
    assert result.stats["median"] == pytest.approx(q(0.5), abs=0.05)
    assert result.stats["mode"] == pytest.approx(grid[np.argmax(p)], abs=0.05)
    assert result.stats["sigma68"] == pytest.approx(0.5 * (q(0.84) - q(0.16)), abs=0.05)
    assert result.stats["sigma95"] == pytest.approx(0.5 * (q(0.975) - q(0.025)), abs=0.05)
    assert result.alpha.sum() == pytest.approx(1.0)


def test_gaussian_pdf_coadd_equals_inverse_variance():
    alpha = np.ones((4, 1))
    mu = np.array([[10.0], [12.0], [9.0], [11.0]])
    sigma = np.array([[1.0], [2.0], [1.5], [3.0]])
    zp = np.full(4, 30.0)
    result = coadd_pdf(alpha, mu, sigma, zp)
    flux, err = coadd_inverse_variance(mu[:, 0], sigma[:, 0], zp)
    assert result.stats["mean"] == pytest.approx(flux, rel=1e-10)
    assert result.stats["std"] == pytest.approx(err, rel=1e-10)


def test_many_exposures_are_pruned_but_accurate():
    alpha, mu, sigma, zp = _exposures(m=5, k=5, seed=4)
    result = coadd_pdf(alpha, mu, sigma, zp, max_components=256)
    assert result.alpha.size <= 256
    assert result.pruned_mass < 1e-9
    assert result.n_merged > 0
    exact = coadd_pdf(alpha, mu, sigma, zp, max_components=10**6)
    assert exact.n_merged == 0
    for key in ("mean", "std", "median", "mode", "sigma68", "sigma95"):
        assert result.stats[key] == pytest.approx(exact.stats[key], rel=1e-3)


def test_coadd_table_groups():
    alpha, mu, sigma, zp = _exposures(m=4, k=5, seed=5)
    rows = []
    for i in range(4):
        row = {"ref_id": 1 + i // 2, "band": "NB455", "flux": mu[i].mean(), "flux_err": 1.0, "zero_point": zp[i]}
        row.update({f"alpha_{k}": alpha[i, k] for k in range(5)})
        row.update({f"mu_{k}": mu[i, k] for k in range(5)})
        row.update({f"sigma_{k}": sigma[i, k] for k in range(5)})
        rows.append(row)
    out = coadd_table(pd.DataFrame(rows))
    assert list(out["ref_id"]) == [1, 2]
    assert (out["n_exposures"] == 2).all()
    single = coadd_pdf(alpha[:2], mu[:2], sigma[:2], zp[:2])
    assert out["pdf_peak"].iloc[0] == pytest.approx(single.stats["mode"])
