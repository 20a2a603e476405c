"""Calibrated and raw pull sigma68 of an injection's rows per method and frame (for a run at ~zero flux).

Usage: .venv/bin/python reports/lumos/lumos-width/zero_flux.py INJECTION_DIR OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.stats import sigma68


def main(argv: list[str]) -> None:
    table = pd.read_parquet(Path(argv[0]) / "injection_table.parquet")
    rows = []
    for (method, frame), group in table.groupby(["method", "frame"]):
        raw = (group["flux"] / group["flux_err_raw"]).to_numpy(np.float64)
        calibrated = (group["flux"] / group["flux_err"]).to_numpy(np.float64)
        rows.append({"method": method, "frame": Path(str(frame)).name, "n": len(group),
                     "raw_pull_sigma68": float(sigma68(raw)), "k_median": float(group["error_scale"].median()),
                     "pull_sigma68": float(sigma68(calibrated)), "pull_median": float(np.median(calibrated))})
        print(f"{method:9s} {rows[-1]['frame']:18s} n {len(group):4d}  raw {rows[-1]['raw_pull_sigma68']:.3f}  "
              f"k {rows[-1]['k_median']:.3f}  calibrated {rows[-1]['pull_sigma68']:.3f}  median {rows[-1]['pull_median']:+.2f}")
    Path(argv[1]).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
