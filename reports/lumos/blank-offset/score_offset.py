"""Score injection tables measured with the blank-sky offset subtracted (commit 526d168) with and
without it (README.md here).

The tables of that commit carry ``flux_offset`` (e-/s), the offset taken off each row's flux (LUMOS:
off its whole likelihood). Putting it back gives the very same measurements without the correction.
Both are scored with :func:`lumos_ops.evaluation.injection_report.score_injection` (the error floor
as measured); per table, population and method this prints the faint pull by size
(``faint_pull_by_size``), the shared part of the pulls (``shared_pull``, true SNR 2-50) and the
5-exposure co-add pulls by co-add SNR, without -> with the offset.

Usage: .venv/bin/python reports/lumos/blank-offset/score_offset.py OUT.json DIR [DIR ...]
(DIR: a ``lumos inject --out`` folder written by commit 526d168).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean, score_injection

MOVED = ("median", "mean", "mode", "q16", "q84")


def without_offset(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``flux_offset`` put back on the fluxes (LUMOS: the mixture means and location summaries)."""
    out = table.copy()
    shift = np.nan_to_num(out["flux_offset"].to_numpy(np.float64))
    lum = (out["method"] == "lumos").to_numpy()
    for column in [c for c in out.columns if c.startswith("mu_")] + [c for c in MOVED if c in out]:
        out.loc[lum, column] = out.loc[lum, column].to_numpy(np.float64) + shift[lum]
    out["flux"] = out["flux"].to_numpy(np.float64) + shift
    return out


def summary(report: dict) -> dict:
    out = {}
    for pop, entry in report["populations"].items():
        out[pop] = {"faint_pull_by_size": entry["faint_pull_by_size"], "methods": {}}
        for method, m in entry["methods"].items():
            five = next(c for c in m["coadds"] if c["n"] == 5)
            out[pop]["methods"][method] = {
                "shared_rho": {f"{b['lo']:g}-{b['hi']:g}": b["rho"] for b in m["shared_pull"] if 2.0 <= b["lo"] < 50.0},
                "coadd5_pull": {f"{b['lo']:g}-{b['hi']:g}": b["pull_sigma68"] for b in five["by_true_snr"]
                                if b["lo"] is not None and b["n"] > 0},
                "bias": {f"{b['lo']:g}-{b['hi']:g}": b["bias"] for b in m["by_true_snr"] if b["lo"] is not None},
            }
    return out


def main(out_path: str, dirs: list[str]) -> None:
    results = {}
    for d in dirs:
        table = pd.read_parquet(Path(d) / "injection_table.parquet")
        if "flux_offset" not in table:
            raise SystemExit(f"{d}: no flux_offset column; this table was not measured with the offset")
        results[d] = {"without": summary(json_clean(score_injection(without_offset(table)))),
                      "with": summary(json_clean(score_injection(table)))}
        for pop, entry in results[d]["with"].items():
            before = results[d]["without"][pop]
            for method, m in entry["methods"].items():
                b = before["methods"][method]
                size_b = before["faint_pull_by_size"]["methods"][method]
                size_a = entry["faint_pull_by_size"]["methods"][method]
                fmt = lambda values: " / ".join("-" if v is None else f"{v:+.2f}" for v in values)  # noqa: E731
                print(f"{Path(d).name:16s} {pop:8s} {method:9s} size {fmt(size_b)} -> {fmt(size_a)} | rho "
                      f"{fmt(b['shared_rho'].values())} -> {fmt(m['shared_rho'].values())} | co-add5 "
                      f"{fmt(b['coadd5_pull'].values())} -> {fmt(m['coadd5_pull'].values())}")
    Path(out_path).write_text(json.dumps(results, indent=1, allow_nan=False))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
