"""The survey file of the resampled SDSS frames describes those frames: scale, PSF, units, pixel noise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs.utils import proj_plane_pixel_scales

from lumos_ops.evaluation.injection import estimate_psf_fwhm
from lumos_ops.io.catalog import validate_catalog
from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.adapt import exposure_pixel_noise
from lumos_ops.measure import measure_exposure
from lumos_ops.photometry.psf_stars import fit_stars, stellar_locus
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
    """The file's pixel scale is the WCS's, and its PSF (FWHM and beta measured on each frame's
    stars) reads the stars' light: the optimal weighted sum of the locus stars at their fitted
    centres reads 0.98-0.99 of their model-free 6 px aperture flux (``reports/lumos/psf-from-stars``;
    the second-moment width of 2.1-2.3 px that the file gave before read them 1.40-1.55 times)."""
    survey = load_survey(SURVEYS / "sdss-gri-reprojected.json")
    exposure = read_exposure(frame, survey=survey)
    wcs_scale = proj_plane_pixel_scales(exposure.wcs.celestial) * 3600.0
    assert survey.pixel_scale == pytest.approx(float(np.mean(wcs_scale)), rel=0.002)
    assert tuple(survey.ccd_shape) == exposure.shape
    fwhm_px = exposure.psf_fwhm / survey.pixel_scale
    assert 0.6 < fwhm_px < 1.0 < estimate_psf_fwhm(np.asarray(exposure.data, dtype=np.float64)) - 1.0
    assert 2.0 < exposure.psf_beta < 3.0
    fits = fit_stars(exposure.data, max_stars=1000)
    _, on = stellar_locus(fits["fwhm_px"].to_numpy())
    stars = fits[on & (fits["x"] > 15) & (fits["x"] < exposure.shape[1] - 16)
                 & (fits["y"] > 15) & (fits["y"] < exposure.shape[0] - 16)].reset_index(drop=True)
    assert len(stars) >= 100
    catalog = validate_catalog(stars.assign(ref_id=np.arange(len(stars)), r50=0.01, sersic_n=1.0, q=1.0, pa=0.0,
                                            i_auto=18.0)[["ref_id", "x", "y", "r50", "sersic_n", "q", "pa", "i_auto"]])
    optimal = measure_exposure(exposure, catalog, methods=("optimal",), calibrate_errors=False)["flux"].to_numpy()
    yy, xx = np.mgrid[-13:14, -13:14]
    r = np.hypot(xx, yy)
    sky = exposure.data - np.nanmedian(exposure.data)
    reference = []
    for x, y in stars[["x", "y"]].to_numpy():
        cut = sky[int(round(y)) - 13 : int(round(y)) + 14, int(round(x)) - 13 : int(round(x)) + 14]
        reference.append((cut[r <= 6] - np.median(cut[(r >= 9) & (r <= 13)])).sum())
    ratio = optimal / np.asarray(reference)
    assert 0.95 < np.nanmedian(ratio) < 1.02


def test_one_pixel_unit_is_nine_native_pixels_and_calibration_is_kept(frame):
    native = read_exposure(frame, survey=load_survey(SURVEYS / "sdss-gri.json"))
    resampled = read_exposure(frame, survey=load_survey(SURVEYS / "sdss-gri-reprojected.json"))
    area = (resampled.pixel_scale / native.pixel_scale) ** 2
    assert area == pytest.approx(9.0, rel=1e-3)
    np.testing.assert_allclose(resampled.data, native.data * area, rtol=1e-3)
    assert resampled.zero_point == native.zero_point  # a zero point converts e-/s, not pixel units
    assert exposure_pixel_noise(resampled) == pytest.approx(area * exposure_pixel_noise(native), rel=1e-3)
