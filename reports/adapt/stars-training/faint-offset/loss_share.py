"""Where the fine-tuning loss of a reference-prior TEAHUPOO set sits: the share of the stamps and of
the loss weight by true SNR, under the importance weights ``1 / g(f)`` and the balanced weights
``g(f_hat) / g(f)`` (``ReferencePrior.balanced_weights``), and the effective sample size of each.

    .venv/bin/python reports/adapt/stars-training/faint-offset/loss_share.py OUT.json TEAHUPOO_DIR [--n 6000]

True SNR of a stamp: f0 over the matched-filter error ``1.4826 MAD(d) / sqrt(sum m^2)`` of its
pixels (uniform noise, the stamp's median background), for a seeded random ``--n`` of its training
stamps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.preprocess import pixel_flux_estimate, stamp_background

BINS: tuple[tuple[float, float], ...] = ((-np.inf, 1), (1, 2), (2, 5), (5, 10), (10, 20), (20, 50), (50, np.inf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("training_set")
    parser.add_argument("--n", type=int, default=6000)
    args = parser.parse_args()
    ts = TrainingSet(args.training_set)
    prior = ts.flux_prior
    ids = np.sort(np.random.default_rng(0).choice(ts.indices("train"), args.n, replace=False))
    images = ts.images(ids).astype(np.float64)
    cutouts, models = images[:, 0], images[:, 1]
    background = stamp_background(cutouts)
    flat = (cutouts - background[:, None, None]).reshape(len(ids), -1)
    noise = 1.4826 * np.median(np.abs(flat), axis=1)
    error = noise / np.sqrt((models * models).sum(axis=(1, 2)))
    flux = ts.meta["flux"].to_numpy()[ids]
    snr = flux / error
    weights = {"importance": prior.importance_weights(flux),
               "balanced": prior.balanced_weights(flux, pixel_flux_estimate(cutouts, models, background))}
    rows = []
    for lo, hi in BINS:
        sel = (snr >= lo) & (snr < hi)
        rows.append({"lo": None if np.isinf(lo) else lo, "hi": None if np.isinf(hi) else hi,
                     "stamps": float(sel.mean()),
                     **{f"{name}_loss_share": float(w[sel].sum() / w.sum()) for name, w in weights.items()}})
    ess = {name: float(w.sum() ** 2 / (w * w).sum() / w.size) for name, w in weights.items()}
    result = {"training_set": str(Path(args.training_set).resolve()), "n": int(ids.size), "by_true_snr": rows,
              "effective_sample_fraction": ess}
    for row in rows:
        print(f"true SNR {row['lo']}-{row['hi']}: stamps {row['stamps']:.3f}, loss share importance "
              f"{row['importance_loss_share']:.3f}, balanced {row['balanced_loss_share']:.3f}")
    print("effective sample fraction: " + ", ".join(f"{k} {v:.2f}" for k, v in ess.items()))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
