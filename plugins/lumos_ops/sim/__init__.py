"""Simulations: a PAUCam-like survey (FITS exposures, catalogue, truth) and TEAHUPOO training stamps.

* :func:`simulate_survey` with :class:`SurveyConfig` writes the survey layout of
  ``docs/ARCHITECTURE.md``.
* :func:`generate_training_set` with :class:`TeahupooConfig` pastes simulated galaxies on
  background cutouts of existing exposures (paper §2.2) and writes sharded stamps, read back by
  :class:`TrainingSet`.
"""

from lumos_ops.sim.survey import SurveyManifest, simulate_survey
from lumos_ops.sim.survey_config import Artefacts, SurveyConfig, load_survey_config

__all__ = [
    "Artefacts",
    "SurveyConfig",
    "SurveyManifest",
    "load_survey_config",
    "simulate_survey",
]
