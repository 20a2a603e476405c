"""Median offsets of ``lumos inject`` runs per method and bin of true SNR.

Usage: ``.venv/bin/python reports/lumos/injection-spacing/score.py OUT.json NAME=RUN_DIR ...`` (each
directory holds the ``injection_table.parquet`` of ``lumos inject``). For every run, population,
method and bin of true SNR: n, bias = median((f - f0) / f0), median pull = median((f - f0) / flux_err),
pull sigma68 (half the 16-84 % range of the pulls) and coverage68 = fraction with |f - f0| < flux_err.
Prints a markdown table of bias / median pull and writes the figures as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SNR_BINS: tuple[tuple[float, float], ...] = ((1, 2), (2, 5), (5, 10), (10, 20), (20, 50), (50, 1000))


def _stats(rows: pd.DataFrame) -> dict[str, float]:
    ok = rows[np.isfinite(rows.flux) & np.isfinite(rows.flux_err) & (rows.flux_err > 0)]
    if len(ok) < 5:
        return {"n": int(len(ok))}
    rel = (ok.flux - ok.true_flux) / ok.true_flux
    pull = (ok.flux - ok.true_flux) / ok.flux_err
    p16, p50, p84 = np.percentile(pull, [16, 50, 84])
    return {"n": int(len(ok)), "bias": float(np.median(rel)), "median_pull": float(p50),
            "pull_sigma68": float(0.5 * (p84 - p16)), "coverage68": float(np.mean(np.abs(pull) < 1.0))}


def scores(table: pd.DataFrame) -> dict:
    """{population: {method: [per-bin dicts]}}."""
    return {str(population): {str(method): [{"lo": lo, "hi": hi, **_stats(m[(m.true_snr >= lo) & (m.true_snr < hi)])}
                                            for lo, hi in SNR_BINS]
                              for method, m in pop.groupby("method")}
            for population, pop in table.groupby("population")}


def main(argv: list[str]) -> int:
    out_path = Path(argv[1])
    runs = dict(arg.split("=", 1) for arg in argv[2:])
    result = {name: {"dir": path, "scores": scores(pd.read_parquet(Path(path) / "injection_table.parquet"))}
              for name, path in runs.items()}
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print("| run | population | method | " + " | ".join(f"SNR {lo}-{hi}" for lo, hi in SNR_BINS) + " |")
    print("|---|---|---|" + "---|" * len(SNR_BINS))
    for name, run in result.items():
        for population, methods in run["scores"].items():
            for method, rows in methods.items():
                cells = [f"{100 * r['bias']:+.1f} % / {r['median_pull']:+.2f}" if "bias" in r else "" for r in rows]
                print(f"| {name} | {population} | {method} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
