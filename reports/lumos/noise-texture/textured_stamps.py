"""LUMOS checkpoints on the test split of a TEAHUPOO set with re-textured backgrounds, white vs textured.

Usage: ``.venv/bin/python reports/lumos/noise-texture/textured_stamps.py SET_DIR OUT.json MODEL [MODEL ...]``.
SET_DIR is a set made with ``noise_texture_fraction > 0`` (its ``meta.parquet`` has ``noise_textured``).
For the stamps of the ``test`` split, per model, per background kind and per true-flux bin (e-/s):
sigma68 of (mixture mean - true flux) in e-/s, the median mixture standard deviation, pull sigma68
of (mean - truth) / std and the fraction with |mean - truth| < std. The fluxes are the set's
reference-prior draws (docs/likelihood.md), so these figures compare models and kinds of
background with each other, not with the fixed-truth targets.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch

from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.data import StampBatches
from lumos_ops.lumos.mixture import mixture_mean, mixture_variance
from lumos_ops.lumos.train import _loader, evaluate_split

FLUX_BINS = ((-math.inf, 20.0), (20.0, 100.0), (100.0, math.inf))


def score(set_dir: str, model: str) -> dict[str, dict[str, float]]:
    """{"white|textured flux LO-HI": figures} of ``model`` on the test split of ``set_dir``."""
    ts = TrainingSet(set_dir)
    ids = ts.indices("test")
    textured = ts.meta["noise_textured"].to_numpy()[ids]
    loaded = load_checkpoint(model, device="cpu")
    data = StampBatches(ts, ids, loaded.normalization, truncation_imag=math.inf, flux_prior=ts.flux_prior)
    pred = evaluate_split(loaded.net, _loader(data, 256, shuffle_seed=None), torch.device("cpu"))
    scale = loaded.normalization.flux_scale
    alpha = pred["alpha"] / pred["alpha"].sum(axis=1, keepdims=True)
    mean = mixture_mean(alpha, pred["mu"] * scale, pred["sigma"] * scale, pred["truncated"])
    std = np.sqrt(mixture_variance(alpha, pred["mu"] * scale, pred["sigma"] * scale, pred["truncated"]))
    truth = pred["flux"] * scale
    out = {}
    for kind, flag in (("white", False), ("textured", True)):
        for lo, hi in FLUX_BINS:
            sel = (textured == flag) & (truth >= lo) & (truth < hi)
            err, pull = (mean - truth)[sel], ((mean - truth) / std)[sel]
            e16, e84 = np.percentile(err, [16, 84])
            p16, p84 = np.percentile(pull, [16, 84])
            out[f"{kind} flux {lo:g}-{hi:g}"] = {
                "n": int(sel.sum()), "error_sigma68": float(0.5 * (e84 - e16)), "median_std": float(np.median(std[sel])),
                "pull_sigma68": float(0.5 * (p84 - p16)), "coverage68": float(np.mean(np.abs(pull) < 1.0)),
            }
    return out


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    set_dir, out_path, models = argv[1], argv[2], argv[3:]
    result = {"set": set_dir, "models": {m: score(set_dir, m) for m in models}}
    for model, rows in result["models"].items():
        for key, row in rows.items():
            print(f"{model} | {key} | " + " | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    with open(out_path, "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
