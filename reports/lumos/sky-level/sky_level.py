"""Does a LUMOS model's flux move when a constant is added to the frame?

For each real frame and each sky level (the frame with its median removed, the frame as it is, and
the frame plus 100 times its pixel noise), zero-flux and SNR-5 injections through ``run_injection``
(the production measurement: the frame's own blank-sky calibration, masked-annulus backgrounds):
mean, median and sigma68 of ``(flux - true_flux) / flux_err`` per method. Every linear estimator
with a local background is unchanged by a constant; so must a likelihood be.

Usage: .venv/bin/python reports/lumos/sky-level/sky_level.py OUT.json --models M [M ...] --frames F [F ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

import lumos_ops.evaluation.injection as injection


def _levels(data: np.ndarray) -> dict[str, np.ndarray]:
    """The frame at three sky levels (frame units)."""
    cov = injection.noise_autocovariance(data)
    sigma = float(np.sqrt(cov[cov.shape[0] // 2, cov.shape[1] // 2]))
    median = float(np.median(data[np.isfinite(data)]))
    return {"sky removed": data - median, "as is": data, "plus 100 sigma": data + 100.0 * sigma}


def _summary(pull: np.ndarray) -> dict[str, float]:
    pull = pull[np.isfinite(pull)]
    return {"n": int(pull.size), "mean": float(pull.mean()), "mean_err": float(pull.std() / np.sqrt(pull.size)),
            "median": float(np.median(pull)), "sigma68": float(0.5 * np.diff(np.percentile(pull, [16, 84]))[0])}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--frames", nargs="+", required=True)
    parser.add_argument("--snr", nargs="+", type=float, default=[0.01, 5.0])
    args = parser.parse_args(argv)
    report: dict = {"command": " ".join(["python", *sys.argv]), "rows": []}
    with tempfile.TemporaryDirectory() as work:
        for frame in args.frames:
            for level, data in _levels(injection.read_frame(frame)).items():
                path = Path(work) / (Path(frame).name.split(".")[0] + "-" + level.replace(" ", "_") + ".fits")
                fits.writeto(path, data.astype(np.float32), overwrite=True)
                for model in args.models:
                    for snr in args.snr:
                        config = injection.InjectionConfig(population="sersic", n_galaxies=150, n_place=2,
                                                           snr_range=(snr, snr * 1.01), seed=5)
                        table = injection.run_injection([path], config, methods=("optimal", "lumos"), model=model)
                        for method, g in table.groupby("method"):
                            pull = ((g["flux"] - g["true_flux"]) / g["flux_err"]).to_numpy(np.float64)
                            row = {"frame": Path(frame).name, "level": level, "model": model, "snr": snr,
                                   "method": method, **_summary(pull)}
                            report["rows"].append(row)
                            print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
