"""LUMOS per-exposure pull sigma68 / coverage and 5-exposure co-add pull by true SNR, two injection reports side by side.

Usage: .venv/bin/python reports/lumos/lumos-width/compare_runs.py BEFORE.json AFTER.json OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def lumos_bins(path: str) -> dict:
    report = json.loads(Path(path).read_text())
    out = {}
    for population, entry in report["populations"].items():
        methods = entry["methods"]
        if "lumos" not in methods:
            continue
        rows = [row for row in methods["lumos"]["by_true_snr"] if row["lo"] is not None and row["lo"] >= 2]
        coadd = next(c for c in methods["lumos"]["coadds"] if c["n"] == 5)
        out[population] = {
            "true_snr_lo": [row["lo"] for row in rows],
            "pull_sigma68": [row["pull_sigma68"] for row in rows],
            "coverage68": [row["coverage68"] for row in rows],
            "coadd5_snr_lo": [row["lo"] for row in coadd["by_true_snr"] if row["lo"] is not None],
            "coadd5_pull_sigma68": [row["pull_sigma68"] for row in coadd["by_true_snr"] if row["lo"] is not None],
            "coadd5_bias": [row["bias"] for row in coadd["by_true_snr"] if row["lo"] is not None],
        }
    return out


def main(argv: list[str]) -> None:
    before, after, out = argv
    result = {"before": before, "after": after, "lumos_before": lumos_bins(before), "lumos_after": lumos_bins(after)}
    for population, row in result["lumos_after"].items():
        old = result["lumos_before"].get(population)
        if old is None:
            continue
        for key in ("pull_sigma68", "coverage68", "coadd5_pull_sigma68", "coadd5_bias"):
            print(f"{population:8s} {key:20s} " + " / ".join("-" if v is None else f"{v:.3f}" for v in old[key])
                  + "  ->  " + " / ".join("-" if v is None else f"{v:.3f}" for v in row[key]))
    Path(out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
