import json

import numpy as np
import pandas as pd
import pytest

from lumos_ops.constants import DEFAULT_FLUX_ERROR_FLOOR, DEFAULT_NEIGHBOUR_ERROR_FLOOR
from lumos_ops.exceptions import BadInputError, LumosValueError
from lumos_ops.lumos.mixture import summarize
from lumos_ops.lumos.mixture_table import Mixtures, mixture_columns, mixtures_from_table
from lumos_ops.lumos.shared_error import coadd_rho
from lumos_ops.photometry.error_floor import (
    apply_error_floor,
    coadd_with_floor,
    estimate_error_floor,
    estimate_neighbour_floor,
    statistical_error,
)
from lumos_ops.stats import sigma68


def _classical(flux, err):
    return pd.DataFrame({"flux": np.asarray(flux, float), "flux_err": np.asarray(err, float), "flag": 0})


def _lumos(mu, sigma):
    """Likelihood rows with two-component mixtures about ``mu`` and their summaries."""
    mu = np.asarray(mu, float)
    sigma = np.asarray(sigma, float)
    mix = Mixtures(alpha=np.tile([0.7, 0.3], (mu.size, 1)), mu=np.stack([mu, mu + 0.5 * sigma], axis=1),
                   sigma=np.stack([sigma, 1.5 * sigma], axis=1), truncated=np.zeros(mu.size, bool))
    stats = summarize(*mix.args)
    frame = pd.DataFrame({**mixture_columns(mix), **stats, "likelihood": True, "flag": 0})
    frame["flux"] = frame["median"]
    frame["flux_err"] = frame["sigma68"]
    return frame


def test_floor_adds_a_fraction_of_the_flux_in_quadrature_and_keeps_the_flux():
    frame = _classical([1000.0, -50.0, 10.0, np.nan], [10.0, 5.0, 2.0, 1.0])
    out = apply_error_floor(frame, 0.02)
    np.testing.assert_array_equal(out["flux"], frame["flux"])
    np.testing.assert_array_equal(out["flux_err_stat"], frame["flux_err"])
    expected = np.sqrt(np.array([10.0, 5.0, 2.0, 1.0]) ** 2 + (0.02 * np.array([1000.0, 50.0, 10.0, 0.0])) ** 2)
    np.testing.assert_allclose(out["flux_err"], expected)
    np.testing.assert_allclose(out["floor_rho"], (0.02 * np.array([1000.0, 50.0, 10.0, 0.0])) ** 2 / expected**2)
    assert (out["error_floor"] == 0.02).all()
    # the input is not modified
    assert "flux_err_stat" not in frame


def test_zero_floor_changes_no_error_and_bad_floors_are_refused():
    frame = _classical([1000.0], [10.0])
    out = apply_error_floor(frame, 0.0)
    assert out["flux_err"][0] == 10.0 and out["floor_rho"][0] == 0.0 and out["flux_err_stat"][0] == 10.0
    for bad in (-0.01, 1.0, np.nan):
        with pytest.raises(LumosValueError, match="flux_error_floor"):
            apply_error_floor(frame, bad)


def test_floor_widens_lumos_likelihoods_about_their_median():
    frame = _lumos([5.0, 400.0, 2000.0], [3.0, 4.0, 6.0])
    out = apply_error_floor(frame, 0.01)
    # the mixture and every summary say the same thing: sigma68 of the widened PDF is the new flux_err
    stats = summarize(*mixtures_from_table(out).args)
    np.testing.assert_allclose(stats["sigma68"], out["flux_err"], rtol=1e-6)
    np.testing.assert_allclose(stats["median"], frame["median"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out["flux_err"], np.sqrt(frame["sigma68"] ** 2 + (0.01 * frame["flux"]) ** 2), rtol=1e-9)
    np.testing.assert_array_equal(out["flux"], frame["flux"])
    # a faint row barely moves, a bright one is dominated by the floor
    assert out["flux_err"][0] / frame["flux_err"][0] < 1.001
    assert out["flux_err"][2] / frame["flux_err"][2] > 3.0


def _population(n, floor, snr, seed=0):
    """Bright sources with a shared fractional error ``floor`` and noise at ``snr``."""
    rng = np.random.default_rng(seed)
    truth = np.exp(rng.uniform(np.log(100.0), np.log(1000.0), n))
    err = truth / snr
    flux = truth * (1.0 + floor * rng.standard_normal(n)) + err * rng.standard_normal(n)
    return flux, err, truth


def test_estimate_recovers_the_floor_of_an_injection():
    flux, err, truth = _population(20000, 0.02, snr=100.0)
    found = estimate_error_floor(flux, err, truth)
    assert found.floor == pytest.approx(0.02, abs=0.002)
    assert found.pull_before > 2.0 and found.pull_after == pytest.approx(1.0, abs=1e-6)
    assert found.n == 20000
    # without a model error the pulls are already 1: no floor
    flux, err, truth = _population(20000, 0.0, snr=100.0, seed=1)
    assert estimate_error_floor(flux, err, truth).floor < 0.002
    # faint rows carry no information on it
    flux, err, truth = _population(20000, 0.02, snr=10.0, seed=2)
    assert estimate_error_floor(flux, err, truth).n == 0
    assert np.isnan(estimate_error_floor(flux, err, truth).floor)


def test_neighbour_light_has_its_own_fraction():
    frame = _classical([1000.0, 200.0, 50.0], [10.0, 5.0, 2.0])
    light = np.array([0.0, 100.0, 80.0])
    out = apply_error_floor(frame, 0.01, neighbour_light=light, neighbour_floor=0.05)
    expected = np.sqrt(np.array([10.0, 5.0, 2.0]) ** 2 + (0.01 * frame["flux"]) ** 2 + (0.05 * light) ** 2)
    np.testing.assert_allclose(out["flux_err"], expected)
    assert (out["neighbour_error_floor"] == 0.05).all()
    # without its own fraction the neighbours take the flux floor's
    same = apply_error_floor(frame, 0.01, neighbour_light=light)
    np.testing.assert_allclose(same["flux_err"], np.sqrt(frame["flux_err"] ** 2 + 0.01**2 * (frame["flux"] ** 2 + light**2)))
    # only neighbours: an isolated row is untouched, a blended one widened
    only = apply_error_floor(frame, 0.0, neighbour_light=light, neighbour_floor=0.05)
    assert only["flux_err"][0] == 10.0 and only["flux_err"][1] > 5.0
    with pytest.raises(LumosValueError, match="neighbour_error_floor"):
        apply_error_floor(frame, 0.01, neighbour_light=light, neighbour_floor=1.0)


def test_estimate_recovers_the_neighbour_fraction_of_an_injection():
    rng = np.random.default_rng(7)
    n, floor, e_n = 20000, 0.01, 0.04
    truth = np.exp(rng.uniform(np.log(300.0), np.log(3000.0), n))
    light = truth * np.exp(rng.uniform(np.log(0.1), np.log(3.0), n))  # the neighbour's light under the filter
    err = truth / 100.0
    flux = truth * (1.0 + floor * rng.standard_normal(n)) + e_n * light * rng.standard_normal(n)
    flux += err * rng.standard_normal(n)
    found = estimate_neighbour_floor(flux, err, truth, light, floor=floor)
    assert found.floor == pytest.approx(e_n, abs=0.004)
    assert found.pull_before > 1.5 and found.n > 0.9 * n
    # no blended row (no light, or a neighbour of under a tenth of the flux): nothing to measure
    assert np.isnan(estimate_neighbour_floor(flux, err, truth, np.zeros(n), floor=floor).floor)
    assert np.isnan(estimate_neighbour_floor(flux, err, truth, 0.05 * truth, floor=floor).floor)


def test_coadd_counts_the_floor_once():
    rng = np.random.default_rng(3)
    n, m, floor = 20000, 5, 0.02
    truth = np.full(n, 1000.0)
    err = np.full((n, m), 10.0)  # SNR 100 per exposure
    shared = floor * truth[:, None] * rng.standard_normal((n, 1))
    flux = truth[:, None] + shared + err * rng.standard_normal((n, m))
    per_exposure = np.sqrt(err**2 + (floor * flux) ** 2)
    mean, total = coadd_with_floor(flux, per_exposure, err)
    assert sigma68((mean - truth) / total) == pytest.approx(1.0, abs=0.03)
    # counted per exposure and averaged down, the floor would make the co-add about 2x too narrow
    w = 1.0 / per_exposure**2
    naive = 1.0 / np.sqrt(w.sum(axis=1))
    assert sigma68((mean - truth) / naive) > 1.8
    # an invalid exposure is left out, a source without any is NaN
    flux[0, 0] = np.nan
    mean, total = coadd_with_floor(flux[:2], per_exposure[:2], err[:2], valid=np.array([[True] * m, [False] * m]))
    assert np.isfinite(mean[0]) and np.isnan(mean[1]) and np.isnan(total[1])


def test_statistical_error_prefers_the_error_before_the_floor():
    frame = apply_error_floor(_classical([1000.0, 10.0], [10.0, 2.0]), 0.05)
    np.testing.assert_array_equal(statistical_error(frame), [10.0, 2.0])
    np.testing.assert_array_equal(statistical_error(_classical([1.0], [3.0])), [3.0])


def test_lumos_coadds_take_the_larger_of_the_floor_and_the_recorded_term():
    table = pd.DataFrame({"shared_rho": [0.2, 0.2, np.nan], "floor_rho": [0.1, 0.5, 0.3]})
    np.testing.assert_allclose(coadd_rho(table, np.zeros(3)), [0.2, 0.5, 0.3])
    np.testing.assert_allclose(coadd_rho(table.drop(columns="shared_rho"), np.zeros(3)), [0.1, 0.5, 0.3])


def test_survey_files_carry_the_floor(tmp_path):
    from lumos_ops.survey import Survey, load_survey, paus_survey

    assert paus_survey().flux_error_floor == DEFAULT_FLUX_ERROR_FLOOR
    values = {"name": "s", "bands": [{"name": "g", "wavelength_nm": 477.0}]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(values))
    assert load_survey(path).flux_error_floor == DEFAULT_FLUX_ERROR_FLOOR
    path.write_text(json.dumps({**values, "flux_error_floor": 0.0}))
    survey = load_survey(path)
    assert survey.flux_error_floor == 0.0
    assert Survey.from_dict(survey.to_dict()).flux_error_floor == 0.0
    path.write_text(json.dumps({**values, "flux_error_floor": 1.5}))
    with pytest.raises(BadInputError, match=r"s\.json.*flux_error_floor"):
        load_survey(path)
    assert paus_survey().neighbour_error_floor == DEFAULT_NEIGHBOUR_ERROR_FLOOR == survey.neighbour_error_floor
    path.write_text(json.dumps({**values, "neighbour_error_floor": 0.03}))
    assert Survey.from_dict(load_survey(path).to_dict()).neighbour_error_floor == 0.03
    path.write_text(json.dumps({**values, "neighbour_error_floor": -0.1}))
    with pytest.raises(BadInputError, match=r"s\.json.*neighbour_error_floor"):
        load_survey(path)
    # a method's own floor: read, written back, the others keep flux_error_floor
    path.write_text(json.dumps({**values, "flux_error_floor": 0.003, "method_error_floors": {"optimal": 0.02}}))
    own = Survey.from_dict(load_survey(path).to_dict())
    assert own.method_error_floors == {"optimal": 0.02}
    assert own.error_floor_for("optimal") == 0.02 and own.error_floor_for("lumos") == 0.003
    assert "method_error_floors" not in survey.to_dict()
    path.write_text(json.dumps({**values, "method_error_floors": {"optimal": 1.2}}))
    with pytest.raises(BadInputError, match=r"s\.json: method_error_floors\['optimal'\]=1\.2 must be"):
        load_survey(path)
    # a method's own neighbour floor: read, written back, the others keep neighbour_error_floor
    path.write_text(json.dumps({**values, "neighbour_error_floor": 0.04, "method_neighbour_error_floors": {"lumos": 0.02}}))
    own = Survey.from_dict(load_survey(path).to_dict())
    assert own.method_neighbour_error_floors == {"lumos": 0.02}
    assert own.neighbour_error_floor_for("lumos") == 0.02 and own.neighbour_error_floor_for("optimal") == 0.04
    assert "method_neighbour_error_floors" not in survey.to_dict()
    path.write_text(json.dumps({**values, "method_neighbour_error_floors": {"lumos": -0.1}}))
    with pytest.raises(BadInputError, match=r"s\.json: method_neighbour_error_floors\['lumos'\]=-0\.1 must be"):
        load_survey(path)


def test_shared_error_bins_by_the_snr_before_the_floor():
    from lumos_ops.lumos.shared_error import estimate_shared_error

    rng = np.random.default_rng(5)
    rows = []
    # faint galaxies (SNR 60) share little of their error, bright ones (SNR 500) most of it
    for group, (truth, shared) in enumerate([(60.0, 0.3), (500.0, 5.0)]):
        for g in range(200):
            c = shared * rng.standard_normal()
            for frame in range(4):
                rows.append({"galaxy": f"{group}:{g}", "frame": frame, "truth": truth,
                             "flux": truth + c + rng.standard_normal(), "stat": 1.0})
    table = pd.DataFrame(rows)
    table["flux_err"] = np.hypot(table["stat"], 0.011 * table["flux"])  # the floor caps both near SNR 50-90
    args = (table["flux"], table["flux_err"], table["truth"], table["galaxy"])
    capped = estimate_shared_error(*args, frame=table["frame"])
    assert capped.rho_at(np.array([60.0]))[0] == capped.rho_at(np.array([500.0]))[0]
    split = estimate_shared_error(*args, frame=table["frame"], snr_err=table["stat"])
    assert split.rho_at(np.array([60.0]))[0] < 0.3 and split.rho_at(np.array([500.0]))[0] > 0.8


def test_the_floor_error_is_its_spread_between_independent_injections():
    rng = np.random.default_rng(4)

    def injection(n_gal):
        galaxy = np.repeat(np.arange(n_gal), 5)
        true = np.exp(rng.uniform(np.log(1e3), np.log(1e4), n_gal))[galaxy]
        flux = true * (1.0 + 0.01 * rng.standard_normal(galaxy.size) + 0.02 * rng.standard_normal(galaxy.size))
        return flux, 0.01 * true, true, galaxy

    floors = [estimate_error_floor(*injection(80)[:3]).floor for _ in range(40)]
    flux, err, true, galaxy = injection(80)
    found = estimate_error_floor(flux, err, true, groups=galaxy)
    assert found.floor_err == pytest.approx(np.std(floors), rel=0.35)
    assert estimate_error_floor(flux, err, true, groups=galaxy) == found  # seeded
    assert np.isnan(estimate_error_floor(flux, err, true).floor_err)  # without galaxies, not computed
    assert np.isnan(estimate_error_floor(flux[:20], err[:20], true[:20], groups=galaxy[:20]).floor_err)
