"""LUMOS checkpoints on the test split of a TEAHUPOO set made with a truth-model mismatch.

Usage: ``PYTHONPATH=reports/lumos .venv/bin/python reports/lumos/truth-mismatch/mismatch_stamps.py SET_DIR OUT.json MODEL [MODEL ...]``.
SET_DIR is a set made with ``TeahupooConfig.truth_mismatch`` (its ``meta.parquet`` has ``knot_flux_frac``).
Groups of test stamps: ``smooth`` (no knots) and ``knots``; ``beta<3`` and ``beta>=3`` (the galaxy's PSF
Moffat beta, the model's is the exposure's); per true-flux bin (e-/s) the ``split_scores.figures``.
The fluxes are reference-prior draws: compare models and groups, not the fixed-truth targets.
"""

from __future__ import annotations

import sys

from split_scores import grouped, main, predict_test_split


def score(set_dir: str, model: str) -> dict[str, dict[str, float]]:
    """{"GROUP flux LO-HI": figures} of ``model`` on the test split of ``set_dir``."""
    meta, mean, std, truth = predict_test_split(set_dir, model)
    knots = meta["knot_flux_frac"].to_numpy() > 0
    winged = meta["truth_psf_beta"].to_numpy() < 3.0
    return grouped(mean, std, truth, {"all": knots | ~knots, "smooth": ~knots, "knots": knots,
                                      "beta<3": winged, "beta>=3": ~winged})


if __name__ == "__main__":
    sys.exit(main(sys.argv, score))
