"""Where a LUMOS model's real-frame scatter comes from: injected Sérsic galaxies at true SNR >= 20, by galaxy
size and by how crowded the 60-px stamp around each one is, for the optimal weighted sum and LUMOS.

Usage: ``.venv/bin/python reports/lumos/truth-mismatch/real_frame_breakdown.py OUT.json REALDATA RUN [RUN ...]``.
Each RUN is a ``lumos inject`` output directory (``injection_table.parquet``) of the same seed; REALDATA holds
the frames it names. Size is the aperture's semi-major axis (pixels, the PAUS aperture holding 62.5 % of
the model light: a measure of the PSF-convolved size); crowding is the fraction of the 60 x 60 px around
the galaxy inside the frame's own 3-sigma source mask (``noise_calibration.source_mask`` of the frame
before injection). Quartiles of size, terciles of crowding; per cell: n, median and sigma68 of
(f - f0) / f0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection import read_frame
from lumos_ops.noise_calibration import source_mask

HALF = 30
"""Half-side (pixels) of the stamp whose crowding is measured (LUMOS stamps are 60 px)."""


def _cells(rel: pd.Series, key: pd.Series, edges: np.ndarray, label: str) -> list[dict]:
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = rel[(key >= lo) & (key <= hi)]
        q16, q50, q84 = np.percentile(sel, [16, 50, 84])
        rows.append({label: [float(lo), float(hi)], "n": int(len(sel)), "bias": float(q50), "sigma68": float(0.5 * (q84 - q16))})
    return rows


def breakdown(run: str, masks: dict[str, np.ndarray]) -> dict:
    """{method: {"by_size": [...], "by_crowding": [...]}} of one run."""
    table = pd.read_parquet(Path(run) / "injection_table.parquet")
    table = table[(table["population"] == "sersic") & (table["true_snr"] >= 20)]
    size = table[table["method"] == "aperture"].set_index("placement")["aperture_a"]
    out = {}
    for method in ("optimal", "lumos"):
        rows = table[table["method"] == method].set_index("placement")
        rows = rows.assign(size=size.reindex(rows.index).to_numpy())
        crowd = []
        for frame, x, y in zip(rows["frame"], rows["x"], rows["y"]):
            mask = masks[Path(frame).name]
            i, j = int(round(y)), int(round(x))
            crowd.append(float(mask[max(i - HALF, 0) : i + HALF, max(j - HALF, 0) : j + HALF].mean()))
        rows = rows.assign(crowding=crowd)
        rel = (rows["flux"] - rows["true_flux"]) / rows["true_flux"]
        out[method] = {
            "by_size": _cells(rel, rows["size"], np.quantile(rows["size"], [0, 0.25, 0.5, 0.75, 1]), "aperture_a_px"),
            "by_crowding": _cells(rel, rows["crowding"], np.quantile(rows["crowding"], [0, 1 / 3, 2 / 3, 1]),
                                  "source_fraction"),
        }
    return out


def main(argv: list[str]) -> int:
    out_path, realdata, runs = argv[1], Path(argv[2]), argv[3:]
    frames = {Path(f).name for run in runs for f in pd.read_parquet(Path(run) / "injection_table.parquet")["frame"].unique()}
    masks = {name: source_mask(read_frame(realdata / name).astype(np.float64)) for name in sorted(frames)}
    result = {"true_snr_min": 20, "runs": {run: breakdown(run, masks) for run in runs}}
    for run, methods in result["runs"].items():
        for method, parts in methods.items():
            for part, cells in parts.items():
                print(f"{run} {method:8s} {part:12s} " + " | ".join(
                    f"{c[next(iter(c))][0]:.2f}-{c[next(iter(c))][1]:.2f}: {c['bias']:+.3f}/{c['sigma68']:.3f}" for c in cells))
    Path(out_path).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
