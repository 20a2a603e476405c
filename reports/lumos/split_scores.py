"""LUMOS checkpoints on the test split of a TEAHUPOO set: the mixture mean and standard deviation of every
test stamp, and the error figures of a group of them. Shared by the report scripts that compare models on
sets made with an augmentation (``noise-texture/textured_stamps.py``, ``truth-mismatch/mismatch_stamps.py``).

The fluxes of a reference-prior set are draws from that prior (docs/likelihood.md), so these figures
compare models and groups of stamps with each other, not with the fixed-truth targets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.data import StampBatches
from lumos_ops.lumos.mixture import mixture_mean, mixture_variance
from lumos_ops.lumos.train import _loader, evaluate_split

FLUX_BINS = ((-math.inf, 20.0), (20.0, 100.0), (100.0, math.inf))
"""True-flux bins (e-/s) of the figures."""


def predict_test_split(set_dir: str, model: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """(meta rows, mixture mean, mixture std, true flux) of the ``test`` stamps of ``set_dir``, fluxes in e-/s."""
    ts = TrainingSet(set_dir)
    ids = ts.indices("test")
    loaded = load_checkpoint(model, device="cpu")
    data = StampBatches(ts, ids, loaded.normalization, truncation_imag=math.inf, flux_prior=ts.flux_prior)
    pred = evaluate_split(loaded.net, _loader(data, 256, shuffle_seed=None), torch.device("cpu"))
    scale = loaded.normalization.flux_scale
    alpha = pred["alpha"] / pred["alpha"].sum(axis=1, keepdims=True)
    mean = mixture_mean(alpha, pred["mu"] * scale, pred["sigma"] * scale, pred["truncated"])
    std = np.sqrt(mixture_variance(alpha, pred["mu"] * scale, pred["sigma"] * scale, pred["truncated"]))
    return ts.meta.iloc[ids].reset_index(drop=True), mean, std, pred["flux"] * scale


def figures(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """n, sigma68 of (mean - truth) (e-/s), median std (e-/s), pull sigma68 and the fraction with |pull| < 1."""
    err, pull = mean - truth, (mean - truth) / std
    e16, e84 = np.percentile(err, [16, 84])
    p16, p84 = np.percentile(pull, [16, 84])
    return {"n": int(len(err)), "error_sigma68": float(0.5 * (e84 - e16)), "median_std": float(np.median(std)),
            "pull_sigma68": float(0.5 * (p84 - p16)), "coverage68": float(np.mean(np.abs(pull) < 1.0))}


def grouped(mean: np.ndarray, std: np.ndarray, truth: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, dict]:
    """:func:`figures` per group (boolean mask) and true-flux bin, keyed ``"GROUP flux LO-HI"``; empty cells left out."""
    out = {}
    for name, mask in groups.items():
        for lo, hi in FLUX_BINS:
            sel = mask & (truth >= lo) & (truth < hi)
            if sel.sum() >= 10:
                out[f"{name} flux {lo:g}-{hi:g}"] = figures(mean[sel], std[sel], truth[sel])
    return out


def print_rows(result: dict[str, dict[str, dict]]) -> None:
    """One line per model and cell."""
    for model, rows in result.items():
        for key, row in rows.items():
            print(f"{model} | {key} | " + " | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in row.items()))


def main(argv: list[str], score: Callable[[str, str], dict[str, dict[str, float]]]) -> int:
    """``SCRIPT SET_DIR OUT.json MODEL [MODEL ...]``: ``score(SET_DIR, MODEL)`` of every model, printed and written."""
    torch.set_num_threads(1)
    set_dir, out_path, models = argv[1], argv[2], argv[3:]
    result = {"set": set_dir, "models": {m: score(set_dir, m) for m in models}}
    print_rows(result["models"])
    with open(out_path, "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    return 0
