"""Image defects, the observing plan and the survey configuration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from lumos_ops.constants import band_exptime
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.sim import Artefacts, SurveyConfig, load_survey_config
from lumos_ops.sim.detector import (
    add_cosmic_rays,
    add_crosstalk,
    bad_columns,
    bleed_saturated,
    paste_stamps,
    read_noise,
    scattered_light,
)
from lumos_ops.sim.observing import make_camera, plan_exposures
from lumos_ops.sim.sky import make_sky


def test_scattered_light_is_smooth_band_and_epoch_dependent() -> None:
    rng = np.random.default_rng(0)
    kw = dict(ccd=3, seed=1)
    full = (4096, 2048)
    e0 = scattered_light(full, band="NB685", epoch=0, exposure_rng=np.random.default_rng(0), **kw)
    e1 = scattered_light(full, band="NB685", epoch=1, exposure_rng=np.random.default_rng(0), **kw)
    other = scattered_light(full, band="NB455", epoch=0, exposure_rng=rng, **kw)
    assert e0.min() >= 0 and np.ptp(e0) > 0.05
    assert np.ptp(e0) > np.ptp(e1)  # the baffles reduced scattered light
    assert not np.allclose(e0 / e0.mean(), other / other.mean())
    assert np.abs(np.diff(e0, axis=0)).max() < 0.01 and np.abs(np.diff(e0, axis=1)).max() < 0.01
    # A small simulated CCD is the central window of the physical one: same gradient per pixel.
    window = scattered_light((256, 128), band="NB685", epoch=0, exposure_rng=np.random.default_rng(0), **kw)
    np.testing.assert_allclose(window, e0[1920:2176, 960:1088], rtol=1e-12)


def test_read_noise_tails_and_banding() -> None:
    rng = np.random.default_rng(2)
    white = read_noise(rng, (400, 400), sigma=5.0, heavy_tails=True, banding=False)
    assert white.std() == pytest.approx(5.0, rel=0.05)
    assert stats.kurtosis(white.ravel()) > 1.0  # Student-t tails, not Gaussian
    banded = read_noise(rng, (400, 400), sigma=5.0, heavy_tails=False, banding=True)
    assert banded.mean(axis=1).std() > 1.0  # row pattern far above 5 / sqrt(400) = 0.25
    pattern_only = read_noise(rng, (400, 400), sigma=5.0, white=False, banding=True)
    assert pattern_only.mean(axis=1).std() > 1.0 and np.abs(np.diff(pattern_only[0])).std() < 3.0


def test_cosmic_rays_crosstalk_bleed_and_paste() -> None:
    image = np.zeros((500, 400))
    n = add_cosmic_rays(np.random.default_rng(3), image, exptime=600.0)
    assert n > 5 and (image > 250).sum() >= n
    image = np.zeros((10, 10))
    image[4, 1] = 1000.0
    add_crosstalk(image, coefficient=1e-3, threshold=100.0)
    assert image[4, 8] == pytest.approx(0.9) and image[4, 1] == 1000.0
    column = np.zeros((50, 5))
    column[25, 2] = 1000.0
    total = column.sum()
    saturated = bleed_saturated(column, full_well=100.0)
    assert column.max() == 100.0 and column.sum() == pytest.approx(total)
    assert saturated[:, 2].sum() == 10 and not saturated[:, [0, 1, 3, 4]].any()
    canvas = np.zeros((20, 20))
    stamps = np.ones((2, 5, 5))
    paste_stamps(canvas, stamps, np.array([0.4, 10.6]), np.array([10.0, 18.2]))
    assert canvas.sum() == 3 * 5 + 5 * 4  # both stamps clipped at the edges
    assert canvas[10, 0] == 1 and canvas[8, 0] == 1 and canvas[7, 0] == 0


def test_bad_columns_are_a_camera_feature() -> None:
    assert bad_columns((100, 80), ccd=2, seed=4) == bad_columns((100, 80), ccd=2, seed=4)
    assert bad_columns((100, 80), ccd=2, seed=4) != bad_columns((100, 80), ccd=3, seed=4)


def test_plan_covers_bands_epochs_and_nights() -> None:
    config = SurveyConfig(bands=("NB455", "NB685", "NB695"), n_exposures=3, n_epochs=2, nights=2, ccd_shape=(128, 128))
    plan = plan_exposures(config, make_camera(config.seed))
    assert len(plan) == 3 * 3 * 2
    assert {p.band for p in plan} == {"NB455", "NB685", "NB695"}
    assert all(p.exptime == band_exptime(p.band) for p in plan)
    assert all(p.ccd == {"NB455": 1, "NB685": 8, "NB695": 1}[p.band] for p in plan)  # PAUCam filter -> CCD map
    assert len({p.night for p in plan}) == 4 and {p.epoch for p in plan} == {0, 1}
    assert len({(p.expnum, p.ccd) for p in plan}) == len(plan)
    fwhm = {p.expnum: p.psf_fwhm for p in plan}
    assert len(set(fwhm.values())) > 3 and min(fwhm.values()) >= 0.7 and max(fwhm.values()) <= 1.4
    mjd = [p.mjd for p in plan]
    assert mjd == sorted(mjd)


def test_sky_sources() -> None:
    config = SurveyConfig(ccd_shape=(512, 512), seed=2)
    sky = make_sky(config)
    assert len(sky.catalog) == config.n_catalog_galaxies == round(9.0 * config.field_area)
    assert len(sky.faint) > 2 * len(sky.catalog) and (sky.faint.ref_id < 0).all()
    assert (sky.faint.i_auto >= 23.0).all() and len(sky.stars) >= 1 and sky.stars.i_mag.min() < 13.0
    quiet = make_sky(SurveyConfig(ccd_shape=(512, 512), seed=2, artefacts=Artefacts.none()))
    assert len(quiet.faint) == 0 and len(quiet.stars) == 0
    assert quiet.catalog.equals(sky.catalog)


def test_config_validation_and_files(tmp_path) -> None:
    with pytest.raises(LumosValueError, match="bands"):
        SurveyConfig(bands=("NB999",))
    with pytest.raises(LumosValueError, match="n_ccds"):
        SurveyConfig(bands=("NB685",), n_ccds=4)
    with pytest.raises(LumosValueError, match="ccd_shape"):
        SurveyConfig(ccd_shape=(10, 10))
    with pytest.raises(LumosValueError, match="unknown option"):
        SurveyConfig.from_dict({"n_galaxy": 3})
    with pytest.raises(LumosValueError, match="artefacts"):
        SurveyConfig(artefacts={"glitter": True})
    (tmp_path / "c.yaml").write_text("n_galaxies: 12\nbands: [NB685]\nccd_shape: [256, 128]\nartefacts: {stars: false}\n")
    config = load_survey_config(tmp_path / "c.yaml", seed=9)
    assert config.n_galaxies == 12 and config.bands == ("NB685",) and config.ccd_shape == (256, 128)
    assert config.seed == 9 and not config.artefacts.stars and config.artefacts.sky
    (tmp_path / "c.json").write_text(json.dumps(config.to_dict()))
    assert load_survey_config(tmp_path / "c.json") == config
    with pytest.raises(InputFileError):
        load_survey_config(tmp_path / "missing.yaml")


def test_zero_point_is_configurable() -> None:
    config = SurveyConfig(bands=("NB685",), n_exposures=2, n_epochs=1, ccd_shape=(128, 128))
    brighter = SurveyConfig.from_dict({**config.to_dict(), "zp_nb685": config.zp_nb685 + 0.5})
    zp = [p.zero_point for p in plan_exposures(config, make_camera(0))]
    zp_bright = [p.zero_point for p in plan_exposures(brighter, make_camera(0))]
    np.testing.assert_allclose(np.subtract(zp_bright, zp), 0.5, atol=1e-3)


def test_catalogue_shape_errors_keep_true_shapes() -> None:
    exact = make_sky(SurveyConfig(ccd_shape=(256, 256), seed=3))
    noisy = make_sky(SurveyConfig(ccd_shape=(256, 256), seed=3, catalog_shape_error=0.1))
    for name in ("r50", "sersic_n", "q", "pa"):
        np.testing.assert_array_equal(noisy.catalog[f"{name}_true"], exact.catalog[name])
        assert not np.allclose(noisy.catalog[name], exact.catalog[name])
    ratio = np.log10(noisy.catalog.r50 / exact.catalog.r50)
    assert 0.05 < ratio.std() < 0.15
    assert "r50_true" not in exact.catalog.columns
