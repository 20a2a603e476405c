"""The shipped default is calibrated on fresh stamps drawn as its own recipe draws its training set."""

import numpy as np
import pytest

from lumos_ops.io.catalog import read_catalog
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.inference import predict_mixtures
from lumos_ops.lumos.mixture import mixture_quantile, pit
from lumos_ops.lumos.preprocess import prepare_inputs
from lumos_ops.lumos.recipe import RECIPES
from lumos_ops.sim import SurveyConfig, TeahupooConfig, TrainingSet, generate_training_set, simulate_survey

N_STAMPS = 3000


@pytest.mark.slow
def test_shipped_default_pit_is_centred_on_its_recipe(tmp_path):
    """Mean PIT 0.5 and 68 % coverage within 4 standard errors on 3,000 unseen stamps.

    ``lumos-fast-v7`` (BatchNorm statistics shifted by the added neighbours) failed this with a
    mean PIT of 0.46; the standard error of the mean of a uniform PIT is 0.29 / sqrt(3000) = 0.005.
    """
    recipe = RECIPES["default"]
    survey_config = SurveyConfig.from_dict({**recipe.survey, "n_exposures": 1, "n_epochs": 1})
    simulate_survey(survey_config, tmp_path / "survey", progress=False)
    exposures = sorted(str(p) for p in (tmp_path / "survey" / "exposures").rglob("*.fits"))
    config = TeahupooConfig(**{**recipe.teahupoo, "n_stamps": N_STAMPS, "seed": 1234})
    generate_training_set(config, exposures, read_catalog(tmp_path / "survey" / "catalog.parquet"),
                          tmp_path / "stamps", progress=False)
    stamps = TrainingSet(tmp_path / "stamps")
    meta = stamps.meta
    images = stamps.images(np.arange(N_STAMPS))
    loaded = load_checkpoint(None, device="cpu")
    inputs = prepare_inputs(images[:, 0], images[:, 1], meta["i_auto"].to_numpy(), meta["ccd_x"].to_numpy(),
                            meta["ccd_y"].to_numpy(), meta["band_epoch"].to_numpy(), loaded.normalization)
    mix = predict_mixtures(loaded, inputs, meta["i_auto"].to_numpy())
    args = (mix.alpha, mix.mu, mix.sigma, mix.truncated)
    truth = meta["flux"].to_numpy()
    pits = pit(truth, *args)
    lo, hi = mixture_quantile(0.16, *args), mixture_quantile(0.84, *args)
    covered = np.mean((truth >= lo) & (truth <= hi))
    assert abs(pits.mean() - 0.5) < 4 * 0.2887 / np.sqrt(N_STAMPS), pits.mean()
    assert abs(covered - 0.68) < 4 * np.sqrt(0.68 * 0.32 / N_STAMPS), covered
