"""The shared-error term's variants, scored by the cross-fitted 5-exposure co-add pull per bin of co-add true SNR.

For each injection (a ``lumos inject`` table or a ``lumos adapt`` run directory: its candidate's
LUMOS rows and the optimal rows of the same placements) and each of its Sérsic and bulge + disk +
knots populations, the co-add pull sigma68 with independent exposures and with four terms,
each cross-fitted between two halves of the galaxies
(:func:`lumos_ops.evaluation.injection_report._shared_error`):

- ``pooled``: measured on both populations, split by residual, every positive ``rho`` kept (the
  default before ``SIGNIFICANCE``);
- ``pooled_tested``: the same with the significance test;
- ``own``: measured on the population alone, every positive ``rho`` kept;
- ``own_tested``: the population alone with the significance test (the default now, for Sérsic).

Usage::

    .venv/bin/python reports/lumos/shared-error/significance/compare_terms.py OUT_DIR LABEL=PATH ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import lumos_ops.lumos.shared_error as shared_error
from lumos_ops.evaluation.injection_report import _coadds, _shared_error, json_clean
from lumos_ops.lumos.shared_error import placement_residual

VARIANTS = ("independent", "pooled", "pooled_tested", "own", "own_tested")
POPULATIONS = ("sersic", "knots")
SNR_MIN = 5.0


def load(path: Path) -> pd.DataFrame:
    """An injection table; for an adapt run, the candidate's rows and the base run's optimal rows."""
    if path.is_file():
        return pd.read_parquet(path)
    parts = []
    for population in POPULATIONS:
        candidate = path / "injection" / f"{population}-candidate.parquet"
        if not candidate.is_file():
            continue
        table = pd.read_parquet(candidate)
        base = path / "injection" / f"{population}-base.parquet"
        if "optimal" not in set(table["method"]) and base.is_file():
            optimal = pd.read_parquet(base)
            table = pd.concat([table, optimal[optimal["method"] == "optimal"]], ignore_index=True)
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def lumos_rows(table: pd.DataFrame, population: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    part = table[table["population"] == population]
    rows = part[(part["method"] == "lumos") & np.isfinite(part["flux"]) & np.isfinite(part["flux_err"])]
    return rows, placement_residual(part, rows)


def five(coadds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entry = next(c for c in coadds if c["n"] == 5)
    return [{k: b[k] for k in ("lo", "hi", "n", "bias", "pull_sigma68", "pull_sigma68_err", "coverage68")}
            for b in entry["by_true_snr"] if b["n"] >= 10 and b["lo"] is not None]


def score(rows: pd.DataFrame, residual, other: pd.DataFrame | None, tested: bool) -> tuple[list, list]:
    significance = shared_error.SIGNIFICANCE if tested else 0.0
    original = shared_error.estimate_shared_error

    def estimate(*args, **kwargs):
        kwargs["significance"] = significance
        return original(*args, **kwargs)

    shared_error.estimate_shared_error = estimate
    try:
        out = _shared_error(rows, residual if other is not None else None, other)
    finally:
        shared_error.estimate_shared_error = original
    return five(out["coadds_shared_error"]), out["shared_error"]["rho"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("inputs", nargs="+", help="LABEL=injection_table.parquet or LABEL=ADAPT_RUN_DIR")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"snr_min": SNR_MIN, "significance": shared_error.SIGNIFICANCE, "inputs": {}, "results": {}}
    lines = ["| injection | population | variant | ρ (measured SNR 0, 5, 10, 20, 50, 100, 200) | "
             "co-add pull σ68 by co-add true SNR 5–10 / 10–20 / 20–50 / ≥ 50 |", "|---|---|---|---|---|"]
    for item in args.inputs:
        label, path = item.split("=", 1)
        result["inputs"][label] = path
        table = load(Path(path))
        rows = {p: lumos_rows(table, p) for p in POPULATIONS if p in set(table["population"])}
        for population, (own, residual) in rows.items():
            others = [(r.assign(model_residual=np.nan if res is None else res)) for p, (r, res) in rows.items()
                      if p != population]
            pooled = pd.concat(others, ignore_index=True) if others else None
            entry: dict[str, Any] = {"independent": {"coadd5": five([_coadds(own, "lumos", 5)]), "rho": None}}
            for variant, other, tested in (("pooled", pooled, False), ("pooled_tested", pooled, True),
                                           ("own", None, False), ("own_tested", None, True)):
                if variant.startswith("pooled") and pooled is None:
                    continue
                bins, rho = score(own, residual, other, tested)
                entry[variant] = {"coadd5": bins, "rho": rho}
            result["results"][f"{label}:{population}"] = entry
            for variant, value in entry.items():
                pulls = " / ".join(f"{b['pull_sigma68']:.2f}" for b in value["coadd5"] if b["lo"] >= SNR_MIN)
                rho = "—" if value["rho"] is None else ", ".join(f"{r:.2f}" for r in value["rho"])
                lines.append(f"| {label} | {population} | {variant} | {rho} | {pulls} |")
    (args.out / "compare_terms.json").write_text(json.dumps(json_clean(result), indent=1) + "\n")
    (args.out / "compare_terms.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(result, args.out / "compare_terms.png")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(result["results"])
    ncols = min(len(keys), 2)
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.2 * nrows), sharey=True, squeeze=False)
    for ax, key in zip(axes.ravel(), keys):
        for variant, value in result["results"][key].items():
            bins = [b for b in value["coadd5"] if b["lo"] >= SNR_MIN]
            x = np.arange(len(bins))
            ax.errorbar(x + 0.05 * VARIANTS.index(variant), [b["pull_sigma68"] for b in bins],
                        yerr=[b["pull_sigma68_err"] or 0.0 for b in bins], marker="o", ms=3, label=variant)
            ax.set_xticks(x, [f"{b['lo']:g}–{b['hi']:g}" if b["hi"] and b["hi"] < 1e5 else f"≥{b['lo']:g}" for b in bins])
        ax.axhspan(0.9, 1.1, color="0.9")
        ax.set_yscale("log")
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("co-add true SNR")
    for ax in axes[:, 0]:
        ax.set_ylabel("5-exposure co-add pull σ68")
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
