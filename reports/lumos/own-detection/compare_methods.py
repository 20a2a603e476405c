"""Every method of two ``lumos inject`` runs of the same seed (before and after a code change), per true-SNR bin.

Usage: ``.venv/bin/python reports/lumos/own-detection/compare_methods.py OUT.json BEFORE_DIR AFTER_DIR``
(each directory holds the ``injection_table.parquet`` and ``injection_report.json`` of ``lumos
inject``). Per population, method and bin of true SNR (all frames together): n, bias =
median((f - f0) / f0), sigma68 = half the 16-84 % range of (f - f0) / f0, pull sigma68 of
(f - f0) / flux_err, the share of pulls above +3 and below -3, and sigma68 / the optimal sum's on
the same placements; per population and method, the 5-exposure co-add pull sigma68 (worst bin of
co-add true SNR >= 5) from the report. Prints a markdown table (before -> after) and writes the figures
as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# the bins and per-bin statistics of reports/lumos/noise-texture/compare.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "noise-texture"))
from compare import SNR_BINS  # noqa: E402
from compare import _stats as _bin_stats  # noqa: E402


def _stats(rows: pd.DataFrame) -> dict[str, float]:
    """``noise-texture/compare.py``'s bin statistics plus the shares of pulls above +3 and below -3."""
    stats = _bin_stats(rows)
    if "bias" in stats:
        ok = rows[np.isfinite(rows.flux) & np.isfinite(rows.flux_err) & (rows.flux_err > 0)]
        pull = (ok.flux - ok.true_flux) / ok.flux_err
        stats.update(above3=float(np.mean(pull > 3)), below3=float(np.mean(pull < -3)))
    return stats


def _coadd_pull(report: dict, population: str, method: str) -> float | None:
    coadds = report["populations"][population]["methods"][method].get("coadds", [])
    five = [c for c in coadds if c.get("n") == 5]
    bins = [b for b in (five[0]["by_true_snr"] if five else []) if (b.get("lo") or 0) >= 5 and b.get("pull_sigma68")]
    return max((b["pull_sigma68"] for b in bins), key=lambda v: abs(v - 1.0), default=None)


def _run(directory: Path) -> dict:
    table = pd.read_parquet(directory / "injection_table.parquet")
    report = json.loads((directory / "injection_report.json").read_text())
    out: dict = {}
    for population, rows in table.groupby("population"):
        optimal = rows[rows.method == "optimal"].set_index("placement")
        for method, mrows in rows.groupby("method"):
            entry = out.setdefault(population, {}).setdefault(method, {"bins": []})
            for lo, hi in SNR_BINS:
                sel = mrows[(mrows.true_snr >= lo) & (mrows.true_snr < hi)]
                stats = {"lo": lo, "hi": hi, **_stats(sel)}
                ref = _stats(optimal.loc[optimal.index.intersection(sel.placement)].reset_index())
                if "sigma68" in stats and "sigma68" in ref:
                    stats["sigma68_over_optimal"] = stats["sigma68"] / ref["sigma68"]
                entry["bins"].append(stats)
            entry["coadd5_pull_sigma68_worst"] = _coadd_pull(report, population, method)
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, spec)


def main(argv: list[str]) -> int:
    """Compare the runs ``argv[1]`` (before) and ``argv[2]`` (after); write ``argv[0]``."""
    out, before, after = Path(argv[0]), _run(Path(argv[1])), _run(Path(argv[2]))
    out.write_text(json.dumps({"before": before, "after": after, "runs": argv[1:]}, indent=1) + "\n")
    keys = (("bias", "+.3f"), ("sigma68", ".3f"), ("pull_sigma68", ".2f"), ("above3", ".3f"), ("sigma68_over_optimal", ".2f"))
    for population in after:
        print(f"\n### {population}\n")
        print("| method | true SNR | n | bias | σ68 | pull σ68 | pulls > +3 | σ68 / optimal's |")
        print("|---|---|---|---|---|---|---|---|")
        for method in after[population]:
            for b0, b1 in zip(before[population][method]["bins"], after[population][method]["bins"]):
                cells = [f"{_fmt(b0.get(k), s)} → {_fmt(b1.get(k), s)}" for k, s in keys]
                print(f"| {method} | {b0['lo']:g}–{b0['hi']:g} | {b1.get('n', 0)} | " + " | ".join(cells) + " |")
            c0 = before[population][method]["coadd5_pull_sigma68_worst"]
            c1 = after[population][method]["coadd5_pull_sigma68_worst"]
            print(f"| {method} | 5-exposure co-add pull σ68, worst bin of co-add true SNR ≥ 5 | | | | {_fmt(c0, '.3f')} → {_fmt(c1, '.3f')} | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
