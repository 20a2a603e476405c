"""Mixture statistics against brute-force evaluation on fine grids."""

import numpy as np
import pytest
from scipy import stats

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos import mixture as M


def _random(n, k=5, seed=0):
    rng = np.random.default_rng(seed)
    alpha = rng.dirichlet(np.ones(k), n)
    mu = rng.normal(5, 10, (n, k))
    sigma = rng.uniform(0.5, 8, (n, k))
    truncated = rng.random(n) < 0.5
    return alpha, mu, sigma, truncated


GRID = np.linspace(-150, 200, 350_001)


def _brute(alpha, mu, sigma, truncated):
    grid = GRID[GRID >= 0] if truncated else GRID
    comps = alpha * stats.norm.pdf(grid[:, None], mu, sigma)
    if truncated:
        comps = comps / stats.norm.cdf(mu / sigma)[None, :]
    pdf = comps.sum(1)
    dx = grid[1] - grid[0]
    # trapezoid CDF
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * dx)])
    mean = np.trapezoid(grid * pdf, grid)
    var = np.trapezoid((grid - mean) ** 2 * pdf, grid)
    q = lambda p: np.interp(p, cdf, grid)  # noqa: E731
    return dict(grid=grid, pdf=pdf, cdf=cdf, mean=mean, std=np.sqrt(var), median=q(0.5), mode=grid[np.argmax(pdf)],
                sigma68=0.5 * (q(0.84) - q(0.16)), sigma95=0.5 * (q(0.975) - q(0.025)))


def test_summary_matches_brute_force_grid():
    alpha, mu, sigma, trunc = _random(12)
    got = M.summarize(alpha, mu, sigma, trunc)
    dx = GRID[1] - GRID[0]
    for i in range(12):
        ref = _brute(alpha[i], mu[i], sigma[i], trunc[i])
        assert np.trapezoid(ref["pdf"], ref["grid"]) == pytest.approx(1.0, abs=1e-6)
        for key in ("mean", "std", "median", "sigma68", "sigma95"):
            assert got[key][i] == pytest.approx(ref[key], abs=5e-4), (i, key)
        assert got["mode"][i] == pytest.approx(ref["mode"], abs=2 * dx), i
        assert got["eta"][i] == pytest.approx(ref["sigma95"] / ref["sigma68"] - 1, abs=1e-3)


def test_variance_includes_between_component_term():
    alpha = np.array([[0.5, 0.5]])
    mu = np.array([[-3.0, 3.0]])
    sigma = np.array([[1.0, 1.0]])
    assert M.mixture_variance(alpha, mu, sigma)[0] == pytest.approx(1.0 + 9.0)
    assert M.mixture_mean(alpha, mu, sigma)[0] == pytest.approx(0.0)


def test_gaussian_special_case():
    alpha = np.array([[1.0, 0.0]])
    mu = np.array([[10.0, 0.0]])
    sigma = np.array([[2.0, 1.0]])
    s = M.summarize(alpha, mu, sigma)
    assert s["median"][0] == pytest.approx(10.0, abs=1e-8)
    assert s["mode"][0] == pytest.approx(10.0, abs=1e-8)
    assert s["sigma68"][0] == pytest.approx(2.0 * stats.norm.ppf(0.84), rel=1e-8)
    assert s["eta"][0] == pytest.approx(stats.norm.ppf(0.975) / stats.norm.ppf(0.84) - 1, rel=1e-8)


def test_quantile_inverts_cdf_and_pdf_matches_cdf_derivative():
    alpha, mu, sigma, trunc = _random(500, seed=1)
    qs = np.array([0.01, 0.16, 0.5, 0.84, 0.99])
    x = M.mixture_quantile(qs, alpha, mu, sigma, trunc)
    assert x.shape == (500, 5)
    np.testing.assert_allclose(M.mixture_cdf(x, alpha, mu, sigma, trunc), np.broadcast_to(qs, x.shape), atol=1e-9)
    h = 1e-5
    deriv = (M.mixture_cdf(x + h, alpha, mu, sigma, trunc) - M.mixture_cdf(x - h, alpha, mu, sigma, trunc)) / (2 * h)
    np.testing.assert_allclose(M.mixture_pdf(x, alpha, mu, sigma, trunc), deriv, rtol=1e-4, atol=1e-9)


def test_truncated_rows_have_no_mass_below_zero():
    alpha, mu, sigma, _ = _random(100, seed=2)
    trunc = np.ones(100, dtype=bool)
    assert np.all(M.mixture_cdf(0.0, alpha, mu, sigma, trunc) == 0.0)
    assert np.all(M.mixture_quantile(0.001, alpha, mu, sigma, trunc) >= 0.0)
    assert np.all(M.mixture_mode(alpha, mu, sigma, trunc) >= 0.0)
    assert np.all(M.mixture_mean(alpha, mu, sigma, trunc) > 0.0)


def test_far_negative_truncated_component_is_finite():
    alpha = np.array([[1.0]])
    mu = np.array([[-200.0]])
    sigma = np.array([[1.0]])
    s = M.summarize(alpha, mu, sigma, np.array([True]))
    # truncated normal far in the tail ~ exponential with scale sigma^2/|mu|
    assert s["mean"][0] == pytest.approx(1.0 / 200.0, rel=1e-3)
    assert s["median"][0] == pytest.approx(np.log(2) / 200.0, rel=1e-3)
    assert s["mode"][0] == 0.0


def test_pit_uniform_for_samples_from_the_mixture():
    rng = np.random.default_rng(3)
    n = 20000
    alpha = np.tile([0.3, 0.7], (n, 1))
    mu = np.tile([2.0, 8.0], (n, 1))
    sigma = np.tile([1.0, 3.0], (n, 1))
    comp = rng.random(n) < 0.3
    truth = np.where(comp, rng.normal(2.0, 1.0, n), rng.normal(8.0, 3.0, n))
    values = M.pit(truth, alpha, mu, sigma)
    hist, _ = np.histogram(values, bins=10, range=(0, 1))
    assert stats.chisquare(hist).pvalue > 1e-3


def test_d_statistic():
    assert M.d_statistic(3.0, 3.0, 0.0, 4.0) == pytest.approx(3.0 / 5.0)


def test_nan_rows_propagate():
    alpha, mu, sigma, trunc = _random(3)
    mu[1, 2] = np.nan
    s = M.summarize(alpha, mu, sigma, trunc)
    assert all(np.isnan(v[1]) for v in s.values())
    assert all(np.isfinite(v[[0, 2]]).all() for v in s.values())


def test_validation_errors():
    with pytest.raises(LumosValueError, match="sum to 1"):
        M.mixture_mean([[0.5, 0.6]], [[0, 1]], [[1, 1]])
    with pytest.raises(LumosValueError, match="sigma"):
        M.mixture_mean([[0.5, 0.5]], [[0, 1]], [[1, 0]])
    with pytest.raises(LumosValueError, match="q must"):
        M.mixture_quantile(1.5, [[1.0]], [[0.0]], [[1.0]])


@pytest.mark.parametrize("max_iter", [500, 37])
def test_mode_of_cycling_starts_is_the_mode_of_iterating_on(monkeypatch, max_iter):
    """Starts that repeat their state with a short period are retired with the state they would reach
    at max_iter: the modes equal, bit for bit, those of the iteration without the shortcut."""
    rng = np.random.default_rng(3)
    n = 400
    alpha = rng.dirichlet(np.full(5, 0.5), n)
    mu = rng.normal(50, 40, (n, 5))
    sigma = np.exp(rng.uniform(np.log(3), np.log(100), (n, 5)))
    trunc = rng.random(n) < 0.3
    retired = []
    skip = M._skip_cycles

    def counting(x, active, *args):
        before = int(active.any(axis=1).sum())
        skip(x, active, *args)
        retired.append(before - int(active.any(axis=1).sum()))

    monkeypatch.setattr(M, "_skip_cycles", counting)
    fast = M.mixture_mode(alpha, mu, sigma, trunc, max_iter=max_iter)
    assert sum(retired) >= 5  # the shortcut is exercised
    monkeypatch.setattr(M, "_CYCLE_SLOTS", 1)  # no state remembered: every row iterates to the end
    slow = M.mixture_mode(alpha, mu, sigma, trunc, max_iter=max_iter)
    assert np.array_equal(fast.view(np.int64), slow.view(np.int64))


def test_untruncated_rows_do_not_depend_on_truncated_rows_in_the_batch():
    """Without truncated rows the truncated terms are skipped: the same numbers, bit for bit."""
    alpha, mu, sigma, trunc = _random(40, seed=9)
    mixed = M.summarize(alpha, mu, sigma, trunc)
    plain = ~trunc
    alone = M.summarize(alpha[plain], mu[plain], sigma[plain], np.zeros(int(plain.sum()), dtype=bool))
    for name, values in alone.items():
        assert np.array_equal(values.view(np.int64), mixed[name][plain].view(np.int64)), name
    assert np.array_equal(M.mixture_pdf(3.0, alpha[plain], mu[plain], sigma[plain]),
                          M.mixture_pdf(3.0, alpha, mu, sigma, trunc)[plain])
