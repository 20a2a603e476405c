"""Is a LUMOS model's real-frame scatter relative (a profile or PSF error) or additive (an error in e-/s
that does not grow with the galaxy's flux)? Injected Sérsic galaxies at true SNR >= 20, per frame.

Usage: ``.venv/bin/python reports/lumos/truth-mismatch/absolute_error.py OUT.json RUN [RUN ...]``.
Each RUN is a ``lumos inject`` (or ``reports/adapt/heldout/inject_candidate.py``) output directory
holding ``injection_table.parquet`` with LUMOS, optimal and aperture rows of the same placements.

Per RUN and frame, by quartile of true flux and by quartile of size (the aperture's semi-major axis,
pixels): n, sigma68 (half the 16-84 % range) of the absolute error f - f0 (e-/s) for LUMOS and the
optimal weighted sum, the median of LUMOS's own 68 % half-width (``flux_err``, e-/s), and the
Spearman correlation of LUMOS's error with the optimal and aperture errors at the same placements
(what LUMOS shares with the pixel noise and the background those methods see). A relative error
grows with f0 in e-/s; an additive one stays flat.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from lumos_ops.stats import sigma68

MIN_SNR = 20.0
"""Placements at true SNR at least this (where pixel noise no longer dominates either method)."""


def _cell(part: pd.DataFrame) -> dict:
    return {
        "n": int(len(part)),
        "median_true_flux": float(part["true_flux"].median()),
        "median_size_px": float(part["size"].median()),
        "lumos_abs_sigma68": float(sigma68(part["err_lumos"].to_numpy())),
        "optimal_abs_sigma68": float(sigma68(part["err_optimal"].to_numpy())),
        "lumos_reported_sigma68": float(part["flux_err"].median()),
        "spearman_lumos_optimal": float(spearmanr(part["err_lumos"], part["err_optimal"])[0]),
        "spearman_lumos_aperture": float(spearmanr(part["err_lumos"], part["err_aperture"])[0]),
    }


def placements(table: pd.DataFrame) -> pd.DataFrame:
    """LUMOS rows at true SNR >= MIN_SNR with the optimal and aperture errors of the same placement."""
    keep = table[table["population"] == "sersic"]
    lumos = keep[keep["method"] == "lumos"].set_index("placement")
    other = {m: keep[keep["method"] == m].set_index("placement") for m in ("optimal", "aperture")}
    out = lumos[["frame", "true_flux", "true_snr", "flux", "flux_err"]].copy()
    out["err_lumos"] = out["flux"] - out["true_flux"]
    for name, rows in other.items():
        out[f"err_{name}"] = (rows["flux"] - rows["true_flux"]).reindex(out.index)
    out["size"] = other["aperture"]["aperture_a"].reindex(out.index)
    ok = np.isfinite(out[["err_lumos", "err_optimal", "err_aperture", "size"]]).all(axis=1)
    return out[ok & (out["true_snr"] >= MIN_SNR)]


def summarise(run: str) -> dict:
    """{frame: {"all": cell, "by_true_flux": [cells], "by_size": [cells]}} of one run."""
    rows = placements(pd.read_parquet(Path(run) / "injection_table.parquet"))
    result = {}
    for frame, part in rows.groupby("frame"):
        entry = {"all": _cell(part)}
        for key, column in (("by_true_flux", "true_flux"), ("by_size", "size")):
            quartile = pd.qcut(part[column], 4, labels=False, duplicates="drop")
            entry[key] = [_cell(part[quartile == q]) for q in sorted(quartile.unique())]
        result[Path(str(frame)).name] = entry
    return result


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    out, runs = Path(argv[0]), argv[1:]
    report = {"min_true_snr": MIN_SNR, "runs": {run: summarise(run) for run in runs}}
    out.write_text(json.dumps(report, indent=1))
    for run, frames in report["runs"].items():
        print(run)
        for frame, entry in frames.items():
            cells = entry["by_true_flux"]
            flux = " ".join(f"{c['median_true_flux']:.0f}:{c['lumos_abs_sigma68']:.1f}/{c['optimal_abs_sigma68']:.1f}"
                            for c in cells)
            size = " ".join(f"{c['median_size_px']:.1f}px:{c['lumos_abs_sigma68']:.1f}/{c['optimal_abs_sigma68']:.1f}"
                            for c in entry["by_size"])
            a = entry["all"]
            print(f"  {frame:18s} n={a['n']:4d} LUMOS/optimal abs sigma68 (e-/s) by true flux {flux} | by size {size} | "
                  f"reported {a['lumos_reported_sigma68']:.1f}; Spearman with optimal {a['spearman_lumos_optimal']:.2f}, "
                  f"aperture {a['spearman_lumos_aperture']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
