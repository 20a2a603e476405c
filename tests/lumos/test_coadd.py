"""Co-adds against brute-force products on fine grids."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lumos_ops.lumos.coadd import coadd_likelihoods, njy_factor, pack_groups
from lumos_ops.lumos.mixture_table import mixtures_from_table


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


def _grid_reference(alpha, mu, sigma, zp, trunc, log_prior=None):
    """Brute-force product of the calibrated mixtures on a 600,001-point grid."""
    c = njy_factor(zp)
    grid = np.linspace(-2000, 4000, 600_001)
    log_p = np.zeros_like(grid) if log_prior is None else log_prior(grid)
    for i in range(alpha.shape[0]):
        comps = alpha[i] * stats.norm.pdf(grid[:, None], mu[i] * c[i], sigma[i] * c[i])
        if trunc[i]:
            comps = comps / stats.norm.cdf(mu[i] / sigma[i]) * (grid[:, None] >= 0)
        with np.errstate(divide="ignore"):
            log_p = log_p + np.log(comps.sum(1))
    p = np.exp(log_p - log_p.max())
    p /= np.trapezoid(p, grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(grid))])
    mean = np.trapezoid(grid * p, grid)
    q = lambda x: np.interp(x, cdf, grid)  # noqa: E731
    return {
        "mean": mean, "std": np.sqrt(np.trapezoid((grid - mean) ** 2 * p, grid)), "median": q(0.5),
        "mode": grid[np.argmax(p)], "sigma68": 0.5 * (q(0.84) - q(0.16)), "sigma95": 0.5 * (q(0.975) - q(0.025)),
    }


@pytest.mark.parametrize("truncated", [False, True])
def test_likelihood_coadd_matches_grid_product(truncated):
    alpha, mu, sigma, zp = _exposures()
    trunc = np.array([truncated, False, truncated])
    result = coadd_likelihoods(alpha[None], mu[None], sigma[None], zp[None], truncated=trunc[None])
    ref = _grid_reference(alpha, mu, sigma, zp, trunc)
    assert result.n_used[0] == 3
    assert result.edge_mass[0] < 1e-6
    scale = ref["sigma68"]
    for key in ("mean", "std", "median", "mode", "sigma68", "sigma95"):
        assert result.stats[key][0] == pytest.approx(ref[key], abs=0.01 * scale), key


def test_prior_is_applied_once():
    alpha, mu, sigma, zp = _exposures(m=4, k=3, seed=2)
    prior = lambda x: -0.5 * ((x - 300.0) / 200.0) ** 2  # noqa: E731
    result = coadd_likelihoods(alpha[None], mu[None], sigma[None], zp[None], log_prior=prior)
    ref = _grid_reference(alpha, mu, sigma, zp, np.zeros(4, bool), log_prior=prior)
    for key in ("mean", "median", "sigma68"):
        assert result.stats[key][0] == pytest.approx(ref[key], abs=0.01 * ref["sigma68"]), key
    plain = coadd_likelihoods(alpha[None], mu[None], sigma[None], zp[None])
    assert abs(plain.stats["median"][0] - result.stats["median"][0]) > 0.05 * ref["sigma68"]


def test_gaussian_likelihood_coadd_equals_inverse_variance():
    alpha = np.ones((1, 4, 1))
    mu = np.array([[[10.0], [12.0], [9.0], [11.0]]])
    sigma = np.array([[[1.0], [2.0], [1.5], [3.0]]])
    zp = np.full((1, 4), 30.0)
    result = coadd_likelihoods(alpha, mu, sigma, zp)
    c = njy_factor(zp[0])
    weights = 1.0 / (sigma[0, :, 0] * c) ** 2  # eq. (21)
    flux, err = (weights * mu[0, :, 0] * c).sum() / weights.sum(), 1.0 / np.sqrt(weights.sum())
    assert result.stats["mean"][0] == pytest.approx(flux, rel=1e-6)
    assert result.stats["median"][0] == pytest.approx(flux, rel=1e-4)
    assert result.stats["std"][0] == pytest.approx(err, rel=1e-4)
    assert result.stats["sigma68"][0] == pytest.approx(err * 0.9945, rel=5e-3)


def test_batched_rows_are_independent_and_padding_ignored():
    a1, m1, s1, z1 = _exposures(m=3, k=5, seed=6)
    a2, m2, s2, z2 = _exposures(m=3, k=5, seed=7)
    valid = np.array([[True, True, True], [True, True, False]])
    both = coadd_likelihoods(np.stack([a1, a2]), np.stack([m1, m2]), np.stack([s1, s2]), np.stack([z1, z2]), valid=valid)
    first = coadd_likelihoods(a1[None], m1[None], s1[None], z1[None])
    second = coadd_likelihoods(a2[None, :2], m2[None, :2], s2[None, :2], z2[None, :2])
    assert list(both.n_used) == [3, 2]
    for key in ("median", "sigma68"):
        assert both.stats[key][0] == pytest.approx(first.stats[key][0], rel=1e-5)
        assert both.stats[key][1] == pytest.approx(second.stats[key][0], rel=1e-5)


def test_no_usable_exposure_gives_nan():
    alpha, mu, sigma, zp = _exposures(m=2, k=2)
    result = coadd_likelihoods(alpha[None], mu[None], sigma[None], zp[None], valid=np.zeros((1, 2), bool))
    assert result.n_used[0] == 0
    assert np.isnan(result.stats["median"][0])


def test_pack_groups_feeds_one_coadd_per_source():
    alpha, mu, sigma, zp = _exposures(m=4, k=5, seed=5)
    rows = []
    for i in (3, 0, 2, 1):  # rows of the two sources interleaved
        row = {"ref_id": 2 - i // 2, "band": "NB455", "flux": mu[i].mean(), "flux_err": 1.0, "zero_point": zp[i]}
        row.update({f"alpha_{k}": alpha[i, k] for k in range(5)})
        row.update({f"mu_{k}": mu[i, k] for k in range(5)})
        row.update({f"sigma_{k}": sigma[i, k] for k in range(5)})
        rows.append(row)
    rows.append({**rows[0], "ref_id": 7, "truncated": True})  # a source seen once: padded
    frame = pd.DataFrame(rows)
    packed = pack_groups(frame, mixtures_from_table(frame), by=("ref_id", "band"))
    assert list(packed.keys["ref_id"]) == [1, 2, 7]
    assert packed.valid.tolist() == [[True, True], [True, True], [True, False]]
    assert packed.truncated.tolist() == [[False, False], [False, False], [True, False]]
    np.testing.assert_array_equal(packed.mu[0], mu[[3, 2]])
    np.testing.assert_array_equal(packed.zero_point[1], zp[[0, 1]])
    result = coadd_likelihoods(packed.alpha, packed.mu, packed.sigma, packed.zero_point, valid=packed.valid,
                               truncated=packed.truncated)
    assert list(result.n_used) == [2, 2, 1]
    single = coadd_likelihoods(alpha[None, 2:], mu[None, 2:], sigma[None, 2:], zp[None, 2:])
    assert result.stats["mode"][0] == pytest.approx(single.stats["mode"][0])
    assert result.stats["median"][0] == pytest.approx(single.stats["median"][0])


def test_an_outlying_exposure_does_not_underflow():
    # one exposure 60 sigma away from the others: its density underflows float32 on the grid,
    # so the batched sum falls back to logsumexp for that source and still matches brute force
    alpha = np.array([[1.0, 0.0], [1.0, 0.0], [0.7, 0.3]])
    mu = np.array([[10.0, 10.0], [10.5, 10.5], [70.0, 80.0]])
    sigma = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 2.0]])
    zp = np.full(3, 31.4)
    result = coadd_likelihoods(alpha[None], mu[None], sigma[None], zp[None])
    ref = _grid_reference(alpha, mu, sigma, zp, np.zeros(3, bool))
    assert np.isfinite(result.stats["median"][0])
    assert result.stats["median"][0] == pytest.approx(ref["median"], abs=0.02 * ref["sigma68"])


def _with_bad_component(alpha, mu, sigma, fraction, width):
    """The mixtures with the bad-exposure component of ``coadd_likelihoods(outlier_fraction=...)``
    written out: weights times 1 - fraction, one more at the exposure's mean, width x its std."""
    mean = (alpha * mu).sum(1)
    std = np.sqrt((alpha * (sigma**2 + mu**2)).sum(1) - mean**2)
    return (np.concatenate([alpha * (1 - fraction), np.full((len(alpha), 1), fraction)], axis=1),
            np.concatenate([mu, mean[:, None]], axis=1), np.concatenate([sigma, width * std[:, None]], axis=1))


def test_outlier_component_matches_grid_product():
    alpha, mu, sigma, zp = _exposures(m=4, seed=3)
    mu[0] += 40.0  # one exposure far from the others
    result = coadd_likelihoods(alpha[None], mu[None], sigma[None], zp[None], outlier_fraction=0.02, outlier_width=8.0)
    ref = _grid_reference(*_with_bad_component(alpha, mu, sigma, 0.02, 8.0), zp, np.zeros(4, dtype=bool))
    for key in ("median", "mode", "sigma68"):
        assert result.stats[key][0] == pytest.approx(ref[key], abs=0.01 * ref["sigma68"]), key


def test_a_bad_exposure_stops_pulling_the_coadd_and_is_counted():
    """Five exposures of 100 +- 10 e-/s, the first of the second source 8 sigma high (a cosmic ray):
    the plain product follows it by 8/5 sigma; with outlier_fraction the co-add stays on the other
    four and counts one outlier; the consistent source keeps its median and width."""
    f = np.array([[100.0, 96.0, 104.0, 99.0, 101.0], [180.0, 96.0, 104.0, 99.0, 101.0]])
    alpha, mu, sigma = np.ones((2, 5, 1)), f[..., None], np.full((2, 5, 1), 10.0)
    zp = np.full((2, 5), 31.4)
    plain = coadd_likelihoods(alpha, mu, sigma, zp)
    robust = coadd_likelihoods(alpha, mu, sigma, zp, outlier_fraction=0.01)
    assert plain.stats["median"][1] == pytest.approx(116.0, abs=0.05)
    assert robust.stats["median"][1] == pytest.approx(100.0, abs=0.5)
    assert robust.stats["sigma68"][1] == pytest.approx(10.0 / np.sqrt(4), rel=0.02)
    assert robust.stats["median"][0] == pytest.approx(plain.stats["median"][0], abs=0.05)
    assert robust.stats["sigma68"][0] == pytest.approx(plain.stats["sigma68"][0], rel=0.01)
    assert robust.n_outliers.tolist() == [0, 1] and plain.n_outliers.tolist() == [0, 0]


@pytest.mark.parametrize("fraction, width", [(-0.1, 10.0), (1.0, 10.0), (0.01, 1.0)])
def test_outlier_options_are_checked(fraction, width):
    from lumos_ops.exceptions import LumosValueError

    alpha, mu, sigma, zp = _exposures()
    with pytest.raises(LumosValueError, match="outlier_fraction"):
        coadd_likelihoods(alpha[None], mu[None], sigma[None], zp[None], outlier_fraction=fraction, outlier_width=width)
