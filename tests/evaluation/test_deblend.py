"""Parts of the validation report: pixel-free prior, deblending stamps, the issue's targets table."""

import numpy as np
import pandas as pd
import pytest

from lumos_ops.evaluation.bayes_reference import bayes_optimal_median, pull_width
from lumos_ops.evaluation.deblend import bias_by_distance, excess_by_distance, make_deblend_set, rescale_catalog
from lumos_ops.evaluation.prior_only import prior_only_flux
from lumos_ops.evaluation.targets import format_targets, issue_targets
from lumos_ops.exceptions import LumosValueError
from lumos_ops.sim.seds import mag_to_njy

from lumos_helpers import write_exposure


def test_prior_recovers_a_power_law_and_fails_on_independent_fluxes():
    rng = np.random.default_rng(0)
    n = 2000
    band = np.where(np.arange(n) % 3 == 0, "NB455", "NB685")
    i_auto = rng.uniform(18, 23, n)
    flux = np.where(band == "NB455", 2.0, 5.0) * 10 ** (-0.4 * (i_auto - 20))
    pred = prior_only_flux(band, i_auto, flux, np.arange(n))
    np.testing.assert_allclose(pred, flux, rtol=1e-6)
    shuffled = rng.permutation(flux)
    rel = prior_only_flux(band, i_auto, shuffled, np.arange(n)) / shuffled - 1
    assert 0.5 * np.subtract(*np.percentile(rel, [84, 16])) > 0.5
    with pytest.raises(LumosValueError, match="same shape"):
        prior_only_flux(band[:3], i_auto, flux, np.arange(n))


def test_bayes_reference_is_the_gaussian_posterior_median():
    # Gaussian prior N(50, 10) and measurements N(f, 10 * 1.5) whose reported errors are 1.5x too
    # small: the calibrated posterior median is the precision-weighted mean (50 + f_meas) / 2.
    rng = np.random.default_rng(1)
    n = 20000
    truth = rng.normal(50.0, 10.0, n)
    err = np.full(n, 10.0 / 1.5)
    measured = truth + rng.normal(0.0, 10.0, n)
    band = np.where(np.arange(n) % 2 == 0, "NB455", "NB685")
    assert pull_width(measured, err, truth) == pytest.approx(1.5, rel=0.03)
    ref = bayes_optimal_median(band, measured, err, truth, np.arange(n) // 2)
    off = np.abs(ref - 0.5 * (50.0 + measured))  # sampling noise of the empirical prior, worst in its tails
    assert np.median(off) < 0.2 and np.percentile(off, 99) < 1.0
    assert np.std(ref - truth) == pytest.approx(10.0 / np.sqrt(2), rel=0.03)
    assert abs(np.median(ref - truth)) < 0.15
    measured[3] = np.nan
    assert np.isnan(bayes_optimal_median(band, measured, err, truth, np.arange(n))[3])
    with pytest.raises(LumosValueError, match="same shape"):
        bayes_optimal_median(band[:3], measured, err, truth, np.arange(n))


def test_rescale_catalog_keeps_colours():
    catalog = pd.DataFrame({"i_auto": [20.0, 21.0], "flux_nJy_NB455": [100.0, 30.0], "flux_nJy_NB685": [200.0, 90.0]})
    out = rescale_catalog(catalog, 22.0)
    assert (out.i_auto == 22.0).all()
    np.testing.assert_allclose(out.flux_nJy_NB455 / out.flux_nJy_NB685, catalog.flux_nJy_NB455 / catalog.flux_nJy_NB685)
    np.testing.assert_allclose(out.flux_nJy_NB455, [100 * 10 ** -0.8, 30 * 10 ** -0.4])


def test_deblend_set_targets_and_neighbours(tmp_path):
    p1, catalog = write_exposure(tmp_path / "e1.fits", seed=3)
    path = make_deblend_set([str(p1)], catalog, tmp_path / "deblend", n_stamps=12, seed=1)
    meta = pd.read_parquet(path / "meta.parquet")
    assert (meta.i_auto == 22.0).all() and (meta.nbr_i_auto == 20.0).all()
    np.testing.assert_allclose(meta.nbr_flux / meta.flux, 10 ** 0.8, rtol=1e-9)  # flat spectrum: 2 mag brighter
    distance = np.hypot(meta.nbr_dx, meta.nbr_dy)
    assert distance.between(0.0, 20.0).all()
    zp_flux = mag_to_njy(22.0) * 10 ** (0.4 * (26.0 - 31.4))
    np.testing.assert_allclose(meta.flux, zp_flux, rtol=1e-9)
    control = make_deblend_set([str(p1)], catalog, tmp_path / "control", n_stamps=12, seed=1, neighbours=False)
    alone = pd.read_parquet(control / "meta.parquet")
    assert (alone.nbr_ref_id < 0).all()
    np.testing.assert_array_equal(alone.flux, meta.flux)
    np.testing.assert_array_equal(alone.source_exposure, meta.source_exposure)


def test_deblend_set_teahupoo_targets(tmp_path):
    p1, catalog = write_exposure(tmp_path / "e1.fits", seed=3)
    own = pd.read_parquet(make_deblend_set([str(p1)], catalog, tmp_path / "own", n_stamps=40, seed=1) / "meta.parquet")
    drawn_path = make_deblend_set([str(p1)], catalog, tmp_path / "drawn", n_stamps=40, seed=1,
                                  target_flux={"flux_source": "band_distribution", "flux_population": 5000})
    drawn = pd.read_parquet(drawn_path / "meta.parquet")
    assert (drawn.i_auto == 22.0).all()
    assert drawn.flux.nunique() > 30 and own.flux.nunique() == 1  # independent draws vs the one flat-spectrum SED
    np.testing.assert_array_equal(drawn.nbr_flux, own.nbr_flux)  # neighbours keep their own SED at i = 20
    np.testing.assert_array_equal(drawn.nbr_dx, own.nbr_dx)
    with pytest.raises(LumosValueError, match="unknown fields.*neighbour_fraction"):
        make_deblend_set([str(p1)], catalog, tmp_path / "bad", n_stamps=4, target_flux={"neighbour_fraction": 0.0})


def test_bias_by_distance_default_bins_have_an_edge_at_5_px():
    truth = np.full(3, 10.0)
    rows = bias_by_distance({"a": truth}, truth, np.array([4.9, 5.0, 20.0]))["a"]
    assert [(r["d_lo"], r["d_hi"]) for r in rows][1:3] == [(2.5, 5.0), (5.0, 7.5)]
    assert [r["n"] for r in rows][1:3] == [1, 1] and rows[-1]["n"] == 1


def test_bias_by_distance():
    truth = np.full(8, 10.0)
    distance = np.array([1, 1, 3, 3, 9, 9, 19.5, 20.0])
    rows = bias_by_distance({"a": truth * 1.1}, truth, distance, edges=[0, 2, 10, 20])
    assert [r["n"] for r in rows["a"]] == [2, 4, 2]
    assert all(r["bias"] == pytest.approx(0.1) for r in rows["a"])
    with pytest.raises(LumosValueError, match="increasing"):
        bias_by_distance({"a": truth}, truth, distance, edges=[1.0])


def test_excess_by_distance_is_the_paired_difference():
    truth = np.full(4, 10.0)
    distance = np.array([1.0, 1.0, 15.0, 15.0])
    rows = excess_by_distance({"a": np.array([14.0, 16.0, 9.0, 9.0])}, {"a": np.array([9.0, 9.0, 9.0, 9.0]),
                              "b": truth}, truth, distance, edges=[0, 10, 20])
    assert set(rows) == {"a"}
    assert rows["a"][0]["bias"] == pytest.approx(0.6) and rows["a"][1]["bias"] == pytest.approx(0.0)


def test_issue_targets_table():
    overall = {"lumos": {"sigma68": 0.2, "bias": 0.0}, "optimal": {"sigma68": 0.3}, "aperture": {"sigma68": 0.25}}
    binned = {"lumos": [{"mag_lo": 20.0, "mag_hi": 21.0, "n": 10, "bias": 0.02},
                        {"mag_lo": 21.0, "mag_hi": 22.0, "n": 10, "bias": -0.05},
                        {"mag_lo": 22.0, "mag_hi": 23.0, "n": 10, "bias": 0.5}]}
    deblend = {"lumos": [{"d_lo": 2.0, "d_hi": 4.0, "n": 5, "bias": 0.5}, {"d_lo": 6.0, "d_hi": 8.0, "n": 5, "bias": -0.08}]}
    rows = {r["name"]: r for r in issue_targets(overall, binned, pit_ks=0.02, coverage68=0.72, deblend=deblend)}
    assert rows["sigma68 LUMOS / optimal"]["measured"] == pytest.approx(2 / 3) and rows["sigma68 LUMOS / optimal"]["met"]
    assert rows["sigma68 LUMOS / aperture"]["met"] is False
    assert rows["max |bias| per i_auto bin brighter than 22"]["measured"] == pytest.approx(0.05)
    assert rows["PIT KS distance from uniform"]["met"] is True
    assert rows["coverage of the 68 % interval"]["met"] is False
    assert rows["deblending: max |bias| with neighbour at >= 5 px"]["measured"] == pytest.approx(0.08)
    overall["bayes_optimal"] = {"sigma68": 0.24}
    excess = {"lumos": [{"d_lo": 6.0, "d_hi": 8.0, "n": 5, "bias": 0.03}]}
    rows = {r["name"]: r for r in issue_targets(overall, binned, pit_ks=0.02, coverage68=0.7, deblend=deblend,
                                                deblend_excess=excess)}
    assert "reference bayes_optimal reaches 0.800" in rows["sigma68 LUMOS / optimal"]["detail"]
    assert "neighbour itself causes up to +0.030 (6-8 px)" in rows["deblending: max |bias| with neighbour at >= 5 px"]["detail"]
    missing = issue_targets(overall, binned, pit_ks=0.02, coverage68=0.68, deblend=None)
    assert missing[-1]["met"] is None and missing[-1]["measured"] is None
    text = format_targets(missing)
    assert "n/a" in text and "NO" in text and "yes" in text


def test_validate_config_rejects_unknown_estimator():
    from lumos_ops.evaluation.validate_config import ESTIMATORS, ValidateConfig

    assert ValidateConfig().estimator == "median" and set(ESTIMATORS) == {"median", "mean", "mode"}
    with pytest.raises(LumosValueError, match="estimator must be one of"):
        ValidateConfig(estimator="average")
