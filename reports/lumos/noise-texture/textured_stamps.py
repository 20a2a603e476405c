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

import json
import sys

import torch
from split_scores import grouped, predict_test_split, print_rows


def score(set_dir: str, model: str) -> dict[str, dict[str, float]]:
    """{"white|textured flux LO-HI": figures} of ``model`` on the test split of ``set_dir``."""
    meta, mean, std, truth = predict_test_split(set_dir, model)
    textured = meta["noise_textured"].to_numpy(bool)
    return grouped(mean, std, truth, {"white": ~textured, "textured": textured})


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    set_dir, out_path, models = argv[1], argv[2], argv[3:]
    result = {"set": set_dir, "models": {m: score(set_dir, m) for m in models}}
    print_rows(result["models"])
    with open(out_path, "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
