"""PAUS forced elliptical aperture photometry (62.5 % of the model light, annulus background)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.photometry.aperture import AperturePhotometry, aperture_radius, elliptical_aperture_photometry, enclosed_light
from lumos_ops.photometry.inputs import PhotometryInputs


def test_radius_encloses_the_light_fraction(gaussian_models: Callable[..., np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    n = 40
    dx, dy = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    model = gaussian_models(rng.uniform(0.4, 6.0, n), dx, dy, 96)
    q, pa = rng.uniform(0.2, 1.0, n), rng.uniform(0, 180, n)
    for fraction in (0.625, 0.3, 0.9):
        radius = aperture_radius(model, dx, dy, q, pa, light_fraction=fraction)
        np.testing.assert_allclose(enclosed_light(model, dx, dy, q, pa, radius), fraction, atol=2e-5)


def test_radius_of_a_wide_circular_gaussian_is_the_analytic_one(gaussian_models: Callable[..., np.ndarray]) -> None:
    # Pixel integration adds 1/12 pixel^2 of variance; enclosed light of a 2-D Gaussian is 1 - exp(-r^2/2s^2).
    sigma = 8.0
    model = gaussian_models(np.array([sigma]), np.zeros(1), np.zeros(1), 96)
    radius = aperture_radius(model, np.zeros(1), np.zeros(1), np.ones(1), np.zeros(1))
    expected = np.sqrt(sigma**2 + 1 / 12) * np.sqrt(-2 * np.log(1 - 0.625))
    assert radius[0] == pytest.approx(expected, rel=2e-3)


def test_model_with_too_little_light_on_the_grid_has_no_radius() -> None:
    model = np.full((1, 20, 20), 0.5 / 400)
    assert np.isnan(aperture_radius(model, np.zeros(1), np.zeros(1), np.ones(1), np.zeros(1))[0])
    with pytest.raises(LumosValueError, match="light_fraction"):
        aperture_radius(model, np.zeros(1), np.zeros(1), np.ones(1), np.zeros(1), light_fraction=1.0)


def test_noiseless_flux_is_exact_and_matches_the_paus_scaling(gaussian_models: Callable[..., np.ndarray]) -> None:
    rng = np.random.default_rng(2)
    n = 10
    dx, dy = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    model = gaussian_models(rng.uniform(0.8, 4, n), dx, dy, 96)
    flux = rng.uniform(1, 500, n)
    data = model * flux[:, None, None] + 6.0
    result = elliptical_aperture_photometry(
        PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, q=rng.uniform(0.3, 1, n), pa=rng.uniform(0, 180, n))
    )
    np.testing.assert_allclose(result["flux"], flux, rtol=1e-4)
    np.testing.assert_allclose(result["aperture_light"], 0.625, atol=2e-5)
    np.testing.assert_allclose(result["background"], 6.0)
    assert (result["flag"] == 0).all()
    area = np.pi * result["aperture_a"] * result["aperture_b"]
    np.testing.assert_allclose(result["aperture_area"], area, rtol=1e-9)


def test_errors_match_the_scatter_of_noisy_measurements(noisy_stamps: Callable[..., tuple[np.ndarray, ...]]) -> None:
    data, model, flux, dx, dy = noisy_stamps(400, seed=5)
    result = elliptical_aperture_photometry(PhotometryInputs.from_arrays(data, model, dx=dx, dy=dy, exptime=90.0))
    pull = (result["flux"] - flux) / result["flux_err"]
    assert abs(np.median(pull)) < 0.2
    assert 0.85 < np.std(pull) < 1.15


def test_edge_masked_saturated_and_off_image_targets_are_flagged(gaussian_models: Callable[..., np.ndarray]) -> None:
    n = 4
    model = gaussian_models(np.full(n, 2.0), np.zeros(n), np.zeros(n), 96)
    data = model * 100.0 + 6.0
    on_chip = np.ones(data.shape, dtype=bool)
    on_chip[0, :, :50] = False  # the CCD edge cuts the target's aperture
    data[0][~on_chip[0]] = np.nan
    data[1, 48, 49] = np.nan  # a masked pixel in the aperture
    data[2, 48, 48] = 1e5  # saturated centre
    result = elliptical_aperture_photometry(
        PhotometryInputs.from_arrays(
            data, model, on_chip=on_chip, saturate=1000.0, measurable=np.array([True, True, True, False])
        )
    )
    flags = result["flag"].to_numpy()
    assert flags[0] & Flag.EDGE and flags[0] & Flag.ANNULUS_INCOMPLETE
    assert flags[1] == Flag.MASKED and flags[2] == Flag.SATURATED and flags[3] == Flag.OFF_IMAGE
    # What is left of the aperture is corrected by the model light it holds: still unbiased.
    assert result["flux"].iloc[0] == pytest.approx(100.0, rel=1e-4)
    assert result["flux"].iloc[1] == pytest.approx(100.0, rel=1e-4)
    assert result["aperture_light"].iloc[0] < 0.5
    assert np.isnan(result["flux"].iloc[3]) and np.isnan(result["flux_err"].iloc[3])


def test_registry_class_validates_its_option() -> None:
    assert AperturePhotometry().name == "aperture"
    with pytest.raises(LumosValueError, match="light_fraction"):
        AperturePhotometry(light_fraction=1.5)
