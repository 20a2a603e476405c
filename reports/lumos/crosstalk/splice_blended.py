"""Measure a `lumos inject` report's blended population again with the current code and splice it in.

    .venv/bin/python reports/lumos/crosstalk/splice_blended.py REPORT_DIR WORK_DIR
    .venv/bin/lumos inject --rescore --out REPORT_DIR

As the full run would: the report's configuration and seeds; the frames' Sérsic galaxies injected
again and measured with the matched filter alone for the neighbour leak they measure (their fluxes
do not depend on it; ``WORK_DIR/leaks.json``, ``WORK_DIR/sersic_optimal.parquet``); the blended
copies borrow each frame's aperture factor from the report's Sérsic rows and that leak (the aperture
its factor alone). The report's other populations are kept as they are.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection import InjectionConfig, aperture_factors, population_seed, run_injection


def report_settings(report_dir: str) -> tuple[dict, dict]:
    """A report's recorded configuration and the :class:`InjectionConfig` fields its populations share."""
    config = json.load(open(f"{report_dir}/injection_report.json"))["config"]
    if config.get("survey") or config.get("psf_fwhm") or config.get("catalog"):
        raise SystemExit(f"{report_dir}: a run with a survey, a PSF FWHM or a catalogue is not handled here")
    mapping = {k: config[k] for k in ("band", "noise_ratio") if config.get(k) is not None}
    common = dict(n_galaxies=config["n_galaxies"], n_place=config["n_place"], snr_range=tuple(config["snr_range"]),
                  psf_profile=config["psf_profile"], psf_from_stars=config["psf_from_stars"], spacing=config["spacing"],
                  min_clearance=config["min_clearance"], pool_aperture_correction=not config["aperture_correction_per_copy"],
                  **mapping)
    return config, common


def frame_leaks(rows: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Each frame's leak as its rows of one method record it (``neighbour_leak``, its error, None where
    the model was used) and the model ``-(1 - 1/k)`` of its aperture factor."""
    out = {}
    for frame, part in rows.groupby("frame"):
        err = float(part["neighbour_leak_err"].iloc[0])
        out[str(frame)] = {"leak": float(part["neighbour_leak"].iloc[0]) if np.isfinite(err) else None,
                           "leak_err": err if np.isfinite(err) else None,
                           "model_leak": float(-(1 - 1 / part["aperture_correction"].iloc[0]))}
    return out


def main(report_dir: str, work: str) -> None:
    config, common = report_settings(report_dir)
    old = pd.read_parquet(f"{report_dir}/injection_table.parquet")
    sersic = run_injection(config["frames"], InjectionConfig(population="sersic", seed=population_seed(config["seed"], "sersic"),
                                                             **common), methods=["optimal"], model=config["model"])
    sersic.to_parquet(f"{work}/sersic_optimal.parquet", index=False)
    leaks = frame_leaks(sersic)
    with open(f"{work}/leaks.json", "w") as handle:
        json.dump(leaks, handle, indent=1)
    fallback = {}
    for (frame, method), given in aperture_factors(old[old["population"] == "sersic"]).items():
        factor = given[0] if isinstance(given, tuple) else given
        leak = leaks.get(frame, {}).get("leak")
        fallback[(frame, method)] = (factor, leak) if leak is not None and method != "aperture" else factor
    new = run_injection(config["frames"], InjectionConfig(population="blended", seed=population_seed(config["seed"], "blended"),
                                                          **common), methods=config["methods"], model=config["model"],
                        aperture_fallback=fallback or None)
    new.to_parquet(f"{work}/blended.parquet", index=False)
    keep = old[old["population"] != "blended"]
    columns = list(old.columns) + [c for c in new.columns if c not in old.columns]
    out = pd.concat([keep, new], ignore_index=True)[columns]
    order = {p: i for i, p in enumerate(dict.fromkeys(old["population"]))}
    out = out.sort_values("population", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    out.to_parquet(f"{report_dir}/injection_table.parquet", index=False)
    print(report_dir, len(old), "->", len(out), "rows; leaks", leaks, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
