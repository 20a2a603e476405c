"""Optimal weighted pixel sum (eq. 5-6)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lumos_ops.photometry.aperture import elliptical_aperture_photometry
from lumos_ops.photometry.inputs import PhotometryInputs
from lumos_ops.photometry.optimal import OptimalWeightedSum, optimal_photometry, optimal_weights


def _faint_pattern(shape: tuple[int, ...]) -> np.ndarray:
    """6 e-/s sky with a +-1e-3 checkerboard: a non-zero pixel noise estimate, a mean of 6."""
    rows, cols = np.indices(shape[1:])
    return np.broadcast_to(6.0 + 1e-3 * (-1.0) ** (rows + cols), shape)


def test_weights_are_equation_6() -> None:
    rng = np.random.default_rng(0)
    model = rng.uniform(0, 0.05, (3, 50))
    model /= model.sum(axis=1, keepdims=True)
    flux, noise, exptime = np.array([10.0, 100.0, 1000.0]), np.full(3, 0.07), np.full(3, 90.0)
    weights = optimal_weights(model, flux, noise, exptime)
    # Eq. (6) in counts: m = F R t, b = s^2 t^2 (background variance in counts).
    m = flux[:, None] * model * exptime[:, None]
    b = noise[:, None] * exptime[:, None] ** 2
    eq6 = (m.sum(1, keepdims=True) / (m**2 / (m + b)).sum(1, keepdims=True)) / (1 + b / m)
    # Same estimator: F_hat = sum(eq6 * counts) / t / sum(R) = sum(w * d).
    np.testing.assert_allclose(weights, eq6 / model.sum(1, keepdims=True) / exptime[:, None] * exptime[:, None], rtol=1e-12)
    np.testing.assert_allclose((weights * model).sum(axis=1), 1.0)


def test_noiseless_flux_is_exact(gaussian_models: Callable[..., np.ndarray]) -> None:
    model = gaussian_models(np.array([1.5, 3.0]), np.array([0.2, -0.4]), np.array([0.1, 0.3]), 96)
    flux = np.array([4.0, 300.0])
    data = model * flux[:, None, None] + _faint_pattern(model.shape)
    data[0, 48, 48] = np.nan  # a masked pixel: left out, the estimate stays exact
    result = optimal_photometry(PhotometryInputs.from_arrays(data, model))
    np.testing.assert_allclose(result["flux"], flux, rtol=1e-3)


def test_more_precise_than_the_aperture_and_errors_calibrated(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    data, model, flux, dx, dy = noisy_stamps(400, flux=(3.0, 30.0), seed=3)
    inputs = PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, exptime=90.0)
    optimal = optimal_photometry(inputs)
    aperture = elliptical_aperture_photometry(inputs)
    # Background-limited Gaussians: the optimal weights beat the 62.5 % aperture by about 10 %.
    assert np.std(optimal["flux"] - flux) < 0.97 * np.std(aperture["flux"] - flux)
    assert np.median(optimal["flux_err"] / aperture["flux_err"]) < 0.92
    pull = (optimal["flux"] - flux) / optimal["flux_err"]
    assert 0.85 < np.std(pull) < 1.15
    assert abs(np.median((optimal["flux"] - flux) / flux)) < 0.05
    assert (optimal["n_iter"] <= 20).all()


def test_registry_class() -> None:
    assert OptimalWeightedSum().name == "optimal"
    with pytest.raises(ValueError, match="rtol"):
        OptimalWeightedSum(rtol=0.0)


def test_model_residual_is_zero_for_a_galaxy_that_is_its_model(noisy_stamps: Callable[..., tuple[np.ndarray, ...]],
                                                                 gaussian_models: Callable[..., np.ndarray]) -> None:
    data, model, flux, dx, dy = noisy_stamps(300, flux=(400.0, 800.0), seed=5)
    matched = optimal_photometry(PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, exptime=90.0))
    # light about twice as wide as the model it is measured with: the fit leaves light out
    narrow = gaussian_models(np.full(300, 1.0), dx, dy, 96)
    wider = gaussian_models(np.full(300, 1.9), dx, dy, 96)
    rng = np.random.default_rng(6)
    light = rng.poisson((wider * flux[:, None, None] + 6.0) * 90.0) / 90.0
    mismatched = optimal_photometry(PhotometryInputs.from_arrays(light, narrow, dx=dx, dy=dy, exptime=90.0))
    noise = np.sqrt(2.0 * 200) / matched["snr"].to_numpy() ** 2  # sqrt(2 N) / SNR^2 for ~200 fitted pixels
    assert abs(np.median(matched["model_residual"])) < 3 * np.median(noise)
    assert np.median(mismatched["model_residual"]) > 0.05
    assert np.median(mismatched["model_residual"]) > 20 * abs(np.median(matched["model_residual"]))
