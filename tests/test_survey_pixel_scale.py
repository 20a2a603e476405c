"""Measuring an exposure of a survey with another pixel scale: the PSF FWHM and catalogue sizes
(arcsec) become pixels at the survey's scale (``Exposure.pixel_scale``), not PAUS's 0.263."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lumos_ops.constants import PIXEL_SCALE
from lumos_ops.io.exposure import Exposure
from lumos_ops.measure import prepare_targets
from lumos_ops.noise_calibration import blank_sky_positions
from lumos_ops.survey import paus_survey

SCALE = 2.0  # the other survey's pixels are twice as large, in arcsec, as PAUS's


def _other_survey(exposure: Exposure, catalog: pd.DataFrame) -> tuple[Exposure, pd.DataFrame]:
    """The same pixels read as a survey with SCALE x the pixel scale: every angle in arcsec x SCALE."""
    survey = dataclasses.replace(paus_survey(), name="big-pixels", pixel_scale=SCALE * PIXEL_SCALE)
    other = dataclasses.replace(exposure, survey=survey, psf_fwhm=SCALE * exposure.psf_fwhm)
    wide = catalog.copy()
    wide["r50"] = SCALE * wide["r50"]
    return other, wide


def test_exposure_pixel_scale_is_its_surveys(scene: tuple[Exposure, pd.DataFrame, np.ndarray]) -> None:
    exposure, catalog, _ = scene
    assert exposure.pixel_scale == PIXEL_SCALE
    other, _ = _other_survey(exposure, catalog)
    assert other.pixel_scale == SCALE * PIXEL_SCALE


def test_prepare_targets_renders_at_the_surveys_pixel_scale(scene: tuple[Exposure, pd.DataFrame, np.ndarray]) -> None:
    exposure, catalog, _ = scene
    other, wide = _other_survey(exposure, catalog)
    paus = prepare_targets(exposure, catalog)
    # same pixels: the same models, by default and when the scale is given
    np.testing.assert_allclose(prepare_targets(other, wide).models, paus.models, atol=1e-6)
    np.testing.assert_allclose(prepare_targets(other, wide, pixel_scale=SCALE * PIXEL_SCALE).models, paus.models,
                               atol=1e-6)
    # the PAUS scale on the other survey's arcsec would render them SCALE x too wide
    assert not np.allclose(prepare_targets(other, wide, pixel_scale=PIXEL_SCALE).models, paus.models, atol=1e-3)


def test_blank_sky_clearance_at_the_surveys_pixel_scale(scene: tuple[Exposure, pd.DataFrame, np.ndarray]) -> None:
    exposure, catalog, _ = scene
    other, wide = _other_survey(exposure, catalog)
    x, y = catalog["x"].to_numpy(), catalog["y"].to_numpy()
    bx, by = blank_sky_positions(exposure, x, y, catalog["r50"].to_numpy(), n_positions=50, margin=10, seed=3)
    ox, oy = blank_sky_positions(other, x, y, wide["r50"].to_numpy(), n_positions=50, margin=10, seed=3)
    assert len(bx) > 0
    np.testing.assert_array_equal(ox, bx)
    np.testing.assert_array_equal(oy, by)
