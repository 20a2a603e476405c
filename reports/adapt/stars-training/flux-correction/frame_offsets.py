"""Per-sub-frame flux offsets of a `lumos adapt` run's injections, and the corrections applied.

For each run directory: the floor injection (training sub-frames) and the held-out injection of the
candidate (and the base model's classical rows), per frame and method, the median of measured over
injected flux at true SNR >= 50 (with its bootstrap error over galaxies) and at true SNR 5-50, the
median `flux_correction` the rows were measured with, and the error floor the frame's rows ask for
alone (`estimate_error_floor`, galaxy bootstrap). Prints a Markdown table and writes JSON.

    .venv/bin/python reports/adapt/stars-training/flux-correction/frame_offsets.py OUT.json RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.photometry.error_floor import estimate_error_floor, statistical_error
from lumos_ops.stats import block_resamples


def _median_err(ratio: np.ndarray, galaxy: np.ndarray) -> tuple[float, float]:
    if ratio.size < 5:
        return float("nan"), float("nan")
    draws = block_resamples(galaxy, ratio.size, np.random.default_rng(0), 200)
    return float(np.median(ratio)), float(np.std([np.median(ratio[d]) for d in draws]))


def _frames(table: pd.DataFrame, split: str) -> list[dict]:
    rows = []
    for (method, frame), part in table.groupby(["method", "frame"], sort=True):
        part = part[np.isfinite(part["flux"])]
        ratio = (part["flux"] / part["true_flux"]).to_numpy()
        galaxy = part["galaxy"].to_numpy()
        bright = part["true_snr"].to_numpy() >= 50
        middle = (part["true_snr"].to_numpy() >= 5) & ~bright
        floor = estimate_error_floor(part["flux"], statistical_error(part), part["true_flux"], groups=part["galaxy"])
        b, b_err = _median_err(ratio[bright], galaxy[bright])
        m, m_err = _median_err(ratio[middle], galaxy[middle])
        correction = part["flux_correction"].to_numpy(np.float64) if "flux_correction" in part else np.ones(len(part))
        rows.append({"split": split, "method": method, "frame": Path(frame).name, "bright": b, "bright_err": b_err,
                     "n_bright": int(bright.sum()), "middle": m, "middle_err": m_err,
                     "correction": float(np.median(correction)), "floor": floor.floor, "floor_err": floor.floor_err})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    result = {}
    for run in args.runs:
        rows = []
        floor = sorted(glob.glob(str(run / "floor" / "sersic-*-snr50-150.parquet")))
        if floor:
            rows += _frames(pd.read_parquet(floor[-1]), "training")
        for name in ("sersic-candidate", "sersic-base"):
            path = run / "injection" / f"{name}.parquet"
            if path.is_file():
                table = pd.read_parquet(path)
                if name == "sersic-base":
                    table = table[table["method"] != "lumos"]
                rows += _frames(table, "held-out")
        result[str(run)] = rows
        print(f"\n### {run}\n")
        print("| split | method | frame | f/f0 at SNR ≥ 50 | f/f0 at SNR 5–50 | correction | floor asked |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['split']} | {r['method']} | {r['frame']} | {r['bright']:.4f} ± {r['bright_err']:.4f} "
                  f"({r['n_bright']}) | {r['middle']:.4f} ± {r['middle_err']:.4f} | {r['correction']:.4f} | "
                  f"{100 * r['floor']:.2f} ± {100 * r['floor_err']:.2f} % |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")


if __name__ == "__main__":
    main()
