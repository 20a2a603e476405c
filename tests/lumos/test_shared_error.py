import numpy as np
import pandas as pd
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.coadd import coadd_likelihoods
from lumos_ops.lumos.shared_error import (
    SharedError,
    coadd_rho,
    coadd_variance_factor,
    decompose_pulls,
    estimate_shared_error,
    pair_correlation,
    pair_correlation_error,
    shared_error_of,
    with_shared_rho,
)
from lumos_ops.stats import sigma68


def _pulls(n_gal, n_place, tau, s, seed):
    rng = np.random.default_rng(seed)
    shared = rng.normal(0.0, tau, n_gal)
    pull = shared[:, None] + rng.normal(0.0, s, (n_gal, n_place))
    return pull.ravel(), np.repeat(np.arange(n_gal), n_place)


@pytest.mark.parametrize("tau, s", [(0.0, 1.0), (0.5, 1.0), (1.0, 0.7)])
def test_decompose_pulls_recovers_shared_and_per_exposure_parts(tau, s):
    pull, galaxy = _pulls(6000, 5, tau, s, seed=1)
    split = decompose_pulls(pull, galaxy)
    assert split.n_galaxies == 6000 and split.placements == 5
    assert split.s == pytest.approx(s, rel=0.04)
    assert split.tau == pytest.approx(tau, abs=0.06)
    assert split.rho == pytest.approx(tau**2 / (tau**2 + s**2), abs=0.03)


def test_decompose_pulls_needs_ten_galaxies_with_two_placements():
    pull, galaxy = _pulls(9, 3, 0.5, 1.0, seed=0)
    assert np.isnan(decompose_pulls(pull, galaxy).rho)
    # single placements do not count
    assert decompose_pulls(np.arange(50.0), np.arange(50)).n_galaxies == 0


def test_variance_factor_is_one_plus_rho_n_minus_one_for_equal_errors():
    rho = np.full((3, 5), 0.2)
    w = np.ones((3, 5))
    valid = np.array([[True] * 5, [True, True, False, False, False], [False] * 5])
    got = coadd_variance_factor(rho, w, valid)
    assert got == pytest.approx([1.0 + 0.2 * 4, 1.0 + 0.2, 1.0])
    assert coadd_variance_factor(np.zeros((1, 4)), np.arange(1.0, 5.0)[None]) == pytest.approx([1.0])


def test_variance_factor_matches_the_variance_of_the_weighted_mean():
    sig = np.array([1.0, 2.0, 0.5, 1.5])
    rho = np.array([0.1, 0.3, 0.05, 0.2])
    corr = np.sqrt(np.outer(rho, rho))
    np.fill_diagonal(corr, 1.0)
    cov = corr * np.outer(sig, sig)
    w = 1.0 / sig**2
    weights = w / w.sum()
    exact = weights @ cov @ weights
    assert coadd_variance_factor(rho[None], w[None])[0] == pytest.approx(exact * w.sum(), rel=1e-12)


def test_estimate_shared_error_finds_a_fractional_shared_error_growing_with_snr():
    rng = np.random.default_rng(3)
    n_gal, n_place, eps, sigma = 3000, 5, 0.03, 1.0
    truth = 10 ** rng.uniform(0.5, 2.3, n_gal)  # SNR ~3-200
    shared = truth * eps * rng.normal(size=n_gal)
    flux = truth[:, None] + shared[:, None] + rng.normal(0.0, sigma, (n_gal, n_place))
    got = estimate_shared_error(flux.ravel(), np.full(flux.size, sigma), np.repeat(truth, n_place),
                                np.repeat(np.arange(n_gal), n_place), source="synthetic")
    assert np.all(np.diff(got.rho) >= 0)
    # expected rho at the bins' typical SNR: (eps snr)^2 / (1 + (eps snr)^2)
    assert got.rho[0] < 0.03
    assert float(got.rho_at(7.0)) == pytest.approx(0.04, abs=0.04)
    assert 0.25 < float(got.rho_at(30.0)) < 0.6
    assert float(got.rho_at(150.0)) > 0.7
    assert got.source == "synthetic" and sum(got.n_galaxies) == n_gal


def test_estimate_without_enough_galaxies_gives_zero_and_without_rows_fails():
    got = estimate_shared_error([1.0, 2.0, 1.5], [1.0, 1.0, 1.0], [1.2, 1.2, 1.2], [0, 0, 0])
    assert got.rho == (0.0,) * 7
    with pytest.raises(LumosValueError, match="no finite measurement"):
        estimate_shared_error([np.nan], [1.0], [1.0], [0])


def test_shared_error_round_trip_lookup_and_validation():
    se = SharedError((0.0, 5.0, 20.0, np.inf), (0.0, 0.05, 0.2), (10, 20, 30), "test")
    assert SharedError.from_dict(se.to_dict()) == se
    assert se.to_dict()["snr_edges"][-1] is None
    assert se.rho_at([-3.0, 1.0, 5.0, 19.9, 20.0, 1e6, np.nan]).tolist() == [0.0, 0.0, 0.05, 0.05, 0.2, 0.2, 0.0]
    assert shared_error_of({"shared_error": se.to_dict()}) == se
    assert shared_error_of({}) is None
    with pytest.raises(LumosValueError, match="increasing"):
        SharedError((0.0, 5.0), (0.1, 0.2))
    with pytest.raises(LumosValueError, match=r"\[0, 1\)"):
        SharedError((0.0, 5.0), (1.0,))
    with pytest.raises(LumosValueError, match="cannot read"):
        SharedError.from_dict({"rho": [0.1]})
    frame = pd.DataFrame({"flux": [10.0, 100.0, np.nan], "flux_err": [1.0, 1.0, 1.0]})
    assert with_shared_rho(frame, se)["shared_rho"].tolist() == [0.05, 0.2, 0.0]
    assert with_shared_rho(frame, None) is frame


def test_coadd_with_rho_widens_about_the_same_peak_and_calibrates_correlated_errors():
    rng = np.random.default_rng(5)
    n_src, m, rho, sigma = 4000, 5, 0.15, 2.0
    truth = 50.0
    shared = rng.normal(0.0, sigma * np.sqrt(rho), n_src)
    own = rng.normal(0.0, sigma * np.sqrt(1.0 - rho), (n_src, m))
    mu = (truth + shared[:, None] + own)[..., None]
    alpha = np.ones((n_src, m, 1))
    sig = np.full((n_src, m, 1), sigma)
    zp = np.full((n_src, m), 31.4)
    plain = coadd_likelihoods(alpha, mu, sig, zp)
    widened = coadd_likelihoods(alpha, mu, sig, zp, rho=np.full((n_src, m), rho))
    c = 1.0 + rho * (m - 1)
    assert widened.variance_factor == pytest.approx(np.full(n_src, c))
    assert plain.variance_factor == pytest.approx(np.ones(n_src))
    assert widened.stats["median"] == pytest.approx(plain.stats["median"], abs=1e-6)
    assert widened.stats["sigma68"] == pytest.approx(np.sqrt(c) * plain.stats["sigma68"], rel=1e-3)
    pull_plain = sigma68((plain.stats["median"] - truth) / plain.stats["sigma68"])
    pull_widened = sigma68((widened.stats["median"] - truth) / widened.stats["sigma68"])
    assert pull_plain == pytest.approx(np.sqrt(c), rel=0.05)
    assert pull_widened == pytest.approx(1.0, rel=0.05)


def test_pair_correlation_counts_only_pairs_on_different_frames():
    rng = np.random.default_rng(8)
    n_gal, n_place = 10000, 4
    galaxy_part = rng.normal(0.0, np.sqrt(0.2), n_gal)
    frame_part = rng.normal(0.0, np.sqrt(0.3), (n_gal, 2))  # shared by the placements on one frame
    frame = np.tile([0, 0, 1, 1], n_gal)
    pull = (galaxy_part[:, None] + frame_part[:, [0, 0, 1, 1]] + rng.normal(0.0, np.sqrt(0.5), (n_gal, n_place))).ravel()
    galaxy = np.repeat(np.arange(n_gal), n_place)
    rho, n_pairs, n_galaxies = pair_correlation(pull, galaxy, frame)
    assert n_pairs == 4 * n_gal and n_galaxies == n_gal
    assert rho == pytest.approx(0.2, abs=0.03)
    every, n_every, _ = pair_correlation(pull, galaxy)
    assert n_every == 6 * n_gal and every == pytest.approx((4 * 0.2 + 2 * 0.5) / 6, abs=0.03)  # same-frame pairs: 0.5
    assert np.isnan(pair_correlation(pull[:8], galaxy[:8], frame[:8])[0])


def _two_populations(seed=4, n_gal=2500, n_place=4):
    """Smooth galaxies (no shared error, model residual ~0) and knotty ones (3 % shared error,
    residual ~0.05), with per-exposure errors that include the shared part."""
    rng = np.random.default_rng(seed)
    knotty = np.arange(n_gal) % 2 == 1
    eps = np.where(knotty, 0.03, 0.0)
    truth = 10 ** rng.uniform(1.0, 2.3, n_gal)
    flux = truth[:, None] * (1.0 + eps * rng.normal(size=n_gal))[:, None] + rng.normal(0.0, 1.0, (n_gal, n_place))
    err = np.repeat(np.hypot(1.0, eps * truth), n_place)
    residual = np.repeat(np.where(knotty, 0.05, 0.0), n_place) + rng.normal(0.0, 0.003, n_gal * n_place)
    frame = np.tile(np.arange(n_place), n_gal)
    return flux.ravel(), err, np.repeat(truth, n_place), np.repeat(np.arange(n_gal), n_place), frame, residual


def test_a_residual_axis_separates_galaxies_that_are_not_their_model():
    flux, err, truth, galaxy, frame, residual = _two_populations()
    plain = estimate_shared_error(flux, err, truth, galaxy, frame=frame)
    split = estimate_shared_error(flux, err, truth, galaxy, frame=frame, residual=residual)
    assert plain.residual_cuts == () and split.residual_cuts == (0.01,)
    assert split.rho == plain.rho  # the all-galaxy values are kept for sources without a residual
    smooth, knotty = (np.asarray(row) for row in split.rho_by_residual)
    assert np.all(smooth < 0.08) and knotty[3] > 0.3 and np.all(knotty[3:] > smooth[3:] + 0.25)
    snr = np.array([30.0, 30.0, 30.0])
    assert split.rho_at(snr, residual=[0.0, 0.05, np.nan]).tolist() == [smooth[3], knotty[3], split.rho[3]]
    assert split.rho_rows(snr[:1]).tolist() == [[smooth[3], knotty[3]]]
    assert SharedError.from_dict(split.to_dict()) == split
    with pytest.raises(LumosValueError, match="one rho row per residual bin"):
        SharedError((0.0, np.inf), (0.1,), residual_cuts=(0.01,), rho_by_residual=((0.1,),))


def test_coadd_rho_takes_the_bin_of_the_sources_median_residual():
    shared = SharedError((0.0, 10.0, np.inf), (0.05, 0.2), residual_cuts=(0.01,), rho_by_residual=((0.0, 0.1), (0.3, 0.6)))
    frame = pd.DataFrame({"flux": [50.0, 60.0, 55.0, 50.0, 5.0], "flux_err": [1.0, 1.0, 1.0, 1.0, 1.0],
                          "model_residual": [0.001, 0.03, 0.002, 0.04, np.nan]})
    rows = with_shared_rho(frame, shared)
    assert rows["shared_rho"].tolist() == [0.2, 0.2, 0.2, 0.2, 0.05]
    assert rows["shared_rho_bins"].tolist()[0].tolist() == [0.1, 0.6]
    # sources 0 (median residual 0.002: smooth) and 1 (0.04: not its model); source 2 has no residual
    got = coadd_rho(rows, np.array([0, 1, 0, 1, 2]))
    assert got.tolist() == [0.1, 0.6, 0.1, 0.6, 0.05]
    assert coadd_rho(rows.drop(columns=["shared_rho_bins"]), np.arange(5)).tolist() == [0.2, 0.2, 0.2, 0.2, 0.05]
    with pytest.raises(LumosValueError, match="need model_residual"):
        with_shared_rho(frame.drop(columns=["model_residual"]), shared)


def test_pair_correlation_error_is_the_spread_of_rho_between_independent_injections():
    tau, s, n_gal, n_place = 0.6, 0.8, 150, 5
    draws = [pair_correlation(*_pulls(n_gal, n_place, tau, s, seed=100 + k))[0] for k in range(60)]
    errors = [pair_correlation_error(*_pulls(n_gal, n_place, tau, s, seed=200 + k)) for k in range(5)]
    assert np.std(draws) == pytest.approx(np.median(errors), rel=0.3)
    pull, galaxy = _pulls(n_gal, n_place, tau, s, seed=5)
    assert pair_correlation_error(pull, galaxy) == pair_correlation_error(pull, galaxy)  # seeded
    assert np.isnan(pair_correlation_error([0.1, 0.2], [0, 0]))


def test_a_noise_level_rho_is_not_recorded_and_a_real_one_is():
    rng = np.random.default_rng(11)
    n_gal, n_place = 60, 5
    truth = np.full(n_gal, 40.0)  # one SNR bin, 60 galaxies: the estimate's error is about 0.1
    galaxy = np.repeat(np.arange(n_gal), n_place)
    frame = np.tile(np.arange(n_place), n_gal)
    independent = [truth[:, None] + rng.normal(0.0, 1.0, (n_gal, n_place)) for _ in range(20)]
    kept = [estimate_shared_error(f.ravel(), np.ones(f.size), np.repeat(truth, n_place), galaxy, frame=frame,
                                  significance=0.0).rho[3] for f in independent]
    tested = [estimate_shared_error(f.ravel(), np.ones(f.size), np.repeat(truth, n_place), galaxy, frame=frame).rho[3]
              for f in independent]
    assert np.mean(kept) > 0.03  # clipped at 0, noise only ever widens
    assert sum(r > 0 for r in tested) <= 2 and np.mean(tested) < 0.3 * np.mean(kept)
    shared = truth[:, None] + rng.normal(0.0, 1.0, (n_gal, 1)) + rng.normal(0.0, 1.0, (n_gal, n_place))
    real = estimate_shared_error(shared.ravel(), np.full(shared.size, np.sqrt(2.0)), np.repeat(truth, n_place), galaxy,
                                 frame=frame)
    assert real.rho[3] == pytest.approx(0.5, abs=0.2)
