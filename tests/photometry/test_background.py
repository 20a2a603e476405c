"""Sigma-clipped 30-45 px background annulus."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.photometry.background import annulus_background, annulus_pixel_count


def test_mean_and_variance_of_a_flat_noisy_sky_with_a_bright_star() -> None:
    rng = np.random.default_rng(1)
    cutouts = rng.normal(6.0, 0.3, (40, 96, 96))
    cutouts[:, 48 + 38, 48 - 2 : 48 + 3] = 500.0  # a star in the annulus, clipped away
    bg = annulus_background(cutouts, rng.uniform(-0.5, 0.5, 40), rng.uniform(-0.5, 0.5, 40))
    assert np.abs(bg.mean - 6.0).max() < 5 * 0.3 / np.sqrt(3000)
    rms = np.sqrt(bg.variance)
    assert np.median(rms) == pytest.approx(0.3, rel=0.01)
    np.testing.assert_allclose(rms, 0.3, rtol=0.06)
    assert (np.abs(bg.n_total - annulus_pixel_count()) < 40).all()
    assert not bg.incomplete.any()
    np.testing.assert_allclose(bg.mean_variance, bg.variance / bg.n_used)


def test_nan_pixels_are_ignored_and_half_missing_annulus_is_incomplete() -> None:
    cutouts = np.full((2, 96, 96), 3.0)
    cutouts[0, :, :20] = np.nan  # a slice of the annulus off the CCD
    cutouts[1, :, :49] = np.nan  # more than half of it
    bg = annulus_background(cutouts, np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(bg.mean, 3.0)
    assert bg.incomplete.tolist() == [False, True]


def test_no_usable_pixel_gives_nan() -> None:
    bg = annulus_background(np.full((1, 96, 96), np.nan), np.zeros(1), np.zeros(1))
    assert np.isnan(bg.mean[0]) and bg.n_used[0] == 0 and bg.incomplete[0]


def test_small_cutouts_see_part_of_the_annulus() -> None:
    bg = annulus_background(np.ones((1, 60, 60)), np.zeros(1), np.zeros(1))
    assert 0 < bg.n_used[0] < 0.5 * bg.n_total[0] and bg.incomplete[0]
    assert bg.mean[0] == pytest.approx(1.0)
