"""Fixed-truth calibration of the shipped default on fresh stamps drawn as its own recipe draws.

Usage: ``.venv/bin/python reports/lumos/recipe_calibration.py [N_STAMPS] [WORKDIR]`` (default 4,000
stamps in a temporary directory). A fresh exposure (seed 1234 draw) of every fifth band of the
recipe's survey, epoch 0, as ``tests/lumos/test_shipped_calibration.py`` does; prints the model
card's table by true flux (e-/s): coverage of [q16, q84], pull sigma68 and median relative bias,
plus the importance-weighted coverage and mean PIT under the flat reference prior.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from lumos_ops.io.catalog import read_catalog
from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.inference import predict_mixtures
from lumos_ops.lumos.mixture import mixture_cdf, mixture_quantile
from lumos_ops.lumos.preprocess import prepare_inputs
from lumos_ops.lumos.recipe import RECIPES
from lumos_ops.sim import SurveyConfig, TeahupooConfig, generate_training_set, simulate_survey


def main(argv: list[str]) -> int:
    n = int(argv[1]) if len(argv) > 1 else 4000
    work = Path(argv[2]) if len(argv) > 2 else Path(tempfile.mkdtemp(prefix="recipe-calibration-"))
    recipe = RECIPES["default"]
    survey = SurveyConfig.from_dict({**recipe.survey, "bands": tuple(recipe.survey["bands"][::5]),
                                     "n_exposures": 1, "n_epochs": 1})
    if not (work / "survey" / "manifest.json").is_file():
        simulate_survey(survey, work / "survey", progress=False)
    exposures = sorted(str(p) for p in (work / "survey" / "exposures").rglob("*.fits"))
    if not (work / "stamps" / "manifest.json").is_file():
        config = TeahupooConfig(**{**recipe.teahupoo, "n_stamps": n, "seed": 1234})
        generate_training_set(config, exposures, read_catalog(work / "survey" / "catalog.parquet"), work / "stamps",
                              progress=False)
    stamps = TrainingSet(work / "stamps")
    meta = stamps.meta
    images = stamps.images(np.arange(len(meta)))
    loaded = load_checkpoint(None, device="cpu")
    inputs = prepare_inputs(images[:, 0], images[:, 1], meta["i_auto"].to_numpy(), meta["ccd_x"].to_numpy(),
                            meta["ccd_y"].to_numpy(), meta["band_epoch"].to_numpy(), loaded.normalization)
    mix = predict_mixtures(loaded, inputs, meta["i_auto"].to_numpy())
    args = (mix.alpha, mix.mu, mix.sigma, mix.truncated)
    truth = meta["flux"].to_numpy()
    lo, mid, hi = (mixture_quantile(q, *args) for q in (0.16, 0.5, 0.84))
    inside = (truth >= lo) & (truth <= hi)
    pull = (mid - truth) / (0.5 * (hi - lo))
    print(f"model {loaded.path}; {len(truth)} stamps, bands {', '.join(survey.bands)}, epoch 0")
    print("| true flux (e⁻/s) | n | coverage of [q16, q84] | pull σ68 | median relative bias |")
    print("|---|---|---|---|---|")
    for low, high in ((3.0, 10.0), (10.0, 30.0), (30.0, 100.0), (100.0, 300.0), (300.0, 1200.0)):
        sel = (truth >= low) & (truth < high)
        width = 0.5 * np.subtract(*np.percentile(pull[sel], [84, 16]))
        bias = np.median((mid[sel] - truth[sel]) / truth[sel])
        print(f"| {low:g}–{high:g} | {sel.sum()} | {inside[sel].mean():.2f} | {width:.2f} | {bias:+.3f} |")
    w = loaded.flux_prior.importance_weights(truth)
    w = w / w.sum()
    pit = mixture_cdf(truth, *args)
    print(f"under the flat reference prior (importance-weighted, n_eff {1 / np.sum(w * w):.0f}): "
          f"coverage {np.sum(w * inside):.3f}, mean PIT {np.sum(w * pit):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
