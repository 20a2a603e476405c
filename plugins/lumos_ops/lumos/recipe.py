"""Named end-to-end recipes: simulate a survey, cut TEAHUPOO shards from it and train (all seeded).

``lumos train --recipe fast-mf-v12 --out DIR`` (``default`` is the same recipe) writes ``DIR/survey`` (survey simulator layout),
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
from lumos_ops.sim.truth_mismatch import TRUTH_MISMATCH

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
    init : str or None
        Fine-tuning: the recipe whose trained model the training starts from (``TrainConfig.init_model``);
        :func:`run_recipe` runs it first under ``OUT/init-<name>`` (sharing the survey when both
        recipes simulate the same one), unless ``train_options`` gives ``init_model``.
    """

    survey: dict[str, Any]
    teahupoo: dict[str, Any]
    train: dict[str, Any]
    init: str | None = None


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
"""Recipes of the shipped weights and their predecessors (the ``fast`` and ``fast-mf`` networks on CPU).
Earlier recipes (fast-v2 ... fast-v9, population priors) are in the git history and
``reports/history/``.

* ``fast-v10``: the previous default ``lumos-fast-v10`` (6 bands x 2 epochs x 2 exposures of 8
  CCDs of 2048^2 px), a likelihood network: 120,000 stamps with
  fluxes drawn from the reference prior and an importance-weighted loss (docs/likelihood.md),
  shapes uniform in i 17.5-23, neighbours on 30 % of the stamps at 2-20 px, backgrounds scaled by
  0.5-2, 12 epochs whose low-learning-rate stage (epochs 10-12) trains with frozen BatchNorm
  statistics (``TrainConfig.frozen_bn_epochs``);
* ``fast-noccd-v10``: the same without the CCD position;
* ``fast-v11`` (below): the previous default ``lumos-fast-v11``, ``fast-v10`` on all 40 bands;
* ``fast-noccd-v11``: ``fast-v11`` without the CCD position;
* ``fast-v11-noise-texture`` (below): an unshipped fine-tuning experiment of ``fast-v11``;
* ``fast-v11-no-background`` (below): ``fast-v11`` fine-tuned without the background input;
* ``fast-v11-clear`` (below): the same on backgrounds cut clear of the exposures' own sources;
* ``fast-v11-clear-masked`` (below): ``fast-v11-clear`` subtracting the masked annulus mean, not the
  stamp median;
* ``fast-v11-mismatch`` (below): ``fast-v11`` fine-tuned on galaxies that differ from their model;
* ``fast-v11-wide-seeing`` (below): ``fast-v11`` fine-tuned on a survey with a wider seeing range;
* ``fast-v11-sky-removed`` (below): ``fast-v11`` fine-tuned on backgrounds with part of their sky removed;
* ``fast-v11-dark-sky`` (below): ``fast-v11`` fine-tuned on crowded backgrounds of a darker simulated sky;
* ``fast-mf-v12`` (below): ``fast-v11`` anchored on the matched-filter flux (``ModelConfig.anchor``);
* ``fast-mf-v12-nobg-ft`` (below): the shipped default ``lumos-fast-mf-v12-nobg-ft``, ``fast-mf-v12``
  fine-tuned without the background input;
* ``fast-mf-v12-mismatch`` (below): ``fast-mf-v12`` fine-tuned on galaxies that differ from their model;
* ``fast-mf-v12-mixed`` (below): the same on stamps of which half differ from their model;
* ``fast-mf-r-v13-mixed`` (below): ``fast-mf-v12`` with a width head that sees the model departure;
* ``fast-mf-noccd-v12``: ``fast-mf-v12`` without the CCD position (the PIT comparison);
* ``fast-mf-v13-clear-ft`` (below): a candidate, the shipped default fine-tuned on backgrounds cut
  clear of the exposures' own sources;
* ``fast-mf-v14`` (below): a candidate, ``fast-mf-v12`` from scratch without the background input, on
  clear positions of full 4096 x 2048 CCDs; ``fast-mf-noccd-v14`` its no-CCD companion;
* ``fast-mf-v15-ft`` (below): a candidate, ``fast-mf-v13-clear-ft`` with half of its stamps at clear
  positions; ``fast-mf-noccd-v15-ft`` (below), the shipped no-CCD companion fine-tuned the same way on
  full CCDs;
* ``default``: the recipe of the shipped default model (``fast-mf-v12-nobg-ft``)."""
RECIPES["fast-v11"] = Recipe(
    survey={**_SURVEY, "bands": NB_BANDS},
    teahupoo=_REFERENCE_TEAHUPOO,
    train={**_TRAIN, "epochs": 12, "lr_step": 9, "frozen_bn_epochs": 3},
)
"""``fast-v10`` on all 40 narrow bands x 2 epochs (two exposures per band and epoch, each band on
its PAUCam CCD: 160 CCD images of 2048^2 px): every PAUS band x epoch row of the embedding is
trained."""
RECIPES["fast-v11-noise-texture"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo={**_REFERENCE_TEAHUPOO, "n_stamps": 60_000, "seed": 3, "noise_texture_fraction": 0.5,
              "noise_kernel_sigma_range": (0.0, 1.5), "noise_resample_kernels": ("none", "bilinear", "lanczos3")},
    train={**_TRAIN, "epochs": 5, "lr": 2e-4, "lr_step": 3, "frozen_bn_epochs": 5},
    init="fast-v11",
)
"""An experiment, not shipped (``reports/lumos/noise-texture/``): ``fast-v11``'s weights fine-tuned
(every layer, BatchNorm running statistics kept: frozen for all 5 epochs; Adam lr 2e-4, then 2e-5
from epoch 4) on 60,000 new stamps (seed 3) of the same survey and draw, half of them with
re-textured background noise (``TeahupooConfig.noise_texture_fraction``: a Gaussian kernel of
0-1.5 px convolved with no, bilinear or Lanczos-3 resampling at a random sub-pixel shift; same
per-pixel sigma)."""
RECIPES["fast-v11-no-background"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo=_REFERENCE_TEAHUPOO,
    train={**_TRAIN, "epochs": 4, "lr": 2e-4, "lr_step": 3, "frozen_bn_epochs": 4, "max_train": 60_000,
           "drop_inputs": ("background",)},
    init="fast-v11",
)
"""An experiment (``reports/lumos/background-input/``): ``fast-v11``'s weights fine-tuned without the
background input (the stamp median, which the simulator ties to the pixel noise and real
sky-subtracted or raw frames do not), every other weight carried over; 60,000 stamps of
``fast-v11``'s own training set, 4 epochs, Adam lr 2e-4 (2e-5 from epoch 4), BatchNorm frozen."""
RECIPES["fast-v11-clear"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo={**_REFERENCE_TEAHUPOO, "n_stamps": 60_000, "seed": 4, "target_clearance": 6.0},
    train=RECIPES["fast-v11-no-background"].train,
    init="fast-v11",
)
"""An experiment: ``fast-v11-no-background`` on 60,000 new stamps (seed 4) whose backgrounds are cut
only around positions 6 px from the simulated exposures' own sources
(``TeahupooConfig.target_clearance``, the injection's placement rule), so that no stamp centre
sits on light that is not in the truth."""
RECIPES["fast-v11-clear-masked"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo=RECIPES["fast-v11-clear"].teahupoo,
    train={**RECIPES["fast-v11-clear"].train, "stamp_background": "masked_annulus"},
    init="fast-v11",
)
"""An experiment: ``fast-v11-clear`` (same stamps) with the stamp background
``"masked_annulus"`` (``lumos_ops.lumos.preprocess.stamp_background``), the mean sky of the annulus
from 15 to 29 px with the sources detected in it left out, instead of the stamp median, which
faint sources lift on crowded real frames."""
RECIPES["fast-v11-mismatch"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo={**_REFERENCE_TEAHUPOO, "n_stamps": 60_000, "seed": 5, **TRUTH_MISMATCH},
    train=RECIPES["fast-v11-noise-texture"].train,
    init="fast-v11",
)
"""An experiment (``reports/lumos/truth-mismatch/``): ``fast-v11``'s weights fine-tuned (BatchNorm
statistics kept, 5 epochs, Adam lr 2e-4, 2e-5 from epoch 4) on 60,000 new stamps (seed 5) whose galaxy is
not exactly its model channel (:mod:`lumos_ops.sim.truth_mismatch`): PSF FWHM x 0.6-1.6 for both, the
galaxy's PSF a Moffat of beta 2-6 and width scattered by 5 %, its half-light radius by 10 %, and 30 % of
the galaxies with 5-30 % of their flux in 1-8 point-like knots."""
RECIPES["fast-v11-wide-seeing"] = Recipe(
    survey={**RECIPES["fast-v11"].survey, "seed": 2, "psf_fwhm_range": (0.4, 1.6), "psf_fwhm_median": 0.75,
            "psf_fwhm_scatter": 0.4},
    teahupoo={**_REFERENCE_TEAHUPOO, "n_stamps": 60_000, "seed": 6},
    train=RECIPES["fast-v11-noise-texture"].train,
    init="fast-v11",
)
"""An experiment (``reports/lumos/truth-mismatch/``): ``fast-v11``'s weights fine-tuned as
``fast-v11-mismatch`` on 60,000 stamps (seed 6) of a new survey (seed 2) whose seeing is drawn
log-normally around 0.75" with scatter 0.4 in 0.4-1.6" (1.5-6.1 px; ``fast-v11``'s survey: around 0.95"
with scatter 0.2 in 0.7-1.4"), so that targets and the exposures' own sources share PSFs as small as
those of the SDSS frames; every galaxy is its model."""
RECIPES["fast-v11-sky-removed"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo={**_REFERENCE_TEAHUPOO, "n_stamps": 60_000, "seed": 7, "sky_removed_range": (0.0, 1.0)},
    train=RECIPES["fast-v11-noise-texture"].train,
    init="fast-v11",
)
"""An experiment (``reports/lumos/truth-mismatch/``): ``fast-v11``'s weights fine-tuned as
``fast-v11-mismatch`` on 60,000 stamps (seed 7) of ``fast-v11``'s survey with 0-100 % of each
background's sky subtracted (``TeahupooConfig.sky_removed_range``): the simulated exposures' sky
sets their noise, a real sky-subtracted frame's does not."""
RECIPES["fast-v11-dark-sky"] = Recipe(
    survey={**RECIPES["fast-v11"].survey, "seed": 3, "sky_rate": 6.0 / 256},
    teahupoo={**_REFERENCE_TEAHUPOO, "n_stamps": 60_000, "seed": 8, "background_scale_range": (3.0, 12.0)},
    train=RECIPES["fast-v11-noise-texture"].train,
    init="fast-v11",
)
"""An experiment (``reports/lumos/truth-mismatch/``): ``fast-v11``'s weights fine-tuned as
``fast-v11-mismatch`` on 60,000 stamps (seed 8) of a new survey (seed 3) whose sky is 256 times darker
(``sky_rate`` 6/256 e-/s/pixel), so that the faint galaxies the narrow band's sky noise hides are
detected: the 3-sigma source mask (``noise_calibration.source_mask``, after a 64-px median background is
subtracted) covers 0.27 of a simulated 2048^2 NB685 exposure (0.09 at the default sky; the SDSS frames:
0.27-0.33). Its pixel noise (0.045 e-/s, read noise) is 6.1 times below the default's (0.275 e-/s),
so the backgrounds are scaled by 3-12 (log-uniform; ``fast-v11``: 0.5-2): the noise of ``fast-v11``'s
training set, on crowded backgrounds."""
RECIPES["fast-mf-v12"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo=_REFERENCE_TEAHUPOO,
    train={**RECIPES["fast-v11"].train, "arch": "fast-mf", "stamp_background": "masked_annulus"},
)
"""``fast-v11`` (same survey, stamps and schedule) with the ``fast-mf`` architecture: the mixture is
anchored on the stamp's matched-filter flux and its error (``ModelConfig.anchor``), which the network
corrects, instead of being read from the pixels by the network alone. The stamp background is the
masked annulus mean (the classical baselines' estimator), which the matched-filter flux inherits.
Its network reads the background input, the stamp's sky level, which on real frames the reduction
sets, not the noise (``reports/lumos/sky-level``): ``fast-mf-v12-nobg-ft`` removes it."""
RECIPES["fast-noccd-v10"] = dataclasses.replace(
    RECIPES["fast-v10"], train={**RECIPES["fast-v10"].train, "drop_inputs": ("ccd_x", "ccd_y")}
)
RECIPES["fast-noccd-v11"] = dataclasses.replace(
    RECIPES["fast-v11"], train={**RECIPES["fast-v11"].train, "drop_inputs": ("ccd_x", "ccd_y")}
)
RECIPES["fast-mf-v12-mismatch"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo=RECIPES["fast-v11-mismatch"].teahupoo,
    train={**RECIPES["fast-v11-mismatch"].train, "arch": "fast-mf", "stamp_background": "masked_annulus"},
    init="fast-mf-v12",
)
"""``fast-mf-v12`` fine-tuned as ``fast-v11-mismatch`` (the same 60,000 stamps, seed 5, whose galaxy is not
exactly its model channel; 5 epochs, Adam lr 2e-4, BatchNorm statistics kept): the matched-filter
anchor is exact for a galaxy that is its model, and these stamps teach the network the error of a
galaxy that is not."""
RECIPES["fast-mf-v12-mixed"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo={**RECIPES["fast-v11-mismatch"].teahupoo, "seed": 9, "mismatch_fraction": 0.5},
    train=RECIPES["fast-mf-v12-mismatch"].train,
    init="fast-mf-v12",
)
"""``fast-mf-v12-mismatch`` on 60,000 new stamps (seed 9) of which only half have the truth-model mismatch
(``TeahupooConfig.mismatch_fraction``): the other half are exactly their model, so that the network can
learn to tell a galaxy that is its model from one that is not."""
RECIPES["fast-mf-r-v13-mixed"] = Recipe(
    survey=RECIPES["fast-v11"].survey,
    teahupoo=RECIPES["fast-mf-v12-mixed"].teahupoo,
    train={**RECIPES["fast-mf-v12-mixed"].train, "arch": "fast-mf-r", "train_only": "width_head", "lr": 1e-3},
    init="fast-mf-v12",
)
"""``fast-mf-v12``'s network with a width head that sees how far each stamp departs from its model
(``LumosNet.model_departure``), trained alone (``train_only``; the rest keeps ``fast-mf-v12``'s weights,
so the means are exactly v12's) on ``fast-mf-v12-mixed``'s stamps, half of them not their model:
5 epochs, Adam lr 1e-3 then 1e-4 from epoch 4."""
RECIPES["fast-mf-noccd-v12"] = dataclasses.replace(
    RECIPES["fast-mf-v12"], train={**RECIPES["fast-mf-v12"].train, "drop_inputs": ("ccd_x", "ccd_y")}
)
RECIPES["fast-mf-v12-nobg-ft"] = Recipe(
    survey=RECIPES["fast-mf-v12"].survey,
    teahupoo={**_REFERENCE_TEAHUPOO, "n_stamps": 70_000},
    train={**RECIPES["fast-mf-v12"].train, "epochs": 4, "lr": 2e-4, "lr_step": 3, "frozen_bn_epochs": 4,
           "max_train": 60_000, "drop_inputs": ("background",)},
    init="fast-mf-v12",
)
"""The shipped default (``reports/lumos/sky-level/``): ``fast-mf-v12``'s weights fine-tuned without the
background input (every layer, BatchNorm frozen; 60,000 stamps of a 70,000-stamp draw of its own
survey and TEAHUPOO configuration, 4 epochs,
Adam lr 2e-4, then 2e-5 from epoch 4), so that the network learns the noise from the pixels rather
than reading the training mean where the sky level was."""
RECIPES["fast-mf-noccd-v12-nobg-ft"] = dataclasses.replace(
    RECIPES["fast-mf-v12-nobg-ft"],
    train={**RECIPES["fast-mf-v12-nobg-ft"].train, "drop_inputs": ("ccd_x", "ccd_y", "background")},
    init="fast-mf-noccd-v12",
)
"""``fast-mf-v12-nobg-ft`` for the no-CCD companion: ``fast-mf-noccd-v12`` fine-tuned the same way."""
RECIPES["fast-mf-v13-clear-ft"] = Recipe(
    survey=RECIPES["fast-mf-v12"].survey,
    teahupoo={**_REFERENCE_TEAHUPOO, "n_stamps": 70_000, "seed": 13, "target_clearance": 6.0},
    train=RECIPES["fast-mf-v12-nobg-ft"].train,
    init="fast-mf-v12-nobg-ft",
)
"""A candidate (``reports/lumos/clear-positions/``): the shipped default fine-tuned as it was made (4
epochs, BatchNorm frozen, no background input) on 70,000 new stamps (seed 13) whose backgrounds are
cut only around positions at least 6 px from the exposures' own detected sources
(``TeahupooConfig.target_clearance``, the rule of ``lumos adapt``). A background cut on a real source
puts light in the stamp that is not in the truth; a network trained on such stamps learns to
discount light at the centre, and reads the catalogue's own targets low."""
RECIPES["fast-mf-v14"] = Recipe(
    survey={**RECIPES["fast-mf-v12"].survey, "ccd_shape": (4096, 2048)},
    teahupoo={**_REFERENCE_TEAHUPOO, "seed": 14, "target_clearance": 6.0},
    train={**RECIPES["fast-mf-v12"].train, "drop_inputs": ("background",), "amp": False},
)
"""A candidate, not shipped (``reports/lumos/scratch-v14``, docs/likelihood.md §12): on the real frames its
blends read 7-44 % low below true SNR 10. ``fast-mf-v12``'s network and schedule trained from scratch on
what the fine-tunes above found:
no background input (``fast-mf-v12-nobg-ft``), backgrounds cut only ≥ 6 px clear of the exposures'
own sources (``fast-mf-v13-clear-ft``), and the survey simulated on full PAUCam CCDs of 4096 x 2048 px
(``reports/lumos/ccd-extrapolation``), so that every CCD position of a PAUS exposure is in the trained
range. 120,000 stamps (seed 14), 12 epochs, in float32 on a GPU too (``amp`` off, as every earlier
recipe was trained on CPUs)."""
RECIPES["fast-mf-noccd-v14"] = dataclasses.replace(
    RECIPES["fast-mf-v14"], train={**RECIPES["fast-mf-v14"].train, "drop_inputs": ("ccd_x", "ccd_y", "background")}
)
"""``fast-mf-v14`` without the CCD position (the PIT comparison)."""
RECIPES["fast-mf-v15-ft"] = Recipe(
    survey=RECIPES["fast-mf-v12"].survey,
    teahupoo={**_REFERENCE_TEAHUPOO, "n_stamps": 70_000, "seed": 15, "target_clearance": 6.0,
              "clearance_fraction": 0.5},
    train={**RECIPES["fast-mf-v12-nobg-ft"].train, "amp": False},
    init="fast-mf-v12-nobg-ft",
)
"""A candidate (``reports/lumos/clear-half-v15``): ``fast-mf-v13-clear-ft`` with half of its stamps cut
anywhere (``TeahupooConfig.clearance_fraction`` 0.5; seed 15): the shipped default fine-tuned as it was
made on its own 2048 x 2048 survey, so that its CCD-position normalisation stays the default's."""
RECIPES["fast-mf-noccd-v15-ft"] = dataclasses.replace(
    RECIPES["fast-mf-v15-ft"],
    survey=RECIPES["fast-mf-v14"].survey,
    train={**RECIPES["fast-mf-v15-ft"].train, "drop_inputs": ("ccd_x", "ccd_y", "background")},
    init="fast-mf-noccd-v12-nobg-ft",
)
"""A candidate (``reports/lumos/clear-half-v15``): the shipped no-CCD companion fine-tuned as it was made
(every layer, BatchNorm frozen, 60,000 of 70,000 stamps, 4 epochs, Adam lr 2e-4 then 2e-5 from epoch 4)
on ``fast-mf-v14``'s survey of full 4096 x 2048 CCDs, half of the stamps cut ≥ 6 px clear of the
exposures' own sources and half anywhere (``TeahupooConfig.clearance_fraction`` 0.5; seed 15). Stamps cut
anywhere teach a network to discount a target's own light at the centre (``fast-mf-v13-clear-ft``);
clear-only stamps (``fast-mf-noccd-v14``) left it reading blends low on the real frames."""
DEFAULT_RECIPE = "fast-mf-v12-nobg-ft"
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
    workers: int = 1,
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
        Override :class:`TrainConfig` fields; the configuration and its ``init_model`` are checked
        before anything is simulated (for a recipe that fine-tunes another, after that recipe has run).
    resume : bool, keyword-only
        Continue an interrupted training.
    progress : bool, keyword-only
    workers : int, keyword-only
        Processes that simulate the survey's CCD images and cut the TEAHUPOO stamps
        (``simulate_survey``, ``generate_training_set``; the same files for any number).
    """
    return _run(name, Path(out_dir), Path(out_dir) / "survey", n_stamps=n_stamps, train_options=train_options,
                resume=resume, progress=progress, workers=workers)


def _run(name: str, out: Path, survey_dir: Path, *, n_stamps: int | None, train_options: dict[str, Any] | None,
         resume: bool, progress: bool, workers: int) -> dict[str, Any]:
    """:func:`run_recipe` with the survey in ``survey_dir`` (shared with the recipe it fine-tunes).

    The training configuration and its initial model (architecture, band x epoch rows) are checked
    before this recipe simulates anything (a recipe it fine-tunes runs first)."""
    from lumos_ops.io.catalog import read_catalog
    from lumos_ops.lumos.train import TrainConfig, check_init_model, train
    from lumos_ops.sim import SurveyConfig, TeahupooConfig, generate_training_set, simulate_survey

    if name not in RECIPES:
        raise LumosValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    recipe = RECIPES[name]
    set_dir, model_dir = out / "teahupoo", out / "model"
    options = dict(train_options or {})
    if recipe.init is not None and options.get("init_model") is None:
        init_out = out / f"init-{recipe.init}"
        shared = RECIPES[recipe.init].survey == recipe.survey
        log.info("recipe %s: training the recipe it starts from, %s, in %s", name, recipe.init, init_out)
        _run(recipe.init, init_out, survey_dir if shared else init_out / "survey", n_stamps=None,
             train_options={"progress": progress}, resume=resume, progress=progress, workers=workers)
        options["init_model"] = str(init_out / "model" / "model.pt")
    survey_config = SurveyConfig.from_dict(dict(recipe.survey))
    options = {**recipe.train, **options, "ccd_shape": tuple(survey_config.ccd_shape)}
    options.setdefault("progress", progress)
    config = TrainConfig(**options)
    check_init_model(config)
    if not (survey_dir / "manifest.json").is_file():
        log.info("recipe %s: simulating the survey in %s", name, survey_dir)
        simulate_survey(survey_config, survey_dir, progress=progress, workers=workers)
    teahupoo = dict(recipe.teahupoo)
    if n_stamps is not None:
        teahupoo["n_stamps"] = n_stamps
    set_config = TeahupooConfig(**teahupoo)
    manifest_path = set_dir / "manifest.json"
    existing = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    if existing is None or existing.get("config") != set_config.to_dict():
        log.info("recipe %s: generating %d TEAHUPOO stamps in %s", name, set_config.n_stamps, set_dir)
        generate_training_set(set_config, _fits(survey_dir), read_catalog(survey_dir / "catalog.parquet"), set_dir,
                              progress=progress, workers=workers)
    metadata = {"recipe": {"name": name, "survey": recipe.survey, "teahupoo": teahupoo, "train": recipe.train,
                           **({"init": recipe.init} if recipe.init is not None else {})}}
    return train(set_dir, model_dir, config, resume=resume, metadata=metadata)
