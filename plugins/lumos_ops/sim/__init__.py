"""Simulations: a PAUCam-like survey (FITS exposures, catalogue, truth) and TEAHUPOO training stamps.

* :func:`simulate_survey` with :class:`SurveyConfig` writes the survey layout of
  ``docs/ARCHITECTURE.md``.
* :func:`generate_training_set` with :class:`TeahupooConfig` pastes simulated galaxies on
  background cutouts of existing exposures (paper §2.2) and writes sharded stamps, read back by
  :class:`TrainingSet` (:mod:`lumos_ops.io.training_set`, importable from here too).
"""

from lumos_ops.io.training_set import TrainingSet
from lumos_ops.sim.survey import SurveyManifest, simulate_survey
from lumos_ops.sim.survey_config import Artefacts, SurveyConfig, load_survey_config
from lumos_ops.sim.teahupoo import TrainingSetManifest, generate_training_set
from lumos_ops.sim.teahupoo_config import FluxSource, TeahupooConfig

__all__ = [
    "Artefacts",
    "FluxSource",
    "SurveyConfig",
    "SurveyManifest",
    "TeahupooConfig",
    "TrainingSet",
    "TrainingSetManifest",
    "generate_training_set",
    "load_survey_config",
    "simulate_survey",
]
