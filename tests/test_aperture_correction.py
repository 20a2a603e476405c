"""The per-exposure aperture correction from the targets (lumos_ops.aperture_correction): every method's
fluxes put on the scale of the bright isolated targets' apertures that hold 98 % of their model light."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lumos_ops.aperture_correction import MIN_CALIBRATORS, calibrators, measure_aperture_corrections, reference_fluxes
from lumos_ops.bench.synthetic import SyntheticExposure
from lumos_ops.exceptions import BadInputError, LumosValueError
from lumos_ops.io.exposure import read_exposure
from lumos_ops.measure import measure_exposure, prepare_targets
from lumos_ops.survey import Survey, paus_survey

from starframes import grid_catalog

galsim = pytest.importorskip("galsim")

SHAPE = (1200, 1200)
EXPTIME = 100.0
SKY = 5.0  # e-/s per pixel
FWHM_ARCSEC = 0.9  # 3.4 px at PAUS's 0.263 arcsec
SCALE = 0.263


def _frame(tmp_path: Path, psf, name: str, seed: int = 0, step: int = 140):
    """Catalogue galaxies (Sérsic, SNR ~ 50-300) drawn with ``psf`` (FWHM 0.9 arcsec) on a sky with
    Poisson noise, one every ``step`` px; the header gives the FWHM and the measurement's beta 3.5."""
    rng = np.random.default_rng(seed)
    catalog = grid_catalog(rng, SHAPE, margin=80, step=step, seed=seed)
    flux = rng.uniform(150.0, 900.0, len(catalog))
    return _draw(tmp_path / f"{name}.fits", catalog, flux, psf, rng), catalog, flux


def _draw(path: Path, catalog: pd.DataFrame, flux: np.ndarray, psf, rng: np.random.Generator,
          exptime: float = EXPTIME):
    """``catalog``'s Sérsic galaxies of ``flux`` (e-/s) drawn with ``psf`` on the sky with Poisson noise
    at ``exptime`` (s), written to ``path`` with the FWHM and the measurement's beta 3.5: the exposure."""
    light = np.zeros(SHAPE)
    for row, f in zip(catalog.itertuples(), flux):
        galaxy = galsim.Sersic(n=row.sersic_n, half_light_radius=row.r50 / SCALE, flux=f)
        profile = galsim.Convolve(galaxy.shear(q=row.q, beta=row.pa * galsim.degrees), psf)
        stamp = profile.drawImage(nx=81, ny=81, scale=1.0, offset=(row.x - round(row.x), row.y - round(row.y))).array
        x0, y0 = int(round(row.x)) - 40, int(round(row.y)) - 40
        light[y0 : y0 + 81, x0 : x0 + 81] += stamp
    image = (rng.poisson((light + SKY) * exptime) / exptime).astype(np.float64)
    header = {"EXPTIME": exptime, "FILTER": "NB685", "PSFFWHM": FWHM_ARCSEC, "PSFBETA": 3.5, "GAIN": 1.0}
    return read_exposure(SyntheticExposure(adu=(image * exptime).astype(np.float32), header=header,
                                           flux=flux).write(path))


def _ratio(rows: pd.DataFrame, flux: np.ndarray) -> float:
    return float(np.median(rows["flux"].to_numpy() / flux))


@pytest.mark.parametrize("psf_name", ["gaussian", "moffat 2.5"])
def test_the_targets_large_apertures_take_out_a_wrong_psf_profile(tmp_path, psf_name):
    """Galaxies whose PSF has another profile than the measurement's Moffat of beta 3.5 at the same
    FWHM read 7-11 % off through it; on the scale of their own large apertures they read within 3 %."""
    fwhm = FWHM_ARCSEC / SCALE
    psf = galsim.Gaussian(fwhm=fwhm) if psf_name == "gaussian" else galsim.Moffat(beta=2.5, fwhm=fwhm)
    exposure, catalog, flux = _frame(tmp_path, psf, psf_name.replace(" ", ""))
    methods = ("optimal", "aperture")
    plain = measure_exposure(exposure, catalog, methods=methods, aperture_correction=False)
    corrected = measure_exposure(exposure, catalog, methods=methods, aperture_correction=True)
    assert "aperture_correction" not in plain
    for method in methods:
        before = _ratio(plain[plain["method"] == method], flux)
        rows = corrected[corrected["method"] == method]
        assert abs(before - 1.0) > 0.04, (method, before)
        after = _ratio(rows, flux)
        # within 3 %, and at most half the error: a Moffat of beta 2.5 puts 4-6 % of a compact
        # galaxy's light beyond the aperture that holds 98 % of the beta 3.5 model's (1.09 -> 1.02 and
        # 1.11 -> 1.01 for the Gaussian, 0.93 -> 0.97 for beta 2.5)
        assert abs(after - 1.0) < 0.03 and abs(after - 1.0) < 0.5 * abs(before - 1.0), (method, after, before)
        factors = rows["aperture_correction"].to_numpy()
        assert np.all(factors != 1.0)
        # a change of flux unit: the errors scale with the fluxes, before and after the floor
        old = plain[plain["method"] == method]
        for column in ("flux_err", "flux_err_stat"):
            np.testing.assert_allclose(rows[column].to_numpy() * factors, old[column].to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(rows["floor_rho"].to_numpy(), old["floor_rho"].to_numpy(), rtol=1e-9)
    # the same correction from the recorded columns: what pools several exposures of one PSF
    from lumos_ops.aperture_correction import CALIBRATION_COLUMNS, correct_pooled

    columns = measure_exposure(exposure, catalog, methods=methods, aperture_correction="columns")
    assert set(CALIBRATION_COLUMNS) <= set(columns) and "aperture_correction" not in columns
    np.testing.assert_allclose(columns["flux"].to_numpy(), plain["flux"].to_numpy())
    pooled = correct_pooled(columns.assign(exposure="one"), "exposure")
    np.testing.assert_allclose(pooled["flux"].to_numpy(), corrected["flux"].to_numpy(), rtol=1e-9)
    with pytest.raises(LumosValueError, match="aperture_correction='maybe'"):
        measure_exposure(exposure, catalog, methods=methods, aperture_correction="maybe")


def test_without_stars_for_the_psf_flux_correction_the_aperture_correction_applies(tmp_path):
    """A survey that asks for the star-PSF flux correction, on a frame with too few stars for it: the
    targets' aperture correction is applied instead of none (an SDSS frame read 7 % high)."""
    psf = galsim.Gaussian(fwhm=FWHM_ARCSEC / SCALE)
    exposure, catalog, flux = _frame(tmp_path, psf, "nostars")
    both = measure_exposure(exposure, catalog, methods=("optimal",), flux_correction=True, aperture_correction=True)
    corrected = measure_exposure(exposure, catalog, methods=("optimal",), aperture_correction=True)
    assert "aperture_correction" in both
    np.testing.assert_allclose(both["flux"].to_numpy(), corrected["flux"].to_numpy(), rtol=1e-9)
    assert abs(_ratio(both, flux) - 1.0) < 0.03


def test_a_right_psf_model_gets_no_correction_beyond_the_noise(tmp_path):
    exposure, catalog, flux = _frame(tmp_path, galsim.Moffat(beta=3.5, fwhm=FWHM_ARCSEC / SCALE), "right", seed=1)
    ctx = prepare_targets(exposure, catalog)
    plain = measure_exposure(exposure, catalog, methods=("optimal",), aperture_correction=False)
    corrections = measure_aperture_corrections(ctx, {"optimal": plain.reset_index(drop=True)})
    correction = corrections["optimal"]
    assert correction.n_galaxies >= MIN_CALIBRATORS and not correction.star_psf
    assert abs(correction.ratio - 1.0) < 0.01 and abs(correction.factor - 1.0) < 0.01
    # too few calibrators: nothing is corrected
    few = measure_aperture_corrections(ctx, {"optimal": plain.reset_index(drop=True)}, min_calibrators=10_000)
    assert few["optimal"].factor == 1.0 and not few["optimal"].reliable


def test_calibrators_are_bright_isolated_and_unflagged(tmp_path):
    exposure, catalog, _ = _frame(tmp_path, galsim.Moffat(beta=3.5, fwhm=FWHM_ARCSEC / SCALE), "cal", seed=2)
    ctx = prepare_targets(exposure, catalog)
    reference = reference_fluxes(ctx)
    assert len(reference) == ctx.n and np.all(reference["aperture_light"] > 0.9)
    rows = measure_exposure(exposure, catalog, methods=("optimal",), aperture_correction=False).reset_index(drop=True)
    use = calibrators(ctx, reference, rows)
    assert use.sum() >= 0.8 * ctx.n
    faint = rows.assign(flux_err_stat=rows["flux"] / 10.0)  # SNR 10 before the floor
    assert not calibrators(ctx, reference, faint).any()
    flagged = rows.assign(flag=rows["flag"] | 4)  # MASKED
    assert not calibrators(ctx, reference, flagged).any()
    wide = reference.assign(aperture_a=40.0)  # the aperture would reach the background annulus
    assert not calibrators(ctx, wide, rows).any()


def test_only_targets_that_may_calibrate_get_a_reference_aperture(tmp_path):
    """The large apertures are measured on the isolated targets the matched filter reads at SNR of at
    least half a calibrator's; faint ones get NaN, and no calibrator is lost."""
    from lumos_ops.aperture_correction import MIN_CALIBRATOR_SNR, REFERENCE_SNR_SHARE
    from lumos_ops.photometry.aperture import elliptical_aperture_photometry

    rng = np.random.default_rng(5)
    catalog = grid_catalog(rng, SHAPE, margin=80, step=140, seed=5)
    flux = np.where(np.arange(len(catalog)) % 2 == 0, rng.uniform(150.0, 900.0, len(catalog)),
                    rng.uniform(2.0, 8.0, len(catalog)))
    exposure = _draw(tmp_path / "faint.fits", catalog, flux, galsim.Moffat(beta=3.5, fwhm=FWHM_ARCSEC / SCALE), rng)
    ctx = prepare_targets(exposure, catalog)
    reference = reference_fluxes(ctx)
    snr = reference["matched_flux"] / reference["matched_flux_err"]
    measured = np.isfinite(reference["flux"].to_numpy())
    np.testing.assert_array_equal(measured, (snr >= REFERENCE_SNR_SHARE * MIN_CALIBRATOR_SNR).to_numpy())
    assert 0 < measured.sum() < ctx.n
    # the candidates' apertures are those of every target's
    full = elliptical_aperture_photometry(ctx.photometry_inputs, light_fraction=0.98)
    np.testing.assert_allclose(reference["flux"].to_numpy()[measured], full["flux"].to_numpy()[measured], rtol=1e-12)
    rows = measure_exposure(exposure, catalog, methods=("aperture", "optimal"), aperture_correction=False)
    for method in ("aperture", "optimal"):
        result = rows[rows["method"] == method].reset_index(drop=True)
        whole = reference.assign(**{c: full[c].to_numpy() for c in full.columns if c != "flag"})
        use = calibrators(ctx, reference, result)
        assert use.sum() >= 0.8 * (flux >= 150.0).sum()
        np.testing.assert_array_equal(use, calibrators(ctx, whole, result))


def test_the_survey_file_carries_the_switch(tmp_path):
    survey = dataclasses.replace(paus_survey(), aperture_correction=False)
    assert Survey.from_dict(survey.to_dict()).aperture_correction is False
    assert "aperture_correction" not in paus_survey().to_dict() and paus_survey().aperture_correction
    with pytest.raises(BadInputError, match="aperture_correction='yes' must be true or false"):
        Survey.from_dict({**paus_survey().to_dict(), "aperture_correction": "yes"})


def test_lumos_goes_through_the_matched_filters_factor_and_its_whole_likelihood_scales(tmp_path):
    """LUMOS's factor is the matched filter's (the optimal sum's on the same rows) times one number,
    LUMOS's median flux over the matched filter's: with a Gaussian PSF, far from its training, LUMOS
    reads the galaxies higher than the matched filter does. Its likelihood is divided whole: every
    component's mean and width, every summary."""
    from lumos_ops.lumos.mixture_table import mixtures_from_table

    exposure, catalog, flux = _frame(tmp_path, galsim.Gaussian(fwhm=FWHM_ARCSEC / SCALE), "lumos", seed=3)
    methods = ("optimal", "lumos")
    plain = measure_exposure(exposure, catalog, methods=methods, aperture_correction=False)
    corrected = measure_exposure(exposure, catalog, methods=methods, aperture_correction=True)
    factor = {m: corrected[corrected["method"] == m]["aperture_correction"].to_numpy() for m in methods}
    relative = factor["lumos"] / factor["optimal"]
    np.testing.assert_allclose(relative, relative[0])
    assert np.all(factor["lumos"] > 1.03)
    old, new = plain[plain["method"] == "lumos"], corrected[corrected["method"] == "lumos"]
    for column in ("flux", "flux_err", "median", "sigma68"):
        np.testing.assert_allclose(new[column].to_numpy() * factor["lumos"], old[column].to_numpy(), rtol=1e-6)
    before, after = mixtures_from_table(old), mixtures_from_table(new)
    np.testing.assert_allclose(after.mu * factor["lumos"][:, None], before.mu, rtol=1e-6)
    np.testing.assert_allclose(after.sigma * factor["lumos"][:, None], before.sigma, rtol=1e-6)
    assert abs(float(np.median(new["flux"].to_numpy() / flux)) - 1.0) < 0.03


def _calibration_rows(ratio: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Rows of one model-weighted method whose matched filter reads ``ratio`` of the reference, every
    one a calibrator at SNR 100-300."""
    rng = np.random.default_rng(seed)
    flux = rng.uniform(300.0, 900.0, ratio.size)
    err = flux / rng.uniform(100.0, 300.0, ratio.size)
    return pd.DataFrame({"flux": flux, "flux_err": err, "flux_err_stat": err, "flag": 0,
                         "reference_flux": flux / ratio, "reference_flux_err": 2.7 * err, "matched_flux": flux,
                         "matched_flux_err": err, "aperture_calibrator": True})


def test_a_reference_that_caught_another_sources_light_does_not_set_the_factor():
    """Forty calibrators read 1.05 of their references; one reference aperture also holds a star (20
    times the galaxy's flux). The ratio's weight scales with the estimator's flux, not the
    reference's: the star's calibrator counts as one of 41, and the factor stays 1.05."""
    rng = np.random.default_rng(3)
    ratio = 1.05 + 0.01 * rng.standard_normal(41)
    ratio[7] = 0.05
    from lumos_ops.aperture_correction import fit_aperture_corrections

    corrections = fit_aperture_corrections({"optimal": _calibration_rows(ratio)}, label="test")
    assert corrections["optimal"].reliable
    assert corrections["optimal"].ratio == pytest.approx(1.05, abs=0.005)


def test_pooled_rows_are_corrected_per_group_and_keep_their_order():
    """``correct_pooled``: each frame's rows get their own fit (two frames, 1.04 and 0.97), the
    table's rows stay in order, the internal columns go; a table measured without the columns is
    refused with the option that records them."""
    from lumos_ops.aperture_correction import correct_pooled
    from lumos_ops.exceptions import LumosValueError

    rng = np.random.default_rng(4)
    a = _calibration_rows(1.04 + 0.005 * rng.standard_normal(40), seed=1).assign(frame="a", method="optimal")
    b = _calibration_rows(0.97 + 0.005 * rng.standard_normal(40), seed=2).assign(frame="b", method="optimal")
    table = pd.concat([a, b]).sample(frac=1.0, random_state=5).reset_index(drop=True)
    out = correct_pooled(table, "frame")
    assert list(out["frame"]) == list(table["frame"])
    assert np.allclose(out["flux"] * out["aperture_correction"], table["flux"])
    factor = out.groupby("frame")["aperture_correction"].median()
    assert factor["a"] == pytest.approx(1.04, abs=0.005) and factor["b"] == pytest.approx(0.97, abs=0.005)
    assert "matched_flux" not in out and "aperture_calibrator" in out
    with pytest.raises(LumosValueError, match="aperture_correction='columns'"):
        correct_pooled(table.drop(columns=["reference_flux"]), "frame")


def _blended_frame(tmp_path: Path, psf, seed: int = 8, exptime: float = EXPTIME):
    """Galaxies on a grid 80 px apart (at the default ``exptime``, SNR ~ 50-300), a third of them given a catalogued
    neighbour 4-6 px away at 1-2 times their flux: the catalogue (targets then neighbours), every
    galaxy's flux and which rows are the blended targets."""
    rng = np.random.default_rng(seed)
    catalog = grid_catalog(rng, SHAPE, margin=80, step=80, seed=seed)
    blended = np.zeros(len(catalog), dtype=bool)
    blended[::3] = True
    angle = rng.uniform(0.0, 2.0 * np.pi, blended.sum())
    distance = rng.uniform(4.0, 6.0, blended.sum())
    neighbours = catalog[blended].copy()
    neighbours["x"] += distance * np.cos(angle)
    neighbours["y"] += distance * np.sin(angle)
    neighbours["ref_id"] = catalog["ref_id"].max() + 1 + np.arange(blended.sum())
    flux = rng.uniform(150.0, 900.0, len(catalog))
    catalog = pd.concat([catalog, neighbours], ignore_index=True)
    flux = np.concatenate([flux, flux[blended] * rng.uniform(1.0, 2.0, blended.sum())])
    exposure = _draw(tmp_path / "blended.fits", catalog, flux, psf, rng, exptime)
    return exposure, catalog, flux, np.concatenate([blended, np.zeros(blended.sum(), dtype=bool)])


@pytest.mark.slow
def test_the_exposures_isolated_targets_measure_what_its_blends_keep_of_their_neighbours(tmp_path, monkeypatch):
    """Galaxies drawn with a Kolmogorov PSF, measured through the Moffat model of the same FWHM. The
    exposure's isolated targets measure the leak of a neighbour's light (``lumos_ops.photometry.crosstalk``)
    at -3.6 %, more than the factor's model ``-(1 - 1/k)`` (-2.2 %); each blended target gets
    ``-κ c`` of its neighbour light ``c`` back before the division by ``k``, and nothing else moves."""
    import lumos_ops.photometry.crosstalk as crosstalk

    exposure, catalog, flux, blended = _blended_frame(tmp_path, galsim.Kolmogorov(fwhm=FWHM_ARCSEC / SCALE))
    measured = measure_exposure(exposure, catalog, methods=("optimal",))
    assert np.isfinite(measured["neighbour_leak_err"]).all() and (measured["neighbour_leak_err"] < 0.003).all()
    kappa = float(measured["neighbour_leak"].iloc[0])
    k = measured["aperture_correction"].to_numpy()
    assert kappa < -(1.0 - 1.0 / k[0]) - 0.01  # -3.6 % against -2.2 %
    monkeypatch.setattr(crosstalk, "MAX_LEAK_ERR", -1.0)  # never reliable: the model
    modelled = measure_exposure(exposure, catalog, methods=("optimal",))
    assert np.isnan(modelled["neighbour_leak_err"]).all()
    np.testing.assert_allclose(modelled["neighbour_leak"], -(1.0 - 1.0 / k))
    np.testing.assert_allclose(modelled["aperture_correction"], k)
    # c is in the corrected unit: the leak moves a blended target by (κ_model - κ) c
    light = measured["neighbour_light"].to_numpy()
    assert (light[blended] > 0).all() and (light == 0).sum() > 30
    np.testing.assert_allclose(measured["flux"].to_numpy() - modelled["flux"].to_numpy(),
                               (-(1.0 - 1.0 / k) - kappa) * light, rtol=1e-6, atol=1e-9)
