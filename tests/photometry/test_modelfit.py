"""Poisson chi-square profile fit (eq. 3) with the batched Nelder-Mead."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.optimize import minimize

from lumos_ops.flags import Flag
from lumos_ops.photometry.inputs import PhotometryInputs
from lumos_ops.photometry.modelfit import ProfileFit, fit_pixels, poisson_chi2, profile_fit_photometry


def test_noiseless_amplitude_is_recovered(gaussian_models: Callable[..., np.ndarray]) -> None:
    model = gaussian_models(np.array([1.5, 3.0, 2.0]), np.array([0.2, -0.4, 0.0]), np.array([0.1, 0.3, -0.5]), 96)
    flux = np.array([3.0, 80.0, 900.0])
    rows, cols = np.indices(model.shape[1:])
    sky = 6.0 + 1e-3 * (-1.0) ** (rows + cols)  # a non-zero pixel noise estimate, mean 6
    result = profile_fit_photometry(PhotometryInputs.from_arrays(model * flux[:, None, None] + sky, model))
    np.testing.assert_allclose(result["flux"], flux, rtol=1e-3)
    assert (result["flag"] == 0).all()


def test_minimum_agrees_with_scipy_nelder_mead(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    data, model, flux, dx, dy = noisy_stamps(6, flux=(2.0, 50.0), seed=7)
    inputs = PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, exptime=90.0)
    result = profile_fit_photometry(inputs, xatol=1e-8)
    pixels = fit_pixels(inputs)
    for i in range(inputs.n):
        start = float(np.sum(pixels.model[i] * pixels.signal[i]) / np.sum(pixels.model[i] ** 2))
        reference = minimize(
            lambda v, i=i: float(poisson_chi2(pixels, np.asarray(v, dtype=float), np.array([i]))[0]),
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-8},
        )
        assert result["flux"].iloc[i] == pytest.approx(reference.x[0], abs=1e-4)
        assert result["chi2"].iloc[i] == pytest.approx(reference.fun, abs=1e-3)


def test_errors_follow_the_scatter(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    data, model, flux, dx, dy = noisy_stamps(300, seed=11)
    result = profile_fit_photometry(PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, exptime=90.0))
    pull = (result["flux"] - flux) / result["flux_err"]
    assert 0.85 < np.std(pull) < 1.15
    assert 0.9 < np.median(result["chi2_dof"]) < 1.1


def test_iteration_limit_flags_fit_failed(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    data, model, _, dx, dy = noisy_stamps(3, seed=1)
    frame = profile_fit_photometry(PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy), maxiter=1)
    assert (frame["flag"].to_numpy() & Flag.FIT_FAILED).all()


def test_registry_class_validates_options() -> None:
    assert ProfileFit().name == "modelfit"
    with pytest.raises(ValueError, match="maxiter"):
        ProfileFit(maxiter=0)


def test_chi2_of_any_row_selection_is_that_of_each_row(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    """All rows in order (read as views), a subset, a permutation: each row's own chi-square."""
    data, model, _, dx, dy = noisy_stamps(7, seed=3)
    pixels = fit_pixels(PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, exptime=90.0))
    flux = np.linspace(-5.0, 150.0, 7)
    alone = np.array([poisson_chi2(pixels, flux[i : i + 1], np.array([i]))[0] for i in range(7)])
    assert np.array_equal(poisson_chi2(pixels, flux), alone)
    assert np.array_equal(poisson_chi2(pixels, flux, np.arange(7)), alone)
    for index in (np.array([1, 4, 6]), np.array([6, 0, 3, 2, 1, 5, 4])):
        assert np.array_equal(poisson_chi2(pixels, flux[index], index), alone[index])
    first = pixels.groups(np.arange(2), 8)
    _, two = next(first)  # two rows: a boolean mask [False, True] is not the rows 0 and 1
    mask = np.array([False, True])
    assert np.array_equal(poisson_chi2(two, flux[:1], mask), poisson_chi2(two, flux[:1], np.array([1])))


def test_footprint_flags_are_computed_once_and_handed_out_as_copies(
        noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    from lumos_ops.photometry.quality import footprint_flags

    data, model, _, dx, dy = noisy_stamps(5, seed=4)
    data[1, 40:56, 40:56] = np.nan
    inputs = PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy)
    pixels = fit_pixels(inputs)
    first = pixels.flags(inputs)
    assert np.array_equal(first, footprint_flags(inputs, pixels.footprint)) and first[1] & Flag.MASKED
    first[:] = -1
    assert np.array_equal(pixels.flags(inputs), footprint_flags(inputs, pixels.footprint))
    assert np.array_equal(pixels.widths, (pixels.model > 0).sum(axis=1))


def test_a_minimum_that_runs_away_is_a_failed_fit(gaussian_models: Callable[..., np.ndarray]) -> None:
    """A neighbour's light inside the footprint, far above the noise: eq. (3)'s chi-square falls as
    the amplitude inflates the variance, and its minimum lies at many times the linear estimate."""
    from lumos_ops.photometry.optimal import optimal_photometry

    model = gaussian_models(np.array([3.0]), np.zeros(1), np.zeros(1), 96)
    neighbour = gaussian_models(np.array([1.0]), np.array([5.0]), np.zeros(1), 96)
    data = np.random.default_rng(1).poisson((model * 300.0 + neighbour * 2000.0 + 6.0) * 90.0) / 90.0
    inputs = PhotometryInputs.from_arrays(data, model, exptime=90.0)
    linear = optimal_photometry(inputs)["flux"].iloc[0]
    pixels = fit_pixels(inputs)
    start = float(np.sum(pixels.model[0] * pixels.signal[0]) / np.sum(pixels.model[0] ** 2))
    minimum = minimize(lambda v: float(poisson_chi2(pixels, np.asarray(v, dtype=float), np.array([0]))[0]), start,
                       method="Nelder-Mead").x[0]
    assert minimum > 3.0 * linear > 0  # the runaway
    result = profile_fit_photometry(inputs)
    assert result["flag"].iloc[0] & Flag.FIT_FAILED
    assert np.isnan(result["flux"].iloc[0]) and np.isnan(result["flux_err"].iloc[0])
    assert result["chi2_dof"].iloc[0] > 100


def test_galaxies_that_are_their_model_never_run_away(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    data, model, _, dx, dy = noisy_stamps(300, flux=(1.0, 2000.0), seed=5)
    result = profile_fit_photometry(PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, exptime=90.0))
    assert np.isfinite(result["flux"]).all() and not np.any(result["flag"].to_numpy() & Flag.FIT_FAILED)
