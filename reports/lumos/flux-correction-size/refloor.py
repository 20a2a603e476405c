"""Score an injection again under other error floors, one per method.

    python refloor.py TABLE FLOORS.json OUT_DIR

``TABLE``: a ``lumos inject`` ``injection_table.parquet``; ``FLOORS.json``: ``{"method": floor}``
(fractions of the flux), e.g. the floors another injection's bright rows ask for. Each row's
floor is taken out (its error back to ``flux_err_stat``, a LUMOS likelihood narrowed about its
median by the same factor) and the new one applied through the production
``lumos_ops.photometry.error_floor.apply_error_floor``, with the row's neighbour light and
neighbour floor unchanged; LUMOS's ``q16``/``q84`` are read from the new mixtures. Writes
``OUT_DIR/injection_report.json`` (``score_injection``, the measurements untouched) and prints the
targets.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean, score_injection
from lumos_ops.lumos.mixture import mixture_quantile
from lumos_ops.lumos.mixture_table import has_mixture, mixtures_from_table
from lumos_ops.noise_calibration import widen_likelihoods
from lumos_ops.photometry.error_floor import apply_error_floor


def refloor(rows: pd.DataFrame, floor: float) -> pd.DataFrame:
    """One method's rows with their floor replaced by ``floor``."""
    columns = rows.columns
    rows = rows.dropna(axis=1, how="all")  # the table's other methods' columns, which this method lacks
    stat = rows["flux_err_stat"].to_numpy(np.float64)
    err = rows["flux_err"].to_numpy(np.float64)
    usable = np.isfinite(stat) & (stat > 0) & np.isfinite(err) & (err > 0)
    bare = widen_likelihoods(rows.assign(flux_err=np.where(usable, stat, err)), np.where(usable, stat / err, 1.0))
    light = rows["neighbour_light"].to_numpy(np.float64) if "neighbour_light" in rows else None
    neighbour = float(rows["neighbour_error_floor"].iloc[0]) if "neighbour_error_floor" in rows else None
    out = apply_error_floor(bare, floor, neighbour_light=light, neighbour_floor=neighbour)
    if has_mixture(out):
        q = mixture_quantile([0.16, 0.84], *mixtures_from_table(out).args)
        out["q16"], out["q84"] = q[:, 0], q[:, 1]
    return out.reindex(columns=columns)


def main(table_path: str, floors_path: str, out_dir: str) -> None:
    table = pd.read_parquet(table_path)
    floors = json.loads(Path(floors_path).read_text())
    parts = [refloor(rows, float(floors[method])) if method in floors else rows
             for method, rows in table.groupby("method", sort=False)]
    report = score_injection(pd.concat(parts).sort_index())
    report["floors"] = floors
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "injection_report.json").write_text(json.dumps(json_clean(report), indent=1))
    met = 0
    for target in report["targets"]:
        met += bool(target["met"])
        print(f"{target['population']:<8} {target['target'][:78]:<78} {target['value']:.3f} "
              f"{'met' if target['met'] else 'MISS'}")
    print(f"met {met} of {len(report['targets'])}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
