"""Does the injection's placement rule choose positions by their noise?

For each real frame: the fraction of the frame where a galaxy may be placed (>= 6 and >= 10 px from
the frame's sources) under the single-pixel 3-sigma rule (the earlier ``source_clearance``: pixels
above 3 robust sigmas grown by 4 px) and under the detection rule (``detect_sources``: PSF-smoothed
4-sigma detections of >= 5 px grown by the FWHM, the blank-sky calibration's). Then zero-flux
injections (true SNR 0.01) through ``run_injection`` (the production measurement) under each rule:
mean, median and sigma68 of ``flux / flux_err`` per method and frame. At a position not chosen by
its noise these are 0, 0 and 1 (once the blank-sky error calibration holds).

Usage: .venv/bin/python reports/lumos/placement-noise/placement_noise.py OUT.json FRAME [FRAME ...]
"""

from __future__ import annotations

import json
import sys

import numpy as np
from scipy import ndimage

import lumos_ops.evaluation.injection as injection
from lumos_ops.noise_calibration import detect_sources, source_mask


def pixel_rule(data: np.ndarray, *, fwhm_px: float) -> np.ndarray:
    """The earlier placement rule: distance from pixels above 3 robust sigmas grown by 4 px."""
    return ndimage.distance_transform_edt(~source_mask(data))


def detection_rule(data: np.ndarray, *, fwhm_px: float) -> np.ndarray:
    """The current rule (``noise_calibration.source_clearance``)."""
    return ndimage.distance_transform_edt(~detect_sources(data, fwhm_px=fwhm_px))


RULES = {"pixel_3sigma": pixel_rule, "detection": detection_rule}


def main(out: str, frames: list[str]) -> None:
    report: dict = {"command": " ".join(["python", *sys.argv]), "placeable": {}, "zero_flux": {}}
    for frame in frames:
        data = injection.read_frame(frame)
        fwhm = injection.estimate_psf_fwhm(data)
        name = frame.split("/")[-1]
        report["placeable"][name] = {
            rule: {f">={d}px": float((fn(data, fwhm_px=fwhm) >= d).mean()) for d in (6, 10)} for rule, fn in RULES.items()
        }
    for rule, fn in RULES.items():
        injection.source_clearance = fn
        config = injection.InjectionConfig(population="sersic", n_galaxies=150, n_place=4, snr_range=(0.01, 0.0101), seed=5)
        table = injection.run_injection(frames, config, methods=("aperture", "optimal", "lumos"))
        rows = {}
        for (method, frame), g in table.groupby(["method", "frame"]):
            pull = (g["flux"] / g["flux_err"]).to_numpy(np.float64)
            pull = pull[np.isfinite(pull)]
            rows[f"{method} {frame.split('/')[-1]}"] = {
                "n": int(pull.size), "mean": float(pull.mean()), "mean_err": float(pull.std() / np.sqrt(pull.size)),
                "median": float(np.median(pull)), "sigma68": float(0.5 * np.diff(np.percentile(pull, [16, 84]))[0]),
            }
        report["zero_flux"][rule] = rows
    with open(out, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"{'frame':18s} {'rule':13s} {'>=6px':>6s} {'>=10px':>6s}")
    for name, rules in report["placeable"].items():
        for rule, v in rules.items():
            print(f"{name:18s} {rule:13s} {v['>=6px']:6.3f} {v['>=10px']:6.3f}")
    print(f"\n{'method frame':32s} {'rule':13s} {'n':>4s} {'mean':>14s} {'median':>7s} {'sigma68':>7s}")
    for key in report["zero_flux"]["detection"]:
        for rule in RULES:
            v = report["zero_flux"][rule][key]
            print(f"{key:32s} {rule:13s} {v['n']:4d} {v['mean']:+7.3f} ± {v['mean_err']:.3f} {v['median']:+7.3f} {v['sigma68']:7.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
