"""Shared small simulated survey for the simulation tests (session-scoped: simulated once)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lumos_ops.sim import Artefacts, SurveyConfig, SurveyManifest, simulate_survey

torch.set_num_threads(1)

SMALL = dict(ccd_shape=(160, 192), n_galaxies=25, bands=("NB615", "NB685"), n_exposures=1, n_epochs=2,
             n_ccds=8, stamp_size=48, bright_star_density=0.2)


@pytest.fixture(scope="session")
def small_config() -> SurveyConfig:
    """Two bands x two epochs x one exposure on 160x192 CCDs, every artefact on."""
    return SurveyConfig(seed=7, **SMALL)


@pytest.fixture(scope="session")
def small_survey(tmp_path_factory: pytest.TempPathFactory, small_config: SurveyConfig) -> SurveyManifest:
    """The survey of :func:`small_config`, written once per session."""
    return simulate_survey(small_config, tmp_path_factory.mktemp("survey"))


@pytest.fixture(scope="session")
def noiseless_survey(tmp_path_factory: pytest.TempPathFactory) -> SurveyManifest:
    """Only catalogue galaxies, no sky, no noise, no defects: pixel sums equal true fluxes."""
    config = SurveyConfig(seed=3, artefacts=Artefacts.none(), **{**SMALL, "bands": ("NB685",), "n_epochs": 1, "ccd_shape": (320, 320), "n_galaxies": 10})
    return simulate_survey(config, tmp_path_factory.mktemp("noiseless"))


def exposure_paths(manifest: SurveyManifest) -> list[Path]:
    """The FITS files of a simulated survey."""
    return list(manifest.exposure_paths)
