"""The LUMOS co-adds of injection runs scored with several priors of a bad exposure.

For every injection table given, every population: the 5-exposure LUMOS co-adds (every disjoint run
of five of a galaxy's placements, the floors' shared part counted once, as ``lumos inject`` scores
them) with ``outlier_fraction`` 0 (the plain product), 0.003, 0.01 (the default) and 0.03, per bin of
the co-add's true SNR (bias, pull sigma68 and 68 % coverage with their bootstrap errors over
galaxies), the exposures each co-add discounted, and the per-exposure pulls' tails (share beyond
+-3) that say how many bad exposures there are.

Usage::

    .venv/bin/python reports/lumos/coadd-outliers/outlier_fractions.py OUT.json RUN_DIR [RUN_DIR ...]
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.evaluation import injection_report

FRACTIONS = (0.0, 0.003, 0.01, 0.03)


def main(out: str, runs: list[str]) -> None:
    result = {}
    for run in runs:
        table = pd.read_parquet(Path(run) / "injection_table.parquet")
        lumos = table[table["method"] == "lumos"]
        entry = {}
        for pop, frame in lumos.groupby("population"):
            ok = frame[np.isfinite(frame["flux"]) & np.isfinite(frame["flux_err"])]
            pull = ((ok["flux"] - ok["true_flux"]) / ok["flux_err"]).to_numpy()
            tails = {"above_3": float(np.mean(pull > 3)), "below_minus_3": float(np.mean(pull < -3)), "n": int(pull.size)}
            scored = {}
            for fraction in FRACTIONS:
                five = injection_report._coadds(ok, "lumos", 5, outlier_fraction=fraction)
                scored[str(fraction)] = {"by_true_snr": five["by_true_snr"], "discounted_per_coadd": five["discounted"]}
                worst = max((b for b in five["by_true_snr"] if b["lo"] is not None and b["lo"] >= 5.0 and b["n"] >= 20),
                            key=lambda b: abs(b["pull_sigma68"] - 1.0))
                print(f"{Path(run).name:12s} {pop:8s} eps {fraction:5.3f}: co-add pull sigma68 per SNR bin >= 5 "
                      + " ".join(f"{b['pull_sigma68']:.3f}" for b in five["by_true_snr"] if b["lo"] is not None and b["lo"] >= 5.0)
                      + f" (worst {worst['pull_sigma68']:.3f} ± {worst['pull_sigma68_err']:.3f}), bias "
                      + " ".join(f"{b['bias']:+.3f}" for b in five["by_true_snr"] if b["lo"] is not None and b["lo"] >= 5.0)
                      + f"; discounted {scored[str(fraction)]['discounted_per_coadd']:.3f} per co-add", flush=True)
            entry[pop] = {"pull_tails": tails, "coadds5": scored}
        result[str(run)] = entry
    Path(out).write_text(json.dumps(injection_report.json_clean(result), indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
