"""Fresh stamps drawn as a recipe draws its training set, and the shipped default's quantiles on them.

The regression test of the shipped default (``tests/models/test_shipped_calibration.py``) and the
model card's calibration table (``reports/lumos/recipe_calibration.py``) score the same draw.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

__all__ = ["RecipeDraw", "recipe_draw"]


@dataclasses.dataclass(frozen=True)
class RecipeDraw:
    """LUMOS quantiles of fresh recipe stamps.

    Attributes
    ----------
    truth : ndarray
        True fluxes (e-/s).
    q16, median, q84 : ndarray
        Quantiles of each stamp's LUMOS PDF (e-/s).
    cdf_at_truth : ndarray
        The PDF's CDF at the true flux (the PIT).
    bands : tuple of str
        Bands of the fresh exposure.
    loaded : LoadedModel
        The model that measured them.
    """

    truth: np.ndarray
    q16: np.ndarray
    median: np.ndarray
    q84: np.ndarray
    cdf_at_truth: np.ndarray
    bands: tuple[str, ...]
    loaded: object


def recipe_draw(work: str | os.PathLike[str], n_stamps: int, *, model: str | None = None, recipe: str = "default",
                seed: int = 1234, band_step: int = 5) -> RecipeDraw:
    """Simulate a fresh exposure (epoch 0) of every ``band_step``-th band of ``recipe``'s survey
    under ``work``, draw ``n_stamps`` TEAHUPOO stamps from it with the recipe's settings and seed
    ``seed``, and measure them with ``model`` (default: the shipped default).

    Steps whose output already exists under ``work`` are skipped.
    """
    from lumos_ops.evaluation.stamp_inference import model_band_rows
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.io.training_set import TrainingSet
    from lumos_ops.lumos.checkpoint import load_checkpoint
    from lumos_ops.lumos.inference import predict_mixtures
    from lumos_ops.lumos.mixture import mixture_cdf, mixture_quantile
    from lumos_ops.lumos.preprocess import prepare_inputs
    from lumos_ops.lumos.recipe import RECIPES
    from lumos_ops.sim import SurveyConfig, TeahupooConfig, generate_training_set, simulate_survey

    work = Path(work)
    spec = RECIPES[recipe]
    bands = tuple(spec.survey["bands"][::band_step])
    survey = SurveyConfig.from_dict({**spec.survey, "bands": bands, "n_exposures": 1, "n_epochs": 1})
    if not (work / "survey" / "manifest.json").is_file():
        simulate_survey(survey, work / "survey", progress=False)
    if not (work / "stamps" / "manifest.json").is_file():
        exposures = sorted(str(p) for p in (work / "survey" / "exposures").rglob("*.fits"))
        config = TeahupooConfig(**{**spec.teahupoo, "n_stamps": n_stamps, "seed": seed})
        generate_training_set(config, exposures, read_catalog(work / "survey" / "catalog.parquet"), work / "stamps",
                              progress=False)
    stamps = TrainingSet(work / "stamps")
    meta = stamps.meta
    images = stamps.images(np.arange(len(meta)))
    loaded = load_checkpoint(model, device="cpu")
    i_auto = meta["i_auto"].to_numpy()
    inputs = prepare_inputs(images[:, 0], images[:, 1], i_auto, meta["ccd_x"].to_numpy(), meta["ccd_y"].to_numpy(),
                            model_band_rows(loaded, meta, where=str(work / "stamps")), loaded.normalization)
    mix = predict_mixtures(loaded, inputs, i_auto)
    args = (mix.alpha, mix.mu, mix.sigma, mix.truncated)
    truth = meta["flux"].to_numpy()
    q16, median, q84 = (mixture_quantile(q, *args) for q in (0.16, 0.5, 0.84))
    return RecipeDraw(truth=truth, q16=q16, median=median, q84=q84, cdf_at_truth=mixture_cdf(truth, *args),
                      bands=bands, loaded=loaded)
