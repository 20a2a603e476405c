"""Median offsets of ``lumos inject`` runs per method and bin of true SNR.

Usage: ``.venv/bin/python reports/lumos/injection-spacing/score.py OUT.json NAME=RUN_DIR ...`` (each
directory holds the ``injection_table.parquet`` of ``lumos inject``). For every run, population,
method and bin of true SNR (:func:`lumos_ops.evaluation.fixed_truth.fixed_truth_bins`): n, bias =
median((f - f0) / f0) and its bootstrap error over galaxies, pull_median = median((f - f0) / flux_err),
pull sigma68 and coverage68.
Prints a markdown table of bias / median pull and writes the figures as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from lumos_ops.evaluation.fixed_truth import fixed_truth_bins

SNR_EDGES: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 1000)


def scores(table: pd.DataFrame) -> dict:
    """{population: {method: [per-bin dicts of lumos_ops.evaluation.fixed_truth.fixed_truth_bins]}}
    by true SNR, bootstrap errors over whole galaxies; the last row of every list is all rows."""
    out: dict = {}
    for population, pop in table.groupby("population"):
        out[str(population)] = {}
        for method, m in pop.groupby("method"):
            out[str(population)][str(method)] = fixed_truth_bins(
                m["true_flux"].to_numpy(), m["flux"].to_numpy(), m["flux_err"].to_numpy(), by=m["true_snr"].to_numpy(),
                edges=SNR_EDGES, n_boot=100, groups=m["galaxy"].to_numpy())
    return out


def main(argv: list[str]) -> int:
    out_path = Path(argv[1])
    runs = dict(arg.split("=", 1) for arg in argv[2:])
    result = {name: {"dir": path, "scores": scores(pd.read_parquet(Path(path) / "injection_table.parquet"))}
              for name, path in runs.items()}
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print("| run | population | method | " + " | ".join(f"SNR {lo}-{hi}" for lo, hi in zip(SNR_EDGES, SNR_EDGES[1:])) + " |")
    print("|---|---|---|" + "---|" * (len(SNR_EDGES) - 1))
    for name, run in result.items():
        for population, methods in run["scores"].items():
            for method, rows in methods.items():
                cells = [f"{100 * r['bias']:+.1f} % / {r['pull_median']:+.2f}" if r["n"] else "" for r in rows[:-1]]
                print(f"| {name} | {population} | {method} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
