"""Do the production blank-sky positions read the faint targets' offset? (README.md here, §3.)

Injects 300 Sérsic galaxies x 4 placements at true SNR 1-5 (Moffat PSF, 80 px apart) into the
frames through ``run_injection`` and records, for every frame realisation, the blank-sky
calibration that ``measure_exposure`` made (``noise_calibration.calibrate_noise``: median pull of
the blank positions, its error scale, the number of positions). Per frame and method it prints
the mean over realisations of the blank median pull in calibrated units (``median_pull / scale``)
and the median pull of the injected targets, and writes both as JSON.

Usage: ``.venv/bin/python reports/lumos/injection-spacing/blank_vs_targets.py OUT.json FRAME [FRAME ...]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import lumos_ops.noise_calibration as nc
from lumos_ops.evaluation.injection import InjectionConfig, run_injection

METHODS = ("aperture", "optimal", "lumos")


def main(argv: list[str]) -> int:
    out_path, frames = Path(argv[1]), argv[2:]
    captured: list[dict] = []
    calibrate = nc.calibrate_noise

    def recording(exposure, *args, **kwargs):
        result = calibrate(exposure, *args, **kwargs)
        captured.append({m: (c.median_pull, c.scale, c.n_positions) for m, c in result.items()})
        return result

    nc.calibrate_noise = recording  # measure_exposure imports it from the module at call time
    config = InjectionConfig(population="sersic", n_galaxies=300, n_place=4, snr_range=(1.0, 5.0),
                             psf_profile="moffat", seed=17)
    table = run_injection(frames, config, methods=METHODS)
    result = {}
    for k, frame in enumerate(frames):
        name = Path(frame).name
        realisations = captured[k :: len(frames)]  # realisation r is measured on frame r % len(frames)
        result[name] = {}
        for method in METHODS:
            blank = [c[method][0] / c[method][1] for c in realisations if method in c and c[method][1] > 0]
            rows = table[(table["method"] == method) & (table["frame"] == frame)]
            pull = ((rows["flux"] - rows["true_flux"]) / rows["flux_err"]).to_numpy()
            result[name][method] = {"blank_median_pull": float(np.mean(blank)), "realisations": len(blank),
                                    "blank_positions": float(np.mean([c[method][2] for c in realisations])),
                                    "target_median_pull": float(np.median(pull)),
                                    "target_median_err": float(1.2533 * np.std(pull) / np.sqrt(pull.size)),
                                    "targets": int(pull.size)}
            r = result[name][method]
            print(f"{name:20s} {method:9s} blank {r['blank_median_pull']:+.2f} targets "
                  f"{r['target_median_pull']:+.2f} ± {r['target_median_err']:.2f}")
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
