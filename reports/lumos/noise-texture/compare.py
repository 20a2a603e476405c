"""Compare two ``lumos inject`` runs of the same seed (a base and a candidate model), per frame and true-SNR bin.

Usage: ``.venv/bin/python reports/lumos/noise-texture/compare.py BASE_DIR CANDIDATE_DIR OUT.json``
(each directory holds the ``injection_table.parquet`` of ``lumos inject``). For every population,
frame (and all frames together) and bin of true SNR, per method: n, bias = median((f - f0) / f0),
sigma68 = half the 16-84 % range of (f - f0) / f0, pull sigma68 of (f - f0) / flux_err, coverage68 =
fraction with |f - f0| < flux_err, and LUMOS sigma68 / optimal sigma68 on the same galaxies; per
frame, the median blank-sky ``error_scale`` that ``measure_exposure`` applied to the LUMOS errors
(the network's own 68 % half-width is ``flux_err / error_scale``).
Prints a markdown table of LUMOS (base -> candidate) and writes the figures as JSON.
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
    q16, q50, q84 = np.percentile(rel, [16, 50, 84])
    p16, p84 = np.percentile(pull, [16, 84])
    return {"n": int(len(ok)), "bias": float(q50), "sigma68": float(0.5 * (q84 - q16)),
            "pull_sigma68": float(0.5 * (p84 - p16)), "coverage68": float(np.mean(np.abs(pull) < 1.0))}


def scores(table: pd.DataFrame) -> dict:
    """{population: {frame or "all": {method: [per-bin dicts]}}}."""
    out: dict = {}
    for population, pop in table.groupby("population"):
        frames = {"all": pop, **{Path(str(f)).name: rows for f, rows in pop.groupby("frame")}}
        out[population] = {}
        for frame, rows in frames.items():
            per_method = {}
            for method, mrows in rows.groupby("method"):
                per_method[method] = [{"lo": lo, "hi": hi, **_stats(mrows[(mrows.true_snr >= lo) & (mrows.true_snr < hi)])}
                                      for lo, hi in SNR_BINS]
            for k, row in enumerate(per_method.get("lumos", [])):
                opt = per_method.get("optimal", [{}] * len(SNR_BINS))[k]
                if "sigma68" in row and opt.get("sigma68"):
                    row["sigma68_over_optimal"] = row["sigma68"] / opt["sigma68"]
            per_method["lumos_error_scale_median"] = float(rows.loc[rows.method == "lumos", "error_scale"].median())
            out[population][frame] = per_method
    return out


def main(argv: list[str]) -> int:
    base_dir, cand_dir, out_path = (Path(a) for a in argv[1:4])
    base = scores(pd.read_parquet(base_dir / "injection_table.parquet"))
    cand = scores(pd.read_parquet(cand_dir / "injection_table.parquet"))
    Path(out_path).write_text(json.dumps({"base": str(base_dir), "candidate": str(cand_dir),
                                          "base_scores": base, "candidate_scores": cand}, indent=1) + "\n")
    print("| population | frame | true SNR | n | bias | sigma68 / optimal | pull sigma68 | coverage68 |")
    print("|---|---|---|---|---|---|---|---|")
    for population in sorted(set(base) & set(cand)):
        for frame in base[population]:
            for b, c in zip(base[population][frame]["lumos"], cand[population][frame]["lumos"]):
                if "bias" not in b or "bias" not in c:
                    continue
                cells = [f"{b[k]:.3f} → {c[k]:.3f}" if k == "bias" else f"{b.get(k, float('nan')):.2f} → {c.get(k, float('nan')):.2f}"
                         for k in ("bias", "sigma68_over_optimal", "pull_sigma68", "coverage68")]
                print(f"| {population} | {frame} | {b['lo']:g}–{b['hi']:g} | {b['n']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
