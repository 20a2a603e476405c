"""Fixtures of the simulation tests: a noiseless survey (the small survey they share with the io tests,
``small_config`` and ``small_survey``, is in tests/conftest.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lumos_ops.sim import Artefacts, SurveyConfig, SurveyManifest, simulate_survey

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def noiseless_survey(tmp_path_factory: pytest.TempPathFactory, small_config: SurveyConfig) -> SurveyManifest:
    """Only catalogue galaxies, no sky, no noise, no defects: pixel sums equal true fluxes."""
    config = dataclasses.replace(small_config, seed=3, artefacts=Artefacts.none(), bands=("NB685",), n_epochs=1,
                                 ccd_shape=(320, 320), n_galaxies=10)
    return simulate_survey(config, tmp_path_factory.mktemp("noiseless"))


def exposure_paths(manifest: SurveyManifest) -> list[Path]:
    """The FITS files of a simulated survey."""
    return list(manifest.exposure_paths)
