"""LUMOS's point estimate: the likelihood's median (``flux``) against its peak (``mode``, the maximum-
likelihood flux) and mean, at fixed true SNR, from injection tables.

For each table (a ``lumos inject`` table, or a ``lumos adapt`` run directory: its candidate's Sérsic
rows) and population, per bin of true SNR: the median relative error ``(f - f0) / f0`` and the
median pull ``(f - f0) / flux_err`` of each summary, and the sigma68 of the relative error.

Usage::

    .venv/bin/python reports/lumos/point-estimate/compare_summaries.py OUT_DIR LABEL=PATH ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean
from lumos_ops.stats import sigma68

EDGES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, np.inf)
SUMMARIES = ("flux", "mode", "mean")


def load(path: Path) -> pd.DataFrame:
    table = pd.read_parquet(path if path.is_file() else path / "injection" / "sersic-candidate.parquet")
    return table[(table["method"] == "lumos") & np.isfinite(table["flux"]) & (table["flux_err"] > 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("inputs", nargs="+", help="LABEL=injection_table.parquet or LABEL=ADAPT_RUN_DIR")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"inputs": {}, "results": {}}
    lines = ["| injection | population | true SNR | n | median bias: flux (median) / mode / mean | "
             "median pull: flux / mode / mean | σ68: flux / mode |", "|---|---|---|---|---|---|---|"]
    for item in args.inputs:
        label, path = item.split("=", 1)
        result["inputs"][label] = path
        table = load(Path(path))
        for population, rows in table.groupby("population", sort=False):
            bins = []
            for lo, hi in zip(EDGES[:-1], EDGES[1:]):
                part = rows[(rows["true_snr"] >= lo) & (rows["true_snr"] < hi)]
                if len(part) < 20:
                    continue
                entry = {"lo": lo, "hi": None if np.isinf(hi) else hi, "n": int(len(part))}
                for name in SUMMARIES:
                    rel = (part[name] - part["true_flux"]) / part["true_flux"]
                    entry[name] = {"bias": float(np.median(rel)), "sigma68": float(sigma68(rel)),
                                   "median_pull": float(np.median((part[name] - part["true_flux"]) / part["flux_err"]))}
                bins.append(entry)
                snr = f"{lo:g}–{hi:g}" if np.isfinite(hi) else f"≥ {lo:g}"
                lines.append(f"| {label} | {population} | {snr} | {entry['n']} | "
                             + " / ".join(f"{entry[s]['bias']:+.3f}" for s in SUMMARIES) + " | "
                             + " / ".join(f"{entry[s]['median_pull']:+.2f}" for s in SUMMARIES) + " | "
                             + f"{entry['flux']['sigma68']:.3f} / {entry['mode']['sigma68']:.3f} |")
            result["results"][f"{label}:{population}"] = bins
    (args.out / "compare_summaries.json").write_text(json.dumps(json_clean(result), indent=1) + "\n")
    (args.out / "compare_summaries.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
