"""The light beyond the detections of each frame (``photometry.wing_light``), as the pipeline measures it.

For every frame: the profile ``measure_wing_profile`` fits (mean undetected pixel by chessboard
distance to the nearest detected pixel, non-increasing, less its farthest bin) in units of the frame's pixel noise
``s`` (the square root of the noise autocovariance at zero lag, as ``lumos inject`` maps frames),
and the mean excess that the annulus pixels of a random position and of a position 10 px clear of
every detection hold (the ``lumos inject`` placement): what the subtraction moves between them.

Usage: .venv/bin/python reports/lumos/wing-light/profiles.py OUT.json FRAME [FRAME ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from lumos_ops.evaluation import injection as inj
from lumos_ops.photometry.frame_sources import detect_frame_sources
from lumos_ops.photometry.wing_light import measure_wing_profile


def frame_profile(path: str) -> dict:
    data = inj.read_frame(path).astype(np.float32)
    cov = inj.noise_autocovariance(data)
    s = float(np.sqrt(cov[cov.shape[0] // 2, cov.shape[1] // 2]))
    sources = detect_frame_sources(data)
    profile = measure_wing_profile(data, sources.detected)
    excess = profile.at(ndimage.distance_transform_cdt(~sources.detected, metric="chessboard"))  # the profile's metric
    sky = np.isfinite(data) & ~sources.mask  # what the annulus background averages
    clear = np.isfinite(data) & (ndimage.distance_transform_edt(~sources.detected) >= 10)  # lumos inject's placement
    return {
        "frame": Path(path).name,
        "shape": list(data.shape),
        "pixel_noise": s,
        "edges_px": profile.edges.tolist(),
        "excess_over_s": (profile.excess / s).tolist(),
        "counts": profile.counts.tolist(),
        "mean_excess_over_s": {"annulus_pixels": float(excess[sky].mean() / s),
                               "pixels_10px_clear": float(excess[clear].mean() / s)},
    }


def main(argv: list[str]) -> None:
    out, frames = argv[0], argv[1:]
    rows = [frame_profile(f) for f in frames]
    Path(out).write_text(json.dumps(rows, indent=1) + "\n")
    for row in rows:
        print(f"{row['frame']}: s = {row['pixel_noise']:.4g}")
        print("  distance px " + " ".join(f"{e:6g}" for e in row["edges_px"]))
        print("  excess / s  " + " ".join(f"{e:+6.3f}" for e in row["excess_over_s"]))
        m = row["mean_excess_over_s"]
        print(f"  mean excess / s: annulus pixels {m['annulus_pixels']:+.3f}, pixels 10 px clear {m['pixels_10px_clear']:+.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
