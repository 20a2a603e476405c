"""Template-fitting photo-z: recovery on noiseless simulator fluxes, graceful degradation with noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.photoz.fit import RESULT_COLUMNS, PhotozConfig, fit_photoz
from lumos_ops.photoz.metrics import delta_z, photoz_metrics
from lumos_ops.photoz.prior import MagnitudePrior
from lumos_ops.photoz.templates import TemplateGrid
from lumos_ops.sim.seds import galaxy_band_fluxes
from lumos_ops.stats import sigma68


def _noisy(flux: np.ndarray, snr: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise with a per-source constant error giving ``snr`` at the median band flux."""
    err = np.repeat(np.median(flux, axis=1, keepdims=True) / snr, flux.shape[1], axis=1)
    return flux + err * np.random.default_rng(seed).normal(size=flux.shape), err


def test_noiseless_fluxes_recover_zspec(grid: TemplateGrid, galaxies: pd.DataFrame, true_fluxes: np.ndarray) -> None:
    result = fit_photoz(true_fluxes, 0.02 * true_fluxes, grid=grid)
    for estimate in (result.z_mode, result.z_mean, result.z_median):
        m = photoz_metrics(estimate, galaxies.zspec.to_numpy())
        assert m["sigma68"] < 0.01
        assert m["outlier_fraction"] < 0.03
    m = photoz_metrics(result.z_mode, galaxies.zspec.to_numpy())
    assert m["sigma68"] < 0.003 and abs(m["bias"]) < 0.001
    assert np.all(result.n_bands == 40)
    assert np.median(result.odds) > 0.95
    # The best template is close to the true type and reddening.
    assert np.median(np.abs(result.sed_type - galaxies.sed_type)) < 0.3
    np.testing.assert_allclose(np.median(result.i_fit - galaxies.i_auto), 0.0, atol=0.02)


def test_exact_grid_templates_give_the_grid_redshift(grid: TemplateGrid) -> None:
    """Sources generated on grid nodes have chi2 = 0 at the true node."""
    rng = np.random.default_rng(3)
    t, e, k = rng.integers(0, 13, 50), rng.integers(0, 11, 50), rng.integers(10, 300, 50)
    flux = galaxy_band_fluxes(i_auto=rng.uniform(18, 23, 50), z=grid.z[k], sed_type=grid.sed_type[t], ebv=grid.ebv[e])
    result = fit_photoz(flux, 0.01 * flux, grid=grid)
    np.testing.assert_allclose(result.z_best, grid.z[k], atol=1e-12)
    assert np.max(result.chi2) < 1e-6
    assert sigma68(delta_z(result.z_mode, grid.z[k])) < 0.002


def test_noise_degrades_gracefully_and_monotonically(grid: TemplateGrid, galaxies: pd.DataFrame, true_fluxes: np.ndarray) -> None:
    zspec = galaxies.zspec.to_numpy()
    rows = []
    for snr in (100.0, 30.0, 10.0, 3.0):
        flux, err = _noisy(true_fluxes, snr, seed=5)
        result = fit_photoz(flux, err, grid=grid)
        m = photoz_metrics(result.z_mode, zspec)
        rows.append((m["sigma68"], m["outlier_fraction"], np.median(result.z_sigma68), np.median(result.odds)))
    s68, outl, width, odds = (np.array(col) for col in zip(*rows))
    assert np.all(np.diff(s68) > 0), s68
    assert np.all(np.diff(outl) >= 0) and outl[-1] > outl[0], outl
    assert np.all(np.diff(width) > 0), width
    assert np.all(np.diff(odds) <= 0), odds
    assert s68[0] < 0.005 and s68[2] < 0.02 and outl[-1] < 0.95


def test_posterior_width_tracks_the_actual_scatter(grid: TemplateGrid, galaxies: pd.DataFrame, true_fluxes: np.ndarray) -> None:
    flux, err = _noisy(true_fluxes, 15.0, seed=9)
    result = fit_photoz(flux, err, grid=grid, return_pdf=True)
    assert result.pdf is not None and result.pdf.shape == (300, len(grid.z))
    np.testing.assert_allclose(result.pdf.sum(axis=1), 1.0, rtol=1e-12)
    inside = (galaxies.zspec >= result.z_q16) & (galaxies.zspec <= result.z_q84)
    assert 0.5 < inside.mean() < 0.9
    assert np.all(result.z_q16 <= result.z_median) and np.all(result.z_median <= result.z_q84)


def test_missing_bands_are_skipped(grid: TemplateGrid, galaxies: pd.DataFrame, true_fluxes: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    flux = true_fluxes.copy()
    flux[rng.uniform(size=flux.shape) < 0.4] = np.nan
    flux[0] = np.nan
    flux[1, 2:] = np.nan
    err = np.where(np.isfinite(flux), 0.02 * true_fluxes, np.nan)
    result = fit_photoz(flux, err, grid=grid)
    assert result.n_bands[0] == 0 and result.n_bands[1] == 2
    for name in RESULT_COLUMNS:
        if name not in ("n_bands", "n_clipped"):
            assert np.isnan(getattr(result, name)[:2]).all(), name
    m = photoz_metrics(result.z_mode[2:], galaxies.zspec.to_numpy()[2:])
    assert m["sigma68"] < 0.01 and m["n"] == 298


def test_band_subset_equals_nan_columns(grid: TemplateGrid, true_fluxes: np.ndarray) -> None:
    bands = ("NB455", "NB555", "NB655", "NB755", "NB845")
    index = [grid.bands.index(b) for b in bands]
    flux, err = _noisy(true_fluxes[:40], 10.0, seed=2)
    subset = fit_photoz(flux[:, index], err[:, index], grid=grid, bands=bands)
    masked = np.full_like(flux, np.nan)
    masked[:, index] = flux[:, index]
    full = fit_photoz(masked, np.where(np.isfinite(masked), err, np.nan), grid=grid)
    np.testing.assert_allclose(subset.z_mode, full.z_mode, rtol=1e-10)
    np.testing.assert_allclose(subset.chi2, full.chi2, rtol=1e-8, atol=1e-8)
    assert np.all(subset.n_bands == 5)


def test_chunking_does_not_change_results(grid: TemplateGrid, true_fluxes: np.ndarray) -> None:
    flux, err = _noisy(true_fluxes[:30], 8.0, seed=1)
    a = fit_photoz(flux, err, grid=grid, config=PhotozConfig(chunk_size=7))
    b = fit_photoz(flux, err, grid=grid)
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame())


def test_negative_fluxes_give_zero_amplitude(grid: TemplateGrid) -> None:
    flux = -np.ones((1, 40))
    result = fit_photoz(flux, np.ones((1, 40)), grid=grid)
    assert result.chi2[0] == pytest.approx(40.0)
    assert np.isnan(result.i_fit[0])
    assert np.isfinite(result.z_mode[0])


def test_prior_pulls_weak_data_towards_the_magnitude_expectation(grid: TemplateGrid, true_fluxes: np.ndarray) -> None:
    flux, err = _noisy(true_fluxes[:100], 0.5, seed=8)
    bright = fit_photoz(flux, err, grid=grid, prior=MagnitudePrior(), i_mag=np.full(100, 18.0))
    faint = fit_photoz(flux, err, grid=grid, prior=MagnitudePrior(), i_mag=np.full(100, 23.0))
    assert np.median(bright.z_mean) < 0.5 < np.median(faint.z_mean)
    fitted_i = fit_photoz(flux, err, grid=grid, prior=MagnitudePrior())
    assert np.all(np.isfinite(fitted_i.z_mode))


def test_prior_uses_the_fitted_i_where_the_given_magnitude_is_nan(grid: TemplateGrid, true_fluxes: np.ndarray) -> None:
    flux, err = _noisy(true_fluxes[:20], 2.0, seed=9)
    fitted_i = fit_photoz(flux, err, grid=grid, prior=MagnitudePrior())
    i_mag = np.full(20, 18.0)
    i_mag[::2] = np.nan
    mixed = fit_photoz(flux, err, grid=grid, prior=MagnitudePrior(), i_mag=i_mag)
    bright = fit_photoz(flux, err, grid=grid, prior=MagnitudePrior(), i_mag=np.full(20, 18.0))
    for name in ("z_mode", "z_mean", "z_sigma68", "odds"):
        np.testing.assert_allclose(getattr(mixed, name)[::2], getattr(fitted_i, name)[::2], rtol=1e-10)
        np.testing.assert_allclose(getattr(mixed, name)[1::2], getattr(bright, name)[1::2], rtol=1e-10)
    # The prior matters at this signal-to-noise: a faint prior would have moved these sources.
    assert np.all(np.abs(mixed.z_mean[::2] - bright.z_mean[::2]) > 1e-3)


def test_prior_pdf_is_normalised_and_shifts_with_magnitude() -> None:
    z = np.linspace(0.01, 2.0, 200)
    p = MagnitudePrior().pdf(z, np.array([18.0, 22.0, np.nan]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    means = p @ z
    assert means[0] < means[1] <= means[2]
    with pytest.raises(LumosValueError, match="alpha"):
        MagnitudePrior(alpha=0.0)


def test_to_frame_and_input_errors(grid: TemplateGrid, true_fluxes: np.ndarray) -> None:
    result = fit_photoz(true_fluxes[:3], 0.05 * true_fluxes[:3], grid=grid)
    frame = result.to_frame([7, 8, 9])
    assert list(frame.columns) == ["ref_id", *RESULT_COLUMNS]
    with pytest.raises(LumosValueError, match="ref_id"):
        result.to_frame([1, 2])
    err = 0.05 * true_fluxes[:3]
    err[1, 4] = 0.0
    with pytest.raises(LumosValueError, match=r"flux_err\[1, 4\]"):
        fit_photoz(true_fluxes[:3], err, grid=grid)
    with pytest.raises(LumosValueError, match="shape"):
        fit_photoz(true_fluxes[:3, :39], err[:, :39], grid=grid)
    with pytest.raises(LumosValueError, match="i_mag"):
        fit_photoz(true_fluxes[:3], 0.05 * true_fluxes[:3], grid=grid, i_mag=np.ones(2))
    with pytest.raises(LumosValueError, match="odds_window"):
        PhotozConfig(odds_window=0.0)


def test_clipping_rejects_a_flux_outlier(grid: TemplateGrid, galaxies: pd.DataFrame, true_fluxes: np.ndarray) -> None:
    flux, err = _noisy(true_fluxes[:100], 30.0, seed=6)
    band = np.random.default_rng(6).integers(0, 40, 100)
    flux[np.arange(100), band] += 40.0 * err[np.arange(100), band]  # one 40-sigma outlier per source
    zspec = galaxies.zspec.to_numpy()[:100]
    plain = fit_photoz(flux, err, grid=grid)
    clipped = fit_photoz(flux, err, grid=grid, config=PhotozConfig(clip_sigma=5.0))
    assert np.all(plain.n_clipped == 0) and np.all(plain.n_bands == 40)
    assert np.mean(clipped.n_clipped == 1) > 0.9 and np.all(clipped.n_bands + clipped.n_clipped == 40)
    before, after = photoz_metrics(plain.z_mode, zspec), photoz_metrics(clipped.z_mode, zspec)
    assert after["sigma68"] < 0.003 < before["sigma68"]
    assert after["outlier_fraction"] < before["outlier_fraction"]
    assert np.median(clipped.chi2) < 0.1 * np.median(plain.chi2)
    with pytest.raises(LumosValueError, match="clip_sigma"):
        PhotozConfig(clip_sigma=0.0)
