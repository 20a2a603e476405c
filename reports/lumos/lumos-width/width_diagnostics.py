"""Why LUMOS's calibrated errors are a little wide on the real frames (README.md here).

Per frame (mapped as ``lumos inject`` maps it, ``blank_pulls.mapped_frame``) and for three seeds of
400 blank-sky positions each, chosen and measured as the production calibration does:

1. **holes**: the blank-sky LUMOS pulls ``flux / flux_err`` (error before calibration) by quartile
   of the share of the stamp that other detected sources leave out (``TargetContext.other_source_pixels``)
   and of the matched-filter weight ``sum m^2`` that falls on them;
2. **source present**: ``calibrate_noise`` with its source-present check, its blank-sky ``k`` and,
   per SNR band, ``r``: the sigma68 of ``(median - F) / flux_err`` of the catalogue-model galaxies
   added to the same stamps, ``k`` applied (``noise_calibration.measure_source_present``).

Usage: .venv/bin/python reports/lumos/lumos-width/width_diagnostics.py OUT.json FRAME [FRAME ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "blank-offset"))

from blank_pulls import mapped_frame  # noqa: E402

from lumos_ops import noise_calibration as nc  # noqa: E402
from lumos_ops.constants import STAMP_SIZE  # noqa: E402
from lumos_ops.measure import get_method  # noqa: E402
from lumos_ops.stats import sigma68  # noqa: E402

SEEDS = (1, 2, 3)


def holes(exposure, shapes, seed: int) -> pd.DataFrame:
    """Blank-sky LUMOS pulls with each stamp's hole share (pixels, and matched-filter weight)."""
    none = np.zeros(0)
    fwhm_px = exposure.psf_fwhm / exposure.pixel_scale
    clearance = max(fwhm_px + 3.0 * float(shapes["r50"].median()) / exposure.pixel_scale, 5.0)
    bx, by = nc.blank_sky_positions(exposure, none, none, none, n_positions=400, seed=seed, clearance=clearance,
                                    mask=nc.detect_sources(exposure.data, fwhm_px=fwhm_px))
    frames, ctx = nc._measure_blank(exposure, shapes, bx, by, {"lumos": get_method("lumos")}, stamp_size=STAMP_SIZE,
                                    chunk_size=512, seed=seed)
    frame = frames["lumos"]
    other = ctx.other_source_pixels
    weight = ctx.models.astype(np.float64) ** 2
    frame["hole_share"] = other.mean(axis=(1, 2))
    frame["hole_weight"] = (weight * other).sum(axis=(1, 2)) / weight.sum(axis=(1, 2))
    return frame[frame["usable"]]


def by_quartile(frame: pd.DataFrame, column: str) -> list[dict]:
    quartile = pd.qcut(frame[column].rank(method="first"), 4, labels=False)
    return [{"median": float(frame[column][quartile == q].median()),
             "pull_sigma68": float(sigma68(frame["pull"][quartile == q].to_numpy())),
             "pull_median": float(frame["pull"][quartile == q].median()),
             "n": int((quartile == q).sum())} for q in range(4)]


def main(argv: list[str]) -> None:
    out_path, *paths = argv
    results = []
    for path in paths:
        with tempfile.TemporaryDirectory() as tmp:
            exposure, shapes = mapped_frame(path, Path(tmp))
            blank = pd.concat([holes(exposure, shapes, seed) for seed in SEEDS], ignore_index=True)
            entry = {"frame": Path(path).name, "n_blank": len(blank),
                     "hole_share_quartiles": [float(v) for v in np.quantile(blank["hole_share"], [0.25, 0.5, 0.75])],
                     "by_hole_share": by_quartile(blank, "hole_share"),
                     "by_hole_weight": by_quartile(blank, "hole_weight"), "source_check": []}
            none = np.zeros(0)
            for seed in SEEDS:
                cal = nc.calibrate_noise(exposure, shapes, none, none, {"lumos": get_method("lumos")},
                                         n_positions=400, seed=seed)["lumos"]
                entry["source_check"].append({"seed": seed, "k": cal.scale, "n": cal.n_positions, "bands": [
                    {"snr_range": list(b.snr_range), "r": b.scale, "r_err": b.scale_err, "n": b.n_positions,
                     "median_pull": b.median_pull} for b in cal.source.bands]})
        results.append(entry)
        print(f"{entry['frame']}: holes {entry['hole_share_quartiles'][1]:.2f} of the stamp (median); pull sigma68 by "
              "hole-share quartile " + " / ".join(f"{q['pull_sigma68']:.2f}" for q in entry["by_hole_share"])
              + "; by weight " + " / ".join(f"{q['pull_sigma68']:.2f}" for q in entry["by_hole_weight"]))
        for check in entry["source_check"]:
            print(f"   seed {check['seed']}: k {check['k']:.3f}; r " + " / ".join(
                f"{b['r']:.3f} +- {b['r_err']:.3f} (SNR {b['snr_range'][0]:g}-{b['snr_range'][1]:g})" for b in check["bands"]))
    Path(out_path).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
