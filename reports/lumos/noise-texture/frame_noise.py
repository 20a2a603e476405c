"""Pixel-noise texture of frames: lag-1 and lag-2 autocorrelation and skewness of the sky pixels.

Usage: ``.venv/bin/python reports/lumos/noise-texture/frame_noise.py OUT.json FRAME [FRAME ...]``.
In 300 random 64 x 64 boxes per frame (seed 0), boxes with NaN or more than 3 % of pixels beyond
4 robust sigma (1.4826 x MAD) are skipped; in the others the median is subtracted, pixels beyond
4 sigma are masked, and the medians over boxes of the lag-1 and lag-2 autocorrelation (mean of x
and y) and of the skewness of the unmasked pixels are reported.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from astropy.io import fits
from scipy.stats import skew


def _lag(values: np.ndarray, mask: np.ndarray, k: int) -> float:
    x = (values[:, k:] * values[:, :-k]).sum() / (mask[:, k:] * mask[:, :-k]).sum()
    y = (values[k:] * values[:-k]).sum() / (mask[k:] * mask[:-k]).sum()
    return 0.5 * (x + y) / ((values**2).sum() / mask.sum())


def frame_noise(path: str, n_boxes: int = 300, box: int = 64) -> dict[str, float]:
    """Median lag-1, lag-2 autocorrelation and skewness of the sky pixels of the first 2-D HDU of ``path``."""
    with fits.open(path) as hdul:
        data = next(h.data for h in hdul if h.data is not None and h.data.ndim == 2).astype(np.float64)
    rng = np.random.default_rng(0)
    lag1, lag2, skews = [], [], []
    for _ in range(n_boxes):
        y0, x0 = rng.integers(0, data.shape[0] - box), rng.integers(0, data.shape[1] - box)
        cut = data[y0 : y0 + box, x0 : x0 + box]
        if not np.isfinite(cut).all():
            continue
        cut = cut - np.median(cut)
        sigma = 1.4826 * np.median(np.abs(cut))
        keep = np.abs(cut) < 4 * sigma
        if sigma <= 0 or keep.mean() < 0.97:
            continue
        values, mask = np.where(keep, cut, 0.0), keep.astype(np.float64)
        lag1.append(_lag(values, mask, 1))
        lag2.append(_lag(values, mask, 2))
        skews.append(skew(cut[keep]))
    return {"n_boxes": len(lag1), "lag1": float(np.median(lag1)), "lag2": float(np.median(lag2)),
            "skew": float(np.median(skews))}


def main(argv: list[str]) -> int:
    result = {path: frame_noise(path) for path in argv[2:]}
    for path, row in result.items():
        print(f"{path}: lag1 {row['lag1']:.3f} lag2 {row['lag2']:.3f} skew {row['skew']:.3f} ({row['n_boxes']} boxes)")
    with open(argv[1], "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
