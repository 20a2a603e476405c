"""The simulated survey's seeing distribution: the PAUS default unchanged, a wider one on request."""

from __future__ import annotations

import numpy as np
import pytest

from lumos_ops.constants import NB_BANDS
from lumos_ops.exceptions import LumosValueError
from lumos_ops.sim.observing import make_camera, plan_exposures
from lumos_ops.sim.survey_config import SurveyConfig


def _seeing(config: SurveyConfig) -> np.ndarray:
    return np.array([e.psf_fwhm for e in plan_exposures(config, make_camera(config.seed))])


def test_default_seeing_is_the_paus_site_and_is_not_recorded():
    config = SurveyConfig(bands=NB_BANDS, n_exposures=20, seed=3)
    assert "psf_fwhm_median" not in config.to_dict() and "psf_fwhm_scatter" not in config.to_dict()
    seeing = _seeing(config)
    assert seeing.min() >= 0.7 and seeing.max() <= 1.4
    assert np.median(seeing) == pytest.approx(0.95, abs=0.06)


def test_a_wider_seeing_distribution_reaches_other_surveys_psf_sizes():
    config = SurveyConfig(bands=NB_BANDS, n_exposures=20, seed=3, psf_fwhm_range=(0.4, 1.6), psf_fwhm_median=0.75,
                          psf_fwhm_scatter=0.4)
    assert config.to_dict()["psf_fwhm_median"] == 0.75
    seeing = _seeing(config)
    assert seeing.min() < 0.5 and seeing.max() > 1.3 and seeing.min() >= 0.4
    assert SurveyConfig.from_dict(config.to_dict()) == config
    with pytest.raises(LumosValueError, match="psf_fwhm_scatter"):
        SurveyConfig(psf_fwhm_scatter=-0.1)
    with pytest.raises(LumosValueError, match="psf_fwhm_median"):
        SurveyConfig(psf_fwhm_median=0.0)
