"""The survey file of the resampled SDSS frames describes those frames: scale, PSF, units, pixel noise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs.utils import proj_plane_pixel_scales

from lumos_ops.evaluation.injection import estimate_psf_fwhm
from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.adapt import exposure_pixel_noise
from lumos_ops.survey import load_survey

REPO = Path(__file__).resolve().parents[2]
SURVEYS = REPO / "examples" / "surveys"
REALDATA = Path(os.environ.get("LUMOS_REALDATA", REPO.parent / "shared" / "realdata"))


@pytest.fixture(scope="module", params=["g", "r", "i"])
def frame(request):
    path = REALDATA / f"sdss_{request.param}.fits.bz2"
    if not path.is_file():
        pytest.skip(f"real data {path} not available")
    return path


def test_reprojected_file_has_the_frames_pixel_scale_and_psf(frame):
    survey = load_survey(SURVEYS / "sdss-gri-reprojected.json")
    exposure = read_exposure(frame, survey=survey)
    wcs_scale = proj_plane_pixel_scales(exposure.wcs.celestial) * 3600.0
    assert survey.pixel_scale == pytest.approx(float(np.mean(wcs_scale)), rel=0.002)
    assert tuple(survey.ccd_shape) == exposure.shape
    stars_px = estimate_psf_fwhm(np.asarray(exposure.data, dtype=np.float64))
    assert exposure.psf_fwhm / survey.pixel_scale == pytest.approx(stars_px, rel=0.1)


def test_one_pixel_unit_is_nine_native_pixels_and_calibration_is_kept(frame):
    native = read_exposure(frame, survey=load_survey(SURVEYS / "sdss-gri.json"))
    resampled = read_exposure(frame, survey=load_survey(SURVEYS / "sdss-gri-reprojected.json"))
    area = (resampled.pixel_scale / native.pixel_scale) ** 2
    assert area == pytest.approx(9.0, rel=1e-3)
    np.testing.assert_allclose(resampled.data, native.data * area, rtol=1e-3)
    assert resampled.zero_point == native.zero_point  # a zero point converts e-/s, not pixel units
    assert exposure_pixel_noise(resampled) == pytest.approx(area * exposure_pixel_noise(native), rel=1e-3)
