"""A `lumos adapt` candidate on its own TEAHUPOO validation stamps (cut from its training exposures):
where the true flux falls in its likelihood, by SNR and by whether the stamp holds an added
neighbour, to set against the held-out exposures of `faint_offsets.py`.

    .venv/bin/python reports/adapt/stars-training/faint-offset/validation_stamps.py OUT.json RUN_DIR [RUN_DIR ...] \
        [--split train --max-stamps N]

RUN_DIR holds `model.pt` and `teahupoo/`. SNR here is f0 over the likelihood's 68 % half-width.
Per bin: the share of stamps whose truth lies below the 16th, 50th, 84th percentile of the
likelihood, and the clipped mean (|z| < 3) of z = (flux - f0) / flux_err with its standard error.
``--split train`` scores (a seeded random ``--max-stamps`` of) the stamps the candidate was trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from lumos_ops.evaluation.stamp_inference import lumos_on_training_set
from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint

BINS: tuple[tuple[float, float], ...] = ((1, 2), (2, 5), (5, 10), (10, 20), (20, 50), (50, 1e9))


def score(run: Path, split: str = "val", max_stamps: int | None = None) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    loaded = load_checkpoint(run / "model.pt", device="cpu")
    meta = pd.read_parquet(run / "teahupoo" / "meta.parquet")
    ids = np.flatnonzero(meta["split"].to_numpy() == split)
    if max_stamps is not None and ids.size > max_stamps:
        ids = np.sort(np.random.default_rng(0).choice(ids, max_stamps, replace=False))
    res = lumos_on_training_set(loaded, TrainingSet(run / "teahupoo"), ids)
    meta = meta.iloc[ids].reset_index(drop=True)
    alpha, mu, sigma = (res[[f"{k}_{i}" for i in range(5)]].to_numpy() for k in ("alpha", "mu", "sigma"))
    f0 = meta["flux"].to_numpy()
    pit = (alpha * norm.cdf((f0[:, None] - mu) / sigma)).sum(axis=1)
    snr = f0 / res["flux_err"].to_numpy()
    z = (res["flux"].to_numpy() - f0) / res["flux_err"].to_numpy()
    neighbour = meta["nbr_ref_id"].to_numpy() >= 0
    rows = []
    for has in (False, True):
        for lo, hi in BINS:
            sel = (neighbour == has) & (snr >= lo) & (snr < hi)
            n = int(sel.sum())
            rows.append({"neighbour": has, "lo": lo, "hi": hi, "n": n,
                         "p_below_q16": float(np.mean(pit[sel] < 0.16)) if n else None,
                         "p_below_median": float(np.mean(pit[sel] < 0.5)) if n else None,
                         "p_below_q84": float(np.mean(pit[sel] < 0.84)) if n else None,
                         "p_below_median_err": float(np.sqrt(0.25 / n)) if n else None})
            kept = z[sel][np.abs(z[sel]) < 3]
            rows[-1].update(z_clipped_mean=float(kept.mean()) if kept.size else None,
                            z_clipped_mean_err=float(kept.std() / np.sqrt(kept.size)) if kept.size > 1 else None)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--split", default="val", choices=("val", "train"))
    parser.add_argument("--max-stamps", type=int, default=None)
    args = parser.parse_args()
    result = {}
    for run in args.runs:
        result[Path(run).name] = score(Path(run), args.split, args.max_stamps)
        for row in result[Path(run).name]:
            if row["n"]:
                print(f"{Path(run).name} neighbour {row['neighbour']!s:5} SNR {row['lo']:g}-{row['hi']:g} n {row['n']:4d} "
                      f"P(f0 < q16 / median / q84) {row['p_below_q16']:.2f} / {row['p_below_median']:.2f} "
                      f"± {row['p_below_median_err']:.2f} / {row['p_below_q84']:.2f}; z clipped mean "
                      f"{row['z_clipped_mean']:+.3f} ± {row['z_clipped_mean_err'] or float('nan'):.3f}")
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
