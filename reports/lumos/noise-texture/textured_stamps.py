"""LUMOS checkpoints on the test split of a TEAHUPOO set with re-textured backgrounds, white vs textured.

Usage: ``PYTHONPATH=reports/lumos .venv/bin/python reports/lumos/noise-texture/textured_stamps.py SET_DIR OUT.json MODEL [MODEL ...]``.
SET_DIR is a set made with ``noise_texture_fraction > 0`` (its ``meta.parquet`` has ``noise_textured``).
For the stamps of the ``test`` split, per model, per background kind and per true-flux bin (e-/s):
sigma68 of (mixture mean - true flux) in e-/s, the median mixture standard deviation, pull sigma68
of (mean - truth) / std and the fraction with |mean - truth| < std (``split_scores.figures``). The
fluxes are the set's reference-prior draws (docs/likelihood.md), so these figures compare models and
kinds of background with each other, not with the fixed-truth targets.
"""

from __future__ import annotations

import sys

from split_scores import grouped, main, predict_test_split


def score(set_dir: str, model: str) -> dict[str, dict[str, float]]:
    """{"white|textured flux LO-HI": figures} of ``model`` on the test split of ``set_dir``."""
    meta, mean, std, truth = predict_test_split(set_dir, model)
    textured = meta["noise_textured"].to_numpy(bool)
    return grouped(mean, std, truth, {"white": ~textured, "textured": textured})


if __name__ == "__main__":
    sys.exit(main(sys.argv, score))
