"""Score two injection tables of the same seed (two models) with this commit's code, side by side.

Per population: LUMOS bias, pull sigma68 and 68 % coverage per bin of true SNR; the median relative
error per frame and true-SNR bin (where a frame's sky level acts); and the acceptance targets.

Usage: .venv/bin/python reports/lumos/sky-level/compare_models.py BEFORE.parquet AFTER.parquet OUT.json
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean, score_injection, targets

SNR_EDGES = [2.0, 5.0, 10.0, 20.0, 50.0, 1e6]


def _per_frame(table: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    rows = table[(table["method"] == "lumos") & np.isfinite(table["flux"])]
    rel = rows["flux"] / rows["true_flux"] - 1.0
    out: dict[str, dict[str, list[float]]] = {}
    for (population, frame), idx in rows.groupby(["population", rows["frame"].str.rsplit("/", n=1).str[-1]]).groups.items():
        snr = rows.loc[idx, "true_snr"].to_numpy()
        out.setdefault(population, {})[frame] = [
            float(np.median(rel.loc[idx].to_numpy()[(snr >= lo) & (snr < hi)])) for lo, hi in zip(SNR_EDGES[:-1], SNR_EDGES[1:])]
    return out


def _lumos_bins(report: dict, population: str) -> list[dict]:
    return [{k: row[k] for k in ("lo", "hi", "n", "bias", "pull_sigma68", "coverage68")}
            for row in report["populations"][population]["methods"]["lumos"]["by_true_snr"]]


def main(before: str, after: str, out: str) -> None:
    tables = {"before": pd.read_parquet(before), "after": pd.read_parquet(after)}
    reports = {k: json_clean(score_injection(t)) for k, t in tables.items()}
    result: dict = {"command": " ".join(["python", *sys.argv]), "snr_edges": SNR_EDGES}
    for key, report in reports.items():
        result[key] = {"lumos_by_true_snr": {p: _lumos_bins(report, p) for p in report["populations"]},
                       "median_rel_error_by_frame": _per_frame(tables[key]),
                       "targets": [{k: t[k] for k in ("population", "target", "value", "met")} for t in targets(report)]}
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")
    for (a, b) in zip(result["before"]["targets"], result["after"]["targets"]):
        print(f"| {a['population']} | {a['target']} | {a['value']:+.3f} | {b['value']:+.3f} {'met' if b['met'] else 'missed'} |")


if __name__ == "__main__":
    main(*sys.argv[1:4])
