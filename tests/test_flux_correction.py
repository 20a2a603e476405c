"""The per-exposure flux correction of the PSF model (lumos_ops.flux_correction): galaxies drawn with
the exposure's own stars' PSF, injected into its blank sky, give the factor that the catalogue
targets' fluxes are divided by."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lumos_ops.bench.synthetic import SyntheticExposure
from lumos_ops.exceptions import LumosValueError
from lumos_ops.flux_correction import FluxCorrection, apply_flux_correction, fit_correction, measure_flux_corrections
from lumos_ops.io.catalog import target_pixels
from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.mixture import mixture_quantile
from lumos_ops.lumos.mixture_table import Mixtures, mixture_columns, mixtures_from_table
from lumos_ops.measure import get_method, measure_exposure

from starframes import grid_catalog

galsim = pytest.importorskip("galsim")

SHAPE = (900, 900)
EXPTIME = 100.0
GAIN = 2.0
SKY = 5.0  # e-/s per pixel
FWHM_ARCSEC = 0.9  # 3.4 px at PAUS's 0.263 arcsec
SCALE = 0.263


def _psf(beta: float):
    """The frame's true effective PSF (pixel response included): a Moffat of ``beta``."""
    return galsim.Convolve(galsim.Moffat(beta=beta, fwhm=FWHM_ARCSEC / SCALE), galsim.Pixel(1.0))


def _frame(tmp_path: Path, beta: float, seed: int = 0, n_stars: int = 36, draw_targets: bool = True):
    """Catalogue galaxies (Sérsic, true SNR ~ 60-200) and bright stars, all drawn with a Moffat PSF of
    ``beta``, on a sky with Poisson noise; the header gives the FWHM and the measurement's beta 3.5."""
    rng = np.random.default_rng(seed)
    catalog = grid_catalog(rng, SHAPE, margin=75, step=150, seed=seed)
    flux = rng.uniform(300.0, 900.0, len(catalog))
    psf = _psf(beta)
    light = np.zeros(SHAPE)

    def add(profile, x: float, y: float) -> None:
        stamp = profile.drawImage(nx=61, ny=61, scale=1.0, offset=(x - round(x), y - round(y)), method="no_pixel").array
        x0, y0 = int(round(x)) - 30, int(round(y)) - 30
        light[y0 : y0 + 61, x0 : x0 + 61] += stamp

    for row, f in zip(catalog.itertuples() if draw_targets else [], flux):
        galaxy = galsim.Sersic(n=row.sersic_n, half_light_radius=row.r50 / SCALE, flux=f)
        add(galsim.Convolve(galaxy.shear(q=row.q, beta=row.pa * galsim.degrees), psf), row.x, row.y)
    star_grid = np.arange(75, SHAPE[0] - 75, 150, dtype=np.float64)[:-1] + 75.0
    sx, sy = (g.ravel()[:n_stars] for g in np.meshgrid(star_grid, star_grid))
    sx, sy = sx + rng.uniform(-0.5, 0.5, sx.size), sy + rng.uniform(-0.5, 0.5, sy.size)
    catalog.attrs["stars"] = (sx.tolist(), sy.tolist())
    for x, y in zip(sx, sy):
        add(psf.withFlux(float(rng.uniform(3e3, 2e4))), x, y)
    image = (rng.poisson((light + SKY) * EXPTIME) / EXPTIME).astype(np.float64)
    header = {"EXPTIME": EXPTIME, "FILTER": "NB685", "PSFFWHM": FWHM_ARCSEC, "PSFBETA": 3.5, "GAIN": GAIN}
    path = SyntheticExposure(adu=(image * EXPTIME / GAIN).astype(np.float32), header=header, flux=flux).write(
        tmp_path / f"beta{beta}-{n_stars}-{int(draw_targets)}.fits")
    return read_exposure(path), catalog, flux


def _ratio_of(rows: pd.DataFrame, flux: np.ndarray) -> float:
    return float(np.median(rows["flux"].to_numpy() / flux))


@pytest.mark.slow
def test_the_correction_is_the_offset_the_targets_show_and_takes_it_out(tmp_path):
    exposure, catalog, flux = _frame(tmp_path, beta=2.5)
    plain = measure_exposure(exposure, catalog, methods=("optimal", "aperture"), calibrate_errors=False,
                             flux_correction=False)
    corrected = measure_exposure(exposure, catalog, methods=("optimal", "aperture"), calibrate_errors=False,
                                 flux_correction=True)
    for method in ("optimal", "aperture"):
        before = _ratio_of(plain[plain["method"] == method], flux)
        rows = corrected[corrected["method"] == method]
        factors = rows["flux_correction"].to_numpy()
        factor = float(np.median(factors))
        # the Moffat of beta 3.5 misreads galaxies of a beta 2.5 PSF by a few per cent ...
        assert abs(before - 1.0) > 0.02, (method, before)
        # ... which galaxies drawn with the stars' PSF at blank positions measure, and which is taken out
        # (to the noise of a median of 25 targets at SNR 100-300 and of the correction's 150 galaxies)
        assert factor == pytest.approx(before, abs=0.015), (method, factor, before)
        assert abs(_ratio_of(rows, flux) - 1.0) < 0.015, method
        assert np.allclose(rows["flux_err"].to_numpy() * factors,
                           plain[plain["method"] == method]["flux_err"].to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_a_psf_model_that_is_right_gets_no_correction_and_few_stars_none(tmp_path, caplog):
    exposure, catalog, _ = _frame(tmp_path, beta=3.5, seed=1)
    x, y = target_pixels(catalog, exposure.wcs)
    methods = {"optimal": get_method("optimal")}
    correction = measure_flux_corrections(exposure, catalog, x, y, methods)["optimal"]
    assert correction.n_galaxies >= 100 and correction.star_psf
    assert abs(correction.ratio - 1.0) < 0.01 and abs(correction.factor - 1.0) < 0.01
    # the same galaxies drawn with the model's own PSF instead of the stars' read the same
    again = measure_flux_corrections(exposure, catalog, x, y, methods, psf=_psf(3.5))["optimal"]
    assert again.ratio == pytest.approx(correction.ratio, abs=0.01)

    starless, catalog, _ = _frame(tmp_path, beta=2.5, seed=2, n_stars=3, draw_targets=False)
    x, y = target_pixels(catalog, starless.wcs)
    with caplog.at_level(logging.WARNING):
        none = measure_flux_corrections(starless, catalog, x, y, methods)["optimal"]
    assert none.factor == 1.0 and not none.star_psf and none.n_galaxies == 0
    assert "too few stars" in caplog.text and "beta2.5-3-0.fits" in caplog.text


@pytest.mark.slow
def test_catalogued_galaxies_are_not_stars_and_a_wrong_psf_is_refused(tmp_path, caplog):
    """Three stars among 36 compact galaxies: without the catalogue the stellar locus is the galaxies,
    whose stack is no PSF; the catalogue's targets are left out of it, and a PSF that misreads the
    galaxies by more than a PSF model can is refused."""
    from lumos_ops.evaluation.star_psf import star_psf

    exposure, catalog, flux = _frame(tmp_path, beta=2.5, seed=2, n_stars=3)
    x, y = target_pixels(catalog, exposure.wcs)
    assert star_psf(exposure.data).n_stars >= 10  # galaxies, taken for stars
    with pytest.raises(LumosValueError, match="fewer than the 10"):
        star_psf(exposure.data, exclude=(x, y))
    with caplog.at_level(logging.WARNING):
        rows = measure_exposure(exposure, catalog, methods=("optimal",), calibrate_errors=False, flux_correction=True)
    # no star PSF: the targets' aperture correction is applied instead (the survey's default)
    assert "flux_correction" not in rows and "aperture_correction" in rows and "too few stars" in caplog.text
    caplog.clear()
    wide = galsim.Convolve(galsim.Moffat(beta=2.5, fwhm=3 * FWHM_ARCSEC / SCALE), galsim.Pixel(1.0))
    with caplog.at_level(logging.WARNING):
        refused = measure_flux_corrections(exposure, catalog, x, y, {"optimal": get_method("optimal")}, psf=wide)
    assert refused["optimal"].ratio < 0.9 and refused["optimal"].factor == 1.0
    assert "the stars' PSF is taken to be wrong" in caplog.text and "beta2.5-3-1.fits" in caplog.text


def test_applying_divides_every_flux_and_the_whole_likelihood():
    rng = np.random.default_rng(0)
    n = 50
    mix = Mixtures(alpha=rng.dirichlet(np.ones(3), n), mu=rng.uniform(50, 150, (n, 3)), sigma=rng.uniform(2, 20, (n, 3)),
                   truncated=np.zeros(n, dtype=bool))
    q = mixture_quantile([0.16, 0.5, 0.84], *mix.args)
    frame = pd.DataFrame({"flux": q[:, 1], "flux_err": 0.5 * (q[:, 2] - q[:, 0]), "median": q[:, 1],
                          "sigma68": 0.5 * (q[:, 2] - q[:, 0]), "eta": 0.1, "flag": 0, **mixture_columns(mix)})
    out = apply_flux_correction(frame, FluxCorrection("lumos", 1.04, 0.002, 120, True))
    after = mixture_quantile([0.16, 0.5, 0.84], *mixtures_from_table(out).args)
    assert np.allclose(after, q / 1.04, rtol=1e-6)
    for column in ("flux", "flux_err", "median", "sigma68"):
        assert np.allclose(out[column], frame[column] / 1.04)
    assert np.allclose(out["eta"], frame["eta"]) and (out["flux_correction"] == 1.04).all()
    assert np.allclose(mixtures_from_table(out).alpha, mix.alpha)
    same = apply_flux_correction(frame, FluxCorrection("lumos", 1.004, 0.003, 120, False))
    assert same["flux"].equals(frame["flux"]) and (same["flux_correction"] == 1.0).all()
    with pytest.raises(LumosValueError, match="finite and > 0"):
        apply_flux_correction(frame, 0.0)


def test_a_fitted_neighbours_light_is_given_back_at_the_corrected_flux():
    """A joint fit took ``c`` of its neighbours' light out in the uncorrected unit, ``k`` times their
    light in the corrected one: ``(1 - 1/k) c`` goes back to every point of the flux axis, the widths
    are only divided, and a row without neighbours is divided alone."""
    rng = np.random.default_rng(2)
    n, k = 40, 1.05
    mix = Mixtures(alpha=rng.dirichlet(np.ones(3), n), mu=rng.uniform(50, 150, (n, 3)), sigma=rng.uniform(2, 20, (n, 3)),
                   truncated=np.zeros(n, dtype=bool))
    q = mixture_quantile([0.16, 0.5, 0.84], *mix.args)
    light = np.where(np.arange(n) % 2 == 0, rng.uniform(10, 200, n), np.nan)
    frame = pd.DataFrame({"flux": q[:, 1], "flux_err": 0.5 * (q[:, 2] - q[:, 0]), "median": q[:, 1], "q16": q[:, 0],
                          "sigma68": 0.5 * (q[:, 2] - q[:, 0]), "flag": 0, "neighbour_light": light,
                          **mixture_columns(mix)})
    out = apply_flux_correction(frame, k, neighbour_light=light, column="aperture_correction")
    back = (1.0 - 1.0 / k) * np.nan_to_num(light)
    for column in ("flux", "median", "q16"):
        assert np.allclose(out[column], (frame[column] + back) / k)
    for column in ("flux_err", "sigma68", "neighbour_light"):
        assert np.allclose(out[column], frame[column] / k, equal_nan=True)
    after = mixtures_from_table(out)
    assert np.allclose(after.mu, (mix.mu + back[:, None]) / k) and np.allclose(after.sigma, mix.sigma / k)
    assert np.allclose(mixture_quantile([0.5], *after.args)[:, 0], (q[:, 1] + back) / k, rtol=1e-6)
    alone = out.iloc[1::2]
    assert np.allclose(alone["flux"], frame["flux"].iloc[1::2] / k)
    with pytest.raises(LumosValueError, match="neighbour lights"):
        apply_flux_correction(frame, k, neighbour_light=light[:3])


def test_a_correction_is_applied_only_when_measured_and_significant():
    rng = np.random.default_rng(1)
    assert fit_correction("optimal", rng.normal(1.03, 0.015, 120), min_galaxies=30, seed=0).reliable
    assert not fit_correction("optimal", rng.normal(1.03, 0.015, 20), min_galaxies=30, seed=0).reliable
    flat = fit_correction("optimal", rng.normal(1.0005, 0.015, 120), min_galaxies=30, seed=0)
    assert not flat.reliable and flat.factor == 1.0 and 0.0005 < flat.ratio_err < 0.005
    assert FluxCorrection.identity("aperture").factor == 1.0


@pytest.mark.slow
def test_stars_catalogued_as_point_sources_still_give_the_psf(tmp_path):
    """A catalogue that lists the field's stars as targets: those whose r50 is unresolved on the
    exposure (at most a tenth of its FWHM) stay among the PSF's stars, and the correction they give is
    the one of the same frame with its stars left out of the catalogue; catalogued as resolved, they are
    left out and there is none."""
    from lumos_ops.flux_correction import POINT_SOURCE_FWHM_FRACTION, resolved_targets

    exposure, catalog, _ = _frame(tmp_path, beta=2.5, seed=3)
    sx, sy = catalog.attrs["stars"]
    methods = {"optimal": get_method("optimal")}
    x, y = target_pixels(catalog, exposure.wcs)
    alone = measure_flux_corrections(exposure, catalog, x, y, methods)["optimal"]
    point = POINT_SOURCE_FWHM_FRACTION * FWHM_ARCSEC
    for r50, kept in ((point, True), (3 * point, False)):
        stars = catalog.iloc[: len(sx)].copy()
        stars["ref_id"] = np.arange(len(sx)) + 10_000
        stars["x"], stars["y"], stars["r50"] = sx, sy, r50
        listed = pd.concat([catalog, stars], ignore_index=True)
        assert resolved_targets(listed, FWHM_ARCSEC).sum() == len(catalog) + (0 if kept else len(sx))
        lx, ly = target_pixels(listed, exposure.wcs)
        correction = measure_flux_corrections(exposure, listed, lx, ly, methods)["optimal"]
        if kept:
            assert correction.star_psf and correction.factor != 1.0
            assert correction.ratio == pytest.approx(alone.ratio, abs=0.01)
        else:
            assert not correction.star_psf and correction.factor == 1.0


def test_the_correction_follows_the_galaxies_size_where_the_size_matters():
    """Compact galaxies are mostly PSF and read the PSF model's error more: a slope in ln A that
    lies 2 bootstrap errors from 0 is kept, applied at each target's own area and never
    extrapolated; a slope within the noise is dropped."""
    rng = np.random.default_rng(4)
    log_area = np.log(rng.uniform(15.0, 250.0, 150))
    u = log_area - log_area.mean()
    sized = fit_correction("optimal", 0.98 + 0.006 * u + rng.normal(0.0, 0.008, 150), min_galaxies=30, seed=0,
                   log_area=log_area)
    assert sized.reliable and sized.slope == pytest.approx(0.006, abs=3 * sized.slope_err)
    assert sized.slope_err < 0.002 and sized.ratio == pytest.approx(0.98, abs=0.003)
    area = np.exp(log_area.mean() + np.array([-5.0, -0.5, 0.0, 0.5, 5.0, np.nan]))
    factor = sized.factor_at(area)
    assert factor[2] == pytest.approx(sized.ratio) and factor[5] == pytest.approx(sized.ratio)
    assert factor[3] - factor[1] == pytest.approx(sized.slope)
    assert factor[0] == pytest.approx(sized.ratio + sized.slope * u.min())  # clipped to the measured range
    assert factor[4] == pytest.approx(sized.ratio + sized.slope * u.max())

    flat = fit_correction("optimal", 0.98 + rng.normal(0.0, 0.008, 150), min_galaxies=30, seed=0, log_area=log_area)
    assert flat.reliable and flat.slope == 0.0 and np.isfinite(flat.slope_err)
    assert np.allclose(flat.factor_at(area), flat.ratio)
    # a slope alone is worth correcting, even where the galaxies read right on average
    tilted = fit_correction("optimal", 1.0 + 0.006 * u + rng.normal(0.0, 0.008, 150), min_galaxies=30, seed=0,
                    log_area=log_area)
    assert tilted.reliable and tilted.slope > 0.0 and abs(tilted.ratio - 1.0) < 0.003

    frame = pd.DataFrame({"flux": [100.0, 100.0], "flux_err": [10.0, 10.0], "flag": 0})
    out = apply_flux_correction(frame, sized, area=area[[1, 3]])
    assert np.allclose(out["flux"], 100.0 / factor[[1, 3]]) and np.allclose(out["flux_correction"], factor[[1, 3]])
    with pytest.raises(LumosValueError, match="3 areas for 2 rows"):
        apply_flux_correction(frame, sized, area=area[:3])


@pytest.mark.slow
def test_compact_and_extended_targets_are_both_corrected(tmp_path):
    """Galaxies of a beta 2.5 PSF read through a beta 3.5 Moffat: the compact ones, mostly PSF, read
    lower than the extended ones, and the size-dependent factor takes both to their flux."""
    exposure, catalog, flux = _frame(tmp_path, beta=2.5, seed=0)
    kwargs = {"methods": ("optimal",), "calibrate_errors": False}
    before = measure_exposure(exposure, catalog, flux_correction=False, **kwargs)["flux"].to_numpy() / flux
    rows = measure_exposure(exposure, catalog, flux_correction=True, **kwargs)
    after = rows["flux"].to_numpy() / flux
    factor = rows["flux_correction"].to_numpy()
    x, y = target_pixels(catalog, exposure.wcs)
    correction = measure_flux_corrections(exposure, catalog, x, y, {"optimal": get_method("optimal")})["optimal"]
    assert correction.slope > 2.0 * correction.slope_err > 0.0
    compact, _, extended = np.array_split(np.argsort(factor), 3)
    assert np.median(before[extended]) - np.median(before[compact]) > 0.008
    assert abs(np.median(after[extended]) - np.median(after[compact])) < 0.007
    assert abs(np.median(after) - 1.0) < 0.005
