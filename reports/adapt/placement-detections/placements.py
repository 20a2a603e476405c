"""Where ``lumos inject`` put its galaxies, seen by the measurement's own detection, and what each method read there.

Usage: ``.venv/bin/python reports/adapt/placement-detections/placements.py [--fwhm moments] OUT.json RUN_DIR [RUN_DIR ...]``
(each ``RUN_DIR`` holds a ``lumos inject`` run's ``injection_table.parquet``). For each run, per
frame: the share of its pixels that the measurement detects
(:func:`lumos_ops.photometry.frame_sources.detect_frame_sources`, ungrown) and the shares of its
pixels 6 and 10 px clear of sources by the PSF-matched filter alone
(:func:`lumos_ops.noise_calibration.detect_sources`) and by the placement rule
(:func:`lumos_ops.noise_calibration.source_clearance`). The FWHM is that of the frame's stars'
Moffat fit (:func:`lumos_ops.photometry.psf_stars.measure_psf_fwhm`, as ``--psf-from-stars`` and
a survey file's ``from_stars`` give it) or, with ``--fwhm moments``, the second-moment width that
``lumos inject`` gives a frame by default (:func:`lumos_ops.evaluation.injection.estimate_psf_fwhm`).
Per method, over the placements of one population (``--population``, default Sérsic) at true SNR
2-50 with a finite error: the share of pulls (f - f0) / flux_err above +3, by the distance (px) of
the placement to the nearest pixel the measurement detects on the frame without the injection.
Prints a markdown table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from scipy import ndimage

from lumos_ops.evaluation.injection import estimate_psf_fwhm
from lumos_ops.noise_calibration import detect_sources, source_clearance
from lumos_ops.photometry.frame_sources import detect_frame_sources
from lumos_ops.photometry.psf_stars import measure_psf_fwhm

DISTANCE_BINS: tuple[float, ...] = (0.0, 1.0, 6.0, 10.0, 15.0, np.inf)
"""Edges (px) of the distance bins; the first holds placements on a detected pixel."""

SNR_RANGE: tuple[float, float] = (2.0, 50.0)


def _distances(table: pd.DataFrame, fwhm_from: str) -> tuple[pd.Series, dict[str, dict[str, float]]]:
    """Distance (px) of every row's placement to the measurement's nearest detected pixel, and each frame's shares."""
    dist = pd.Series(np.nan, index=table.index)
    share = {}
    for frame, rows in table.groupby("frame"):
        data = np.asarray(fits.getdata(frame), dtype=np.float64)
        detected = detect_frame_sources(data).detected
        fwhm = (measure_psf_fwhm(data, beta=None, label=frame).fwhm_px if fwhm_from == "stars"
                else estimate_psf_fwhm(data))
        psf_matched = ndimage.distance_transform_edt(~detect_sources(data, fwhm_px=fwhm))
        both = source_clearance(data, fwhm_px=fwhm)
        share[Path(frame).name] = {"fwhm_px": float(fwhm), "detected": float(detected.mean()),
                                   **{f"clear{d}_psf_matched": float((psf_matched >= d).mean()) for d in (6, 10)},
                                   **{f"clear{d}_with_measurement": float((both >= d).mean()) for d in (6, 10)}}
        edt = ndimage.distance_transform_edt(~detected)
        ny, nx = data.shape
        xi = np.clip(np.rint(rows.x).astype(int), 0, nx - 1)
        yi = np.clip(np.rint(rows.y).astype(int), 0, ny - 1)
        dist.loc[rows.index] = edt[yi, xi]
    return dist, share


def summarise(run: Path, fwhm_from: str = "stars", population: str = "sersic") -> dict:
    table = pd.read_parquet(run / "injection_table.parquet")
    table = table[table.population == population]
    dist, share = _distances(table, fwhm_from)
    table = table.assign(distance=dist)
    out: dict = {"run": str(run), "population": population, "fwhm_from": fwhm_from, "frames": share, "methods": {}}
    edges = list(DISTANCE_BINS)
    for method, rows in table.groupby("method"):
        ok = rows[(rows.true_snr >= SNR_RANGE[0]) & (rows.true_snr < SNR_RANGE[1]) & np.isfinite(rows.flux)
                  & np.isfinite(rows.flux_err) & (rows.flux_err > 0)]
        above = (ok.flux - ok.true_flux) / ok.flux_err > 3.0
        bins = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (ok.distance >= lo) & (ok.distance < hi)
            bins.append({"lo": lo, "hi": None if np.isinf(hi) else hi, "n": int(sel.sum()),
                         "above3": float(above[sel].mean()) if sel.any() else None})
        out["methods"][method] = {"n": int(len(ok)), "above3": float(above.mean()), "by_distance": bins}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fwhm", choices=["stars", "moments"], default="stars")
    parser.add_argument("--population", default="sersic", choices=["sersic", "knots", "blended"])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    runs = [summarise(r, args.fwhm, args.population) for r in args.runs]
    args.out.write_text(json.dumps(runs, indent=1) + "\n")
    for run in runs:
        print(f"\n{run['run']}")
        for frame, f in run["frames"].items():
            print(f"  {frame}: FWHM {f['fwhm_px']:.2f} px, detected {f['detected']:.1%}; clear by 6 / 10 px: "
                  f"{f['clear6_psf_matched']:.1%} / {f['clear10_psf_matched']:.1%} PSF-matched alone, "
                  f"{f['clear6_with_measurement']:.1%} / {f['clear10_with_measurement']:.1%} with the measurement's")
        labels = [f"{b['lo']:g}-{b['hi']:g} px" if b["hi"] else f">= {b['lo']:g} px"
                  for b in next(iter(run["methods"].values()))["by_distance"]]
        print("| method | all | " + " | ".join(labels) + " |")
        print("|---" * (len(labels) + 2) + "|")
        for method, m in run["methods"].items():
            cells = [f"{b['above3']:.1%} ({b['n']})" if b["above3"] is not None else "-" for b in m["by_distance"]]
            print(f"| {method} | {m['above3']:.1%} ({m['n']}) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
