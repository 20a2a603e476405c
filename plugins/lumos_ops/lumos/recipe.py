"""Named end-to-end recipes: simulate a survey, cut TEAHUPOO shards from it and train (all seeded).

``lumos train --recipe fast-v11 --out DIR`` (``default`` is the same recipe) writes ``DIR/survey`` (survey simulator layout),
``DIR/teahupoo`` (training shards) and ``DIR/model`` (checkpoints, metrics). Steps whose output
already exists with the same configuration are skipped, so an interrupted recipe can be rerun
(add ``--resume`` to continue the training from its last epoch).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from lumos_ops.constants import NB_BANDS
from lumos_ops.exceptions import LumosValueError

__all__ = ["Recipe", "RECIPES", "DEFAULT_RECIPE", "run_recipe"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A reproducible data + training recipe.

    Attributes
    ----------
    survey : dict
        ``lumos_ops.sim.SurveyConfig`` fields (``SurveyConfig.from_dict``).
    teahupoo : dict
        ``lumos_ops.sim.TeahupooConfig`` fields.
    train : dict
        :class:`lumos_ops.lumos.train.TrainConfig` fields (``ccd_shape`` is taken from the survey).
    """

    survey: dict[str, Any]
    teahupoo: dict[str, Any]
    train: dict[str, Any]


_SURVEY: dict[str, Any] = {
    "ccd_shape": (2048, 2048),
    "bands": ("NB455", "NB535", "NB615", "NB685", "NB765", "NB845"),
    "n_exposures": 2,
    "seed": 1,
}
_TRAIN: dict[str, Any] = {"arch": "fast", "epochs": 14, "batch_size": 256, "lr": 1e-3, "lr_step": 10, "seed": 0,
                          "num_threads": 1}

_REFERENCE_TEAHUPOO: dict[str, Any] = {
    "n_stamps": 120_000, "seed": 2, "flux_source": "reference_prior", "neighbour_fraction": 0.3,
    "shape_population": 200_000, "shape_count_slope": 0.0, "population_i_range": (17.5, 23.0),
    "background_scale_range": (0.5, 2.0),
}
"""The likelihood draw of ``fast-v10``: fluxes from the reference prior (``lumos_ops.flux_prior``,
negative fluxes included, independent of the galaxy), shapes uniform in i 17.5-23, a catalogue
neighbour at 2-20 px on 30 % of the stamps, backgrounds scaled by 0.5-2 (log-uniform)."""

RECIPES: dict[str, Recipe] = {
    "fast-v10": Recipe(
        survey=_SURVEY,
        teahupoo=_REFERENCE_TEAHUPOO,
        train={**_TRAIN, "epochs": 12, "lr_step": 9, "frozen_bn_epochs": 3},
    ),
}
"""Recipes of the shipped weights and their predecessor (the ``fast`` network on one CPU thread).
Earlier recipes (fast-v2 ... fast-v9, population priors) are in the git history and
``reports/history/``.

* ``fast-v10``: the previous default ``lumos-fast-v10`` (6 bands x 2 epochs x 2 exposures of 8
  CCDs of 2048^2 px), a likelihood network: 120,000 stamps with
  fluxes drawn from the reference prior and an importance-weighted loss (docs/likelihood.md),
  shapes uniform in i 17.5-23, neighbours on 30 % of the stamps at 2-20 px, backgrounds scaled by
  0.5-2, 12 epochs whose low-learning-rate stage (epochs 10-12) trains with frozen BatchNorm
  statistics (``TrainConfig.frozen_bn_epochs``);
* ``fast-noccd-v10``: the same without the CCD position;
* ``fast-v11`` (below): the shipped default ``lumos-fast-v11``, ``fast-v10`` on all 40 bands;
* ``fast-noccd-v11``: ``fast-v11`` without the CCD position (the PIT comparison);
* ``default``: the recipe of the shipped default model (``fast-v11``)."""
RECIPES["fast-v11"] = Recipe(
    survey={**_SURVEY, "bands": NB_BANDS},
    teahupoo=_REFERENCE_TEAHUPOO,
    train={**_TRAIN, "epochs": 12, "lr_step": 9, "frozen_bn_epochs": 3},
)
"""``fast-v10`` on all 40 narrow bands x 2 epochs (two exposures per band and epoch, each band on
its PAUCam CCD: 160 CCD images of 2048^2 px): every PAUS band x epoch row of the embedding is
trained."""
RECIPES["fast-noccd-v10"] = dataclasses.replace(
    RECIPES["fast-v10"], train={**RECIPES["fast-v10"].train, "drop_inputs": ("ccd_x", "ccd_y")}
)
RECIPES["fast-noccd-v11"] = dataclasses.replace(
    RECIPES["fast-v11"], train={**RECIPES["fast-v11"].train, "drop_inputs": ("ccd_x", "ccd_y")}
)
DEFAULT_RECIPE = "fast-v11"
"""Name of the recipe of the shipped default model."""
RECIPES["default"] = RECIPES[DEFAULT_RECIPE]


def _fits(root: Path) -> list[str]:
    return sorted(str(p) for p in (root / "exposures").rglob("*.fits"))


def run_recipe(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    n_stamps: int | None = None,
    train_options: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run recipe ``name`` under ``out_dir``; returns the training metrics.

    Parameters
    ----------
    name : str
        Key of :data:`RECIPES`.
    out_dir : path-like
    n_stamps : int, keyword-only
        Override the number of TEAHUPOO stamps.
    train_options : dict, keyword-only
        Override :class:`TrainConfig` fields.
    resume : bool, keyword-only
        Continue an interrupted training.
    progress : bool, keyword-only
    """
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.lumos.train import TrainConfig, train
    from lumos_ops.sim import SurveyConfig, TeahupooConfig, generate_training_set, simulate_survey

    if name not in RECIPES:
        raise LumosValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    recipe = RECIPES[name]
    out = Path(out_dir)
    survey_dir, set_dir, model_dir = out / "survey", out / "teahupoo", out / "model"
    survey_config = SurveyConfig.from_dict(dict(recipe.survey))
    if not (survey_dir / "manifest.json").is_file():
        log.info("recipe %s: simulating the survey in %s", name, survey_dir)
        simulate_survey(survey_config, survey_dir, progress=progress)
    teahupoo = dict(recipe.teahupoo)
    if n_stamps is not None:
        teahupoo["n_stamps"] = n_stamps
    set_config = TeahupooConfig(**teahupoo)
    manifest_path = set_dir / "manifest.json"
    existing = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    if existing is None or existing.get("config") != set_config.to_dict():
        log.info("recipe %s: generating %d TEAHUPOO stamps in %s", name, set_config.n_stamps, set_dir)
        generate_training_set(set_config, _fits(survey_dir), read_catalog(survey_dir / "catalog.parquet"), set_dir, progress=progress)
    options = {**recipe.train, **(train_options or {}), "ccd_shape": tuple(survey_config.ccd_shape)}
    options.setdefault("progress", progress)
    metadata = {"recipe": {"name": name, "survey": recipe.survey, "teahupoo": teahupoo, "train": recipe.train}}
    return train(set_dir, model_dir, TrainConfig(**options), resume=resume, metadata=metadata)
