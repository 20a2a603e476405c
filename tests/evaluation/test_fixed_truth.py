"""Fixed-truth metrics see shrinkage that observed-quantity bins hide; the PIT with a population prior."""

import numpy as np
import pytest

from lumos_ops.evaluation.fixed_truth import crb_flux_error, fixed_truth_bins, methods_at_fixed_truth
from lumos_ops.evaluation.population_prior import neighbour_widths, posterior_pit
from lumos_ops.exceptions import LumosValueError
from lumos_ops.stats import sigma68 as half_width68


def _population(n=40_000, seed=0):
    rng = np.random.default_rng(seed)
    truth = np.exp(rng.uniform(np.log(2.0), np.log(200.0), n))
    sigma = np.full(n, 2.0)
    return rng, truth, sigma, truth + rng.normal(0.0, sigma)


def test_unbiased_estimator_with_honest_errors():
    _, truth, sigma, flux = _population()
    rows = fixed_truth_bins(truth, flux, sigma, edges=(2, 10, 30, 200))
    for row in rows:
        assert row["pull_sigma68"] == pytest.approx(1.0, abs=0.04)
        assert row["coverage68"] == pytest.approx(0.6827, abs=0.02)
        assert abs(row["pull_median"]) < 0.05
    assert rows[-1]["lo"] is None and rows[-1]["n"] == truth.size


def test_bootstrap_errors_match_the_scatter_between_independent_samples():
    rng = np.random.default_rng(5)
    n, trials = 60, 400
    truth = np.full(n, 50.0)
    rows = [fixed_truth_bins(truth, truth + rng.normal(0.0, 2.0, n), np.full(n, 2.0), edges=(0, 100), n_boot=200,
                             seed=k)[0] for k in range(trials)]
    for key in ("bias", "pull_sigma68", "coverage68"):
        spread = np.std([r[key] for r in rows])
        assert np.median([r[f"{key}_err"] for r in rows]) == pytest.approx(spread, rel=0.25)
    small = fixed_truth_bins(truth[:9], truth[:9], np.ones(9), edges=(0, 100))[0]
    assert np.isnan(small["pull_sigma68_err"]) and np.isnan(small["coverage68_err"])


def test_the_group_bootstrap_sees_errors_that_a_galaxy_shares_across_its_placements():
    n_gal, n_place, trials = 40, 10, 300
    rng = np.random.default_rng(9)
    truth = np.full(n_gal * n_place, 50.0)
    galaxy = np.repeat(np.arange(n_gal), n_place)
    rows = []
    for k in range(trials):
        shared = np.repeat(rng.normal(0.0, 2.0, n_gal), n_place)  # each galaxy's own offset, in every placement
        flux = truth + shared + rng.normal(0.0, 1.0, truth.size)
        rows.append((fixed_truth_bins(truth, flux, np.full(truth.size, 2.0), edges=(0, 100), n_boot=100, seed=k)[0],
                     fixed_truth_bins(truth, flux, np.full(truth.size, 2.0), edges=(0, 100), n_boot=100, seed=k,
                                      groups=galaxy)[0]))
    spread = np.std([plain["bias"] for plain, _ in rows])
    assert np.median([plain["bias_err"] for plain, _ in rows]) < 0.6 * spread  # rows are not independent draws
    assert np.median([grouped["bias_err"] for _, grouped in rows]) == pytest.approx(spread, rel=0.25)
    with pytest.raises(LumosValueError, match="groups"):
        fixed_truth_bins(truth, truth, truth, edges=(0, 100), groups=galaxy[:5])


def test_shrinkage_shows_at_fixed_truth():
    _, truth, sigma, flux = _population()
    shrunk = 0.6 * flux + 0.4 * 20.0  # a posterior mean pulled toward a prior at 20
    rows = fixed_truth_bins(truth, shrunk, 0.6 * sigma, edges=(2, 5, 10, 50, 200))
    assert rows[0]["bias"] > 0.5  # faint truths pulled up
    assert rows[3]["bias"] < -0.3  # bright truths pulled down
    assert rows[0]["coverage68"] < 0.2


def test_interval_coverage_and_half_width():
    assert half_width68(np.random.default_rng(0).normal(0, 3, 100_000)) == pytest.approx(3.0, rel=0.02)
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    rows = fixed_truth_bins(truth, truth, np.ones(4), edges=(0, 10), lower=truth + 0.5, upper=truth + 1.0, n_boot=0)
    assert rows[0]["coverage68"] == 0.0


def test_crb_of_a_flat_profile():
    model = np.full((1, 10, 10), 0.01)
    assert crb_flux_error(model, np.array([4.0]))[0] == pytest.approx(1.0 / np.sqrt(100 * 1e-4 / 4.0))


def _ks(pits):
    pits = np.sort(pits[np.isfinite(pits)])
    return np.max(np.abs(np.arange(1, pits.size + 1) / pits.size - pits))


def test_the_population_prior_follows_steep_number_counts_to_their_faint_edge():
    # counts rising as f^-2.2 to an edge at 0.1 e-/s, measured with errors of 2 e-/s and more: a
    # prior smoothed at one width (the kernel density this replaced) gave KS 0.25 here
    rng = np.random.default_rng(0)
    n = 6_000
    truth = (0.1**-1.2 + rng.random(n) * (300.0**-1.2 - 0.1**-1.2)) ** (-1 / 1.2)
    sigma = np.sqrt(4.0 + 0.05 * truth)
    pits = posterior_pit(truth, np.ones((n, 1)), (truth + sigma * rng.standard_normal(n))[:, None], sigma[:, None])
    assert _ks(pits) < 0.02


def test_the_prior_of_placed_galaxies_leaves_out_the_galaxy_itself():
    # 600 galaxies placed 10 times each, bright with a 1 % error floor: narrow likelihoods, a
    # sparse population, and every placement of a galaxy at the same truth
    rng = np.random.default_rng(1)
    truth = np.repeat(np.exp(rng.uniform(np.log(20.0), np.log(5000.0), 600)), 10)
    galaxy = np.repeat(np.arange(600), 10)
    sigma = np.sqrt(4.0 + 0.05 * truth + (0.01 * truth) ** 2)
    flux = truth + sigma * rng.standard_normal(truth.size)
    pits = posterior_pit(truth, np.ones((truth.size, 1)), flux[:, None], sigma[:, None], groups=galaxy)
    assert _ks(pits) < 0.025
    # a likelihood 30 % too narrow is seen
    narrow = posterior_pit(truth, np.ones((truth.size, 1)), flux[:, None], 0.7 * sigma[:, None], groups=galaxy)
    assert _ks(narrow) > 0.05


def test_a_large_test_set_draws_its_prior_and_stays_uniform(monkeypatch):
    from lumos_ops.evaluation import population_prior

    monkeypatch.setattr(population_prior, "MAX_PRIOR_ATOMS", 1_500)
    rng = np.random.default_rng(3)
    n = 6_000
    truth = (0.5**-0.8 + rng.random(n) * (1000.0**-0.8 - 0.5**-0.8)) ** (-1 / 0.8)
    sigma = np.sqrt(4.0 + 0.05 * truth)
    pits = posterior_pit(truth, np.ones((n, 1)), (truth + sigma * rng.standard_normal(n))[:, None], sigma[:, None])
    assert np.isfinite(pits).all() and _ks(pits) < 0.025


def test_a_truncated_pdf_puts_no_posterior_below_zero():
    rng = np.random.default_rng(2)
    truth = rng.normal(3.0, 4.0, 400)
    truth[:3] = (-1.0, -2.0, -0.5)
    mu, sig = (truth + rng.normal(0.0, 2.0, 400))[:, None], np.full((400, 1), 2.0)
    cut = np.zeros(400, dtype=bool)
    cut[:5] = True
    pits = posterior_pit(truth, np.ones((400, 1)), mu, sig, truncated=cut)
    assert np.all(pits[:3] < 1e-6)
    assert np.all(pits[5:] >= 0) and np.all(pits[5:] <= 1)
    with pytest.raises(LumosValueError, match="distinct"):
        posterior_pit(truth[:5], np.ones((5, 1)), mu[:5], sig[:5])
    with pytest.raises(LumosValueError, match="shapes"):
        posterior_pit(truth, np.ones((399, 1)), mu, sig)


def test_each_truths_kernel_is_as_wide_as_its_neighbourhood():
    values = np.array([0.0, 1.0, 3.0, 6.0])
    assert neighbour_widths(values, 1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert neighbour_widths(values, 2).tolist() == [3.0, 2.0, 3.0, 5.0]


def test_posterior_pit_is_uniform_for_likelihoods_only():
    rng, truth, sigma, flux = _population(n=6_000, seed=2)
    alpha = np.ones((truth.size, 1))
    pits = posterior_pit(truth, alpha, flux[:, None], sigma[:, None])
    ks = np.max(np.abs(np.arange(1, pits.size + 1) / pits.size - np.sort(pits)))
    assert ks < 0.03
    # posteriors fed as if they were likelihoods count the prior twice: the PIT is not uniform
    post_mu, post_sigma = 0.6 * flux + 0.4 * 20.0, 0.6 * sigma
    bad = posterior_pit(truth, alpha, post_mu[:, None], post_sigma[:, None])
    assert np.max(np.abs(np.arange(1, bad.size + 1) / bad.size - np.sort(bad))) > 0.1


def test_the_per_method_table_shows_one_methods_shrinkage_and_not_the_others():
    import pandas as pd

    rng = np.random.default_rng(3)
    truth = rng.uniform(1.0, 100.0, 20000)
    err = np.full(truth.size, 5.0)
    honest = truth + err * rng.standard_normal(truth.size)
    shrunk = 20.0 + 0.5 * (honest - 20.0)
    table = pd.concat([
        pd.DataFrame({"method": "honest", "flux": honest, "flux_err": err, "flux_true": truth}),
        pd.DataFrame({"method": "shrunk", "flux": shrunk, "flux_err": err, "flux_true": truth}),
    ])
    rows = methods_at_fixed_truth(table).set_index(["method", "true_lo"])
    assert list(rows.index.get_level_values(0).unique()) == ["honest", "shrunk"]
    for lo in (0.0, 10.0, 30.0):
        assert abs(rows.loc[("honest", lo), "pull_median"]) < 0.1
        assert rows.loc[("honest", lo), "pull_sigma68"] == pytest.approx(1.0, abs=0.06)
        assert rows.loc[("honest", lo), "coverage68"] == pytest.approx(0.683, abs=0.03)
    assert rows.loc[("shrunk", 0.0), "pull_median"] > 0.5
    assert rows.loc[("shrunk", 30.0), "pull_median"] < -2.0
    assert rows["n"].groupby(level=0).sum().tolist() == [truth.size, truth.size]
    with pytest.raises(LumosValueError, match="flux_true"):
        methods_at_fixed_truth(table.drop(columns="flux_true"))
