"""The blended pairs of an injection report with the joint fit's white-noise variance factor, on the
report's own draws, against the report's rows (the factor under the frame's noise correlation).

    # measure: the report's blended population again with fit_neighbours(..., correlation=False)
    .venv/bin/python reports/lumos/noise-correlation/same_draws.py measure REPORT_DIR OUT.parquet
    # compare: pull sigma68 and coverage by true SNR and by the white factor's value, per method
    .venv/bin/python reports/lumos/noise-correlation/same_draws.py compare REPORT_DIR WHITE.parquet OUT.json

``measure`` runs ``run_injection`` with the report's configuration and the blended population's own
seed, taking the frames' Sérsic aperture factors from the report's table as ``lumos inject`` does,
and keeps the columns the comparison needs. The fluxes are those of the report's rows (checked);
only the errors differ.
"""

from __future__ import annotations

import functools
import json
import sys

import numpy as np
import pandas as pd

KEEP = ["method", "galaxy", "place", "frame", "flux", "flux_err", "neighbour_variance", "true_flux", "true_snr"]
SNR_BINS = [(1, 2), (2, 5), (5, 10), (10, 20), (20, 50), (50, np.inf)]
FACTOR_BINS = [(1.0, 1.02), (1.02, 1.1), (1.1, 1.25), (1.25, 1.5), (1.5, np.inf)]


def measure(report_dir: str, out: str) -> None:
    import lumos_ops.photometry.neighbours as neighbours
    from lumos_ops.evaluation.injection import InjectionConfig, aperture_factors, population_seed, run_injection

    neighbours.fit_neighbours = functools.partial(neighbours.fit_neighbours, correlation=False)
    config = json.load(open(f"{report_dir}/injection_report.json"))["config"]
    table = pd.read_parquet(f"{report_dir}/injection_table.parquet")
    fallback = aperture_factors(table[table["population"] == "sersic"])
    options = {k: config[k] for k in ("band", "noise_ratio") if config.get(k) is not None}
    inj = InjectionConfig(population="blended", n_galaxies=config["n_galaxies"], n_place=config["n_place"],
                          snr_range=tuple(config["snr_range"]), psf_profile=config["psf_profile"],
                          psf_from_stars=config["psf_from_stars"], spacing=config["spacing"],
                          min_clearance=config["min_clearance"], seed=population_seed(config["seed"], "blended"),
                          pool_aperture_correction=not config["aperture_correction_per_copy"], **options)
    white = run_injection(config["frames"], inj, methods=config["methods"], model=config["model"],
                          aperture_fallback=fallback or None)
    white[KEEP].to_parquet(out, index=False)


def s68(values: np.ndarray) -> float:
    low, high = np.nanpercentile(values, [16, 84])
    return float((high - low) / 2)


def compare(report_dir: str, white_path: str, out: str) -> None:
    table = pd.read_parquet(f"{report_dir}/injection_table.parquet")
    now = table[table["population"] == "blended"].reset_index(drop=True)
    white = pd.read_parquet(white_path)
    if len(white) != len(now) or not np.allclose(white["flux"], now["flux"], equal_nan=True):
        raise SystemExit(f"{white_path} does not hold the draws of {report_dir}: measure it again")
    result = {"report": report_dir, "methods": {}}
    for method in sorted(set(now["method"])):
        rows = (now["method"] == method).to_numpy()
        entry: dict[str, list] = {"by_true_snr": [], "by_white_factor": []}
        for lo, hi in SNR_BINS:
            k = rows & (now["true_snr"] >= lo).to_numpy() & (now["true_snr"] < hi).to_numpy()
            cells = {}
            for name, frame in (("white", white), ("correlated", now)):
                pull = ((frame["flux"] - frame["true_flux"]) / frame["flux_err"]).to_numpy()[k]
                cells[name] = {"pull_sigma68": s68(pull), "coverage68": float(np.mean(np.abs(pull) < 1))}
            entry["by_true_snr"].append({"lo": lo, "hi": None if np.isinf(hi) else hi, "n": int(k.sum()), **cells})
        faint = rows & (now["true_snr"] >= 1).to_numpy() & (now["true_snr"] < 20).to_numpy()
        factor = white["neighbour_variance"].to_numpy()
        for lo, hi in FACTOR_BINS:
            k = faint & (factor >= lo) & (factor < hi)
            cells = {name: s68(((frame["flux"] - frame["true_flux"]) / frame["flux_err"]).to_numpy()[k])
                     for name, frame in (("white", white), ("correlated", now))}
            entry["by_white_factor"].append({"lo": lo, "hi": None if np.isinf(hi) else hi, "n": int(k.sum()),
                                             "pull_sigma68_white": cells["white"],
                                             "pull_sigma68_correlated": cells["correlated"],
                                             "median_factor_correlated": float(np.median(now["neighbour_variance"].to_numpy()[k]))})
        entry["median_factor"] = {"white": float(np.median(factor[rows])),
                                  "correlated": float(np.median(now["neighbour_variance"].to_numpy()[rows]))}
        result["methods"][method] = entry
        print(method, "median factor", round(entry["median_factor"]["white"], 3), "->",
              round(entry["median_factor"]["correlated"], 3))
        for b in entry["by_true_snr"]:
            print(f"  true SNR {b['lo']}-{b['hi']}: pull {b['white']['pull_sigma68']:.3f} -> "
                  f"{b['correlated']['pull_sigma68']:.3f}, coverage {b['white']['coverage68']:.3f} -> "
                  f"{b['correlated']['coverage68']:.3f}")
        for b in entry["by_white_factor"]:
            print(f"  white factor {b['lo']}-{b['hi']} (true SNR 1-20, n {b['n']}): pull "
                  f"{b['pull_sigma68_white']:.3f} -> {b['pull_sigma68_correlated']:.3f}")
    with open(out, "w") as handle:
        json.dump({"command": " ".join(sys.argv), **result}, handle, indent=2)


if __name__ == "__main__":
    if sys.argv[1] == "measure":
        measure(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)
