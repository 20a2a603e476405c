"""Blank-sky check of the joint fit's variance factor on real frames.

For pairs of unit-flux model galaxies placed on blank sky of each frame (no source within 12 px of
either centre), the joint amplitude of the target, ``G^-1 b``, and its isolated matched filter,
``b_0 / G_00``, are computed from the frame's own pixels, each sum with its source-masked sky annulus
(15-29 px) subtracted as the photometry does. The ratio of their variances over the positions is
the fit's real cost on that frame's noise; it is compared with the white-noise factor
``G_00 (G^-1)_00`` and with the factor under the frame's measured noise correlation
(``lumos_ops.photometry.noise_correlation``), which ``fit_neighbours`` uses.

    .venv/bin/python reports/lumos/noise-correlation/blank_pairs.py [--sky-box PX] OUT.json FRAME [FRAME ...]

``--sky-box``: the block size of the coarse sky taken out before the correlation is measured
(``noise_correlation(..., sky_box=)``; 64 px, the measurement's, by default).
"""

from __future__ import annotations

import json
import sys

import numpy as np
from scipy.signal import fftconvolve

from lumos_ops.evaluation.injection import read_frame
from lumos_ops.photometry.frame_sources import frame_sources
from lumos_ops.photometry.noise_correlation import noise_correlation, weight_covariances

SIZE = 60
PROFILES = (("gaussian", 1.6), ("exponential", 1.5), ("exponential", 3.0))
SEPARATIONS = (3, 5, 8)
POSITIONS = 6000


def model(profile: str, scale: float) -> np.ndarray:
    """Unit-flux model on a SIZE px stamp centred at SIZE // 2: a Gaussian of ``scale`` px, or an
    exponential disc of scale length ``scale`` px seen through a Gaussian PSF of 1.4 px."""
    y, x = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    gauss = np.exp(-(x**2 + y**2) / (2 * 1.4**2))
    if profile == "gaussian":
        image = np.exp(-(x**2 + y**2) / (2 * scale**2))
    else:
        image = fftconvolve(np.exp(-np.hypot(x, y) / scale), gauss / gauss.sum(), mode="same")
    return image / image.sum()


def check(path: str, rng: np.random.Generator, sky_box: int) -> list[dict]:
    data = np.asarray(read_frame(path), dtype=np.float64)
    sources = frame_sources(data.astype(np.float32)).mask
    correlation = noise_correlation(data, sources, sky_box=sky_box)
    ny, nx = data.shape
    radius = np.hypot(*(np.mgrid[:SIZE, :SIZE] - SIZE // 2))
    ring = (radius >= SIZE / 4.0) & (radius <= SIZE / 2.0 - 1.0)
    rows = []
    for profile, scale in PROFILES:
        m0 = model(profile, scale)
        for d in SEPARATIONS:
            m1 = np.roll(m0, d, axis=1)
            gram = np.array([[(a * b).sum() for b in (m0, m1)] for a in (m0, m1)])
            inverse = np.linalg.inv(gram)
            alone, joint = [], []
            for _ in range(POSITIONS):
                x0, y0 = int(rng.integers(0, nx - SIZE - d)), int(rng.integers(0, ny - SIZE))
                cuts = [data[y0 : y0 + SIZE, x0 + o : x0 + o + SIZE] for o in (0, d)]
                masks = [sources[y0 : y0 + SIZE, x0 + o : x0 + o + SIZE] for o in (0, d)]
                if not all(np.isfinite(c).all() for c in cuts):
                    continue
                if masks[0][SIZE // 2 - 12 : SIZE // 2 + 12, SIZE // 2 - 12 : SIZE // 2 + 12 + d].any():
                    continue
                b = np.array([(m0 * np.where(k, 0.0, c - c[ring & ~k].mean())).sum() for c, k in zip(cuts, masks)])
                alone.append(b[0] / gram[0, 0])
                joint.append((inverse @ b)[0])
            n = len(alone)
            measured = float(np.var(joint, ddof=1) / np.var(alone, ddof=1))
            weights = m0 - m0.sum() * ring / ring.sum()
            both = np.stack([weights, weights])
            diagonal, off = weight_covariances(both, np.array([0, d]), np.array([0, 0]), np.array([[0, 1]]),
                                               correlation)
            cov = np.array([[diagonal[0], off[0]], [off[0], diagonal[1]]])
            predicted = float((inverse @ cov @ inverse)[0, 0] * gram[0, 0] ** 2 / cov[0, 0])
            rows.append({"frame": path, "profile": profile, "scale_px": scale, "separation_px": d, "n": n,
                         "measured": measured, "measured_err": measured * float(np.sqrt(2.0 / max(n - 1, 1))),
                         "white": float(gram[0, 0] * inverse[0, 0]), "correlated": predicted})
            print(f"{path.rsplit('/', 1)[-1]:16s} {profile:11s} {scale:3.1f} px  d={d}  n={n:4d}  measured "
                  f"{measured:.3f} ± {rows[-1]['measured_err']:.3f}  white {rows[-1]['white']:.3f}  "
                  f"correlated {predicted:.3f}", flush=True)
    return rows


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sky-box", type=int, default=64)
    parser.add_argument("out")
    parser.add_argument("frames", nargs="+")
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    rows = [row for frame in args.frames for row in check(frame, rng, args.sky_box)]
    usable = [r for r in rows if r["n"] >= 30 and r["white"] > 1.02]
    summary: dict = {"per_frame": {}}
    for label, subset in [("all", usable)] + [(f, [r for r in usable if r["frame"] == f]) for f in args.frames]:
        for name in ("white", "correlated"):
            z = [(r[name] - r["measured"]) / r["measured_err"] for r in subset]
            entry = {"median_ratio_to_measured": float(np.median([r[name] / r["measured"] for r in subset])),
                     "chi2_per_point": float(np.mean(np.square(z))), "n_points": len(subset)}
            if label == "all":
                summary[name] = entry
            else:
                summary["per_frame"].setdefault(label, {})[name] = entry
            print(f"{label.rsplit('/', 1)[-1]:16s} {name:10s} median factor / measured "
                  f"{entry['median_ratio_to_measured']:.3f}, chi2 per point {entry['chi2_per_point']:.2f} over "
                  f"{len(subset)} configurations (white factor > 1.02, n >= 30)")
    with open(args.out, "w") as handle:
        json.dump({"command": " ".join(sys.argv), "sky_box": args.sky_box, "rows": rows, "summary": summary},
                  handle, indent=2)


if __name__ == "__main__":
    main()
