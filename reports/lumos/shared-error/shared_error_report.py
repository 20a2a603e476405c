"""Co-add pulls with and without the shared-error term (lumos_ops.lumos.shared_error), from injection tables.

For each table and population: the shared-error table measured on all its LUMOS rows (what
``lumos adapt`` / ``lumos model shared-error`` record), and the 5-exposure co-add pull sigma68 per
bin of co-add true SNR, independent and with the term (cross-fitted between two halves of the
galaxies: ``lumos_ops.evaluation.injection_report.score_injection``). ``--transfer A:POP B:POP``
also co-adds table B's population with the table measured on table A's population (a term measured
on Sersic injections applied to other galaxies). ``--pool A:POP B:POP ...`` measures one term on the
listed populations together (what ``lumos adapt --populations sersic knots`` records) and co-adds
each of them with it, cross-fitted between two halves of every population's galaxies, with all
their galaxies and, for each ``--pool-cap N``, at most N galaxies per population (an equal mix,
as ``lumos adapt`` injects the same number of every population).

Usage::

    .venv/bin/python reports/lumos/shared-error/shared_error_report.py OUT.json LABEL=TABLE.parquet ... \
        [--transfer LABEL:POP LABEL:POP] [--pool LABEL:POP LABEL:POP ...]... [--pool-cap N ...] [--plot OUT.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection_report import COADD_N, _coadds, json_clean, score_injection
from lumos_ops.lumos.shared_error import estimate_shared_error, placement_residual

SNR_MIN = 5.0


def _five(coadds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entry = next(c for c in coadds if c["n"] == 5)
    return [{k: b[k] for k in ("lo", "hi", "n", "bias", "pull_median", "pull_sigma68", "coverage68")}
            for b in entry["by_true_snr"] if b["n"] >= 10]


def _worst(rows: list[dict[str, Any]]) -> float:
    values = [r["pull_sigma68"] for r in rows if r["lo"] is not None and r["lo"] >= SNR_MIN]
    return float(max(values, key=lambda v: abs(v - 1.0))) if values else float("nan")


def _lumos(table: pd.DataFrame, population: str) -> pd.DataFrame:
    """LUMOS rows of one population with finite flux and error, with the optimal fit's
    ``model_residual`` of the same placement (NaN when the table has none) and its galaxy median."""
    rows = table[(table["method"] == "lumos") & (table["population"] == population)]
    rows = rows[np.isfinite(rows["flux"]) & np.isfinite(rows["flux_err"])]
    residual = placement_residual(table, rows)
    rows = rows.assign(model_residual=np.nan if residual is None else residual)
    return rows.assign(galaxy_residual=rows.groupby("galaxy")["model_residual"].transform("median"))


def _term(rows: pd.DataFrame, galaxy: str = "galaxy"):
    has = np.isfinite(rows["model_residual"].to_numpy(np.float64)).any()
    return estimate_shared_error(rows["flux"], rows["flux_err"], rows["true_flux"], rows[galaxy], frame=rows["frame"],
                                 residual=rows["model_residual"] if has else None)


def _rho(term, rows: pd.DataFrame) -> np.ndarray:
    return term.rho_at(rows["flux"].to_numpy() / rows["flux_err"].to_numpy(), residual=rows["galaxy_residual"].to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("tables", nargs="+", help="LABEL=injection_table.parquet")
    parser.add_argument("--transfer", nargs=2, action="append", default=[], metavar=("FROM", "TO"),
                        help="LABEL:POPULATION whose term is applied to LABEL:POPULATION")
    parser.add_argument("--pool", nargs="+", action="append", default=[], metavar="LABEL:POP",
                        help="populations whose pooled term co-adds each of them (cross-fitted); may be repeated")
    parser.add_argument("--pool-cap", type=int, nargs="*", default=[], metavar="N",
                        help="also pool at most N galaxies of each population (equal mixes), once per N")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    tables = {}
    for item in args.tables:
        label, path = item.split("=", 1)
        table = pd.read_parquet(path)
        tables[label] = table.drop(columns=["model"]) if "model" in table else table
    result: dict[str, Any] = {"snr_min": SNR_MIN, "tables": {k: v for k, v in (i.split("=", 1) for i in args.tables)},
                              "results": {}, "transfer": []}
    print(f"{'table':12s} {'population':10s} {'rho by measured SNR (0,5,10,20,50,100,200)':44s} "
          f"{'co-add pull, worst bin SNR>=5: independent -> shared term':>30s}")
    for label, table in tables.items():
        report = score_injection(table)
        for population, entry in report["populations"].items():
            lum = entry["methods"]["lumos"]
            independent, shared = _five(lum["coadds"]), _five(lum["coadds_shared_error"])
            result["results"][f"{label}:{population}"] = {
                "shared_error": lum["shared_error"], "coadd5_independent": independent, "coadd5_shared": shared,
                "worst_independent": _worst(independent), "worst_shared": _worst(shared)}
            rho = " ".join(f"{r:.3f}" for r in lum["shared_error"]["rho"])
            print(f"{label:12s} {population:10s} {rho:44s} {_worst(independent):6.3f} -> {_worst(shared):6.3f}")
    for source, target in args.transfer:
        (src_label, src_pop), (dst_label, dst_pop) = source.split(":"), target.split(":")
        src = _lumos(tables[src_label], src_pop)
        term = _term(src)
        dst = _lumos(tables[dst_label], dst_pop)
        dst = dst.assign(shared_rho=_rho(term, dst))
        rows = _five([_coadds(dst, "lumos", n, shared=True) for n in COADD_N])
        own = result["results"][f"{dst_label}:{dst_pop}"]
        result["transfer"].append({"from": source, "to": target, "shared_error": term.to_dict(), "coadd5": rows,
                                   "worst": _worst(rows), "worst_independent": own["worst_independent"],
                                   "worst_own_crossfit": own["worst_shared"]})
        print(f"{source} -> {target}: worst co-add pull {own['worst_independent']:.3f} -> {_worst(rows):.3f} "
              f"(its own term, cross-fitted: {own['worst_shared']:.3f})")
    result["pooled"] = [_pooled(tables, group, cap) for group in args.pool for cap in (None, *args.pool_cap)]
    for pooled in result["pooled"]:
        for key, entry in pooled["coadd5"].items():
            own = result["results"][key]
            bins = " / ".join(f"{b['pull_sigma68']:.2f}" for b in entry["bins"] if b["lo"] is not None)
            print(f"pooled term ({', '.join(pooled['populations'])}; at most {pooled['cap_galaxies'] or 'all'} galaxies "
                  f"each) -> {key}: co-add pull by SNR {bins}; worst {own['worst_independent']:.3f} -> "
                  f"{entry['worst']:.3f} (its own term: {own['worst_shared']:.3f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_clean(result), indent=1) + "\n")
    if args.plot:
        _plot(result, args.plot)


def _pooled(tables: dict[str, pd.DataFrame], keys: list[str], cap: int | None = None, seed: int = 0) -> dict[str, Any]:
    """One term from the listed populations' rows, cross-fitted: each half of a population's galaxies
    is co-added with the term of its other half plus the other populations, each at most ``cap``
    galaxies (random, seeded; None: all)."""
    rng = np.random.default_rng(seed)
    parts = {}
    for key in keys:
        label, population = key.split(":")
        rows = _lumos(tables[label], population)
        half = pd.factorize(rows["galaxy"], sort=True)[0] % 2
        parts[key] = rows.assign(gid=key + ":" + rows["galaxy"].astype(str), half=half)

    def capped(rows: pd.DataFrame) -> pd.DataFrame:
        galaxies = rows["gid"].unique()
        if cap is None or galaxies.size <= cap:
            return rows
        return rows[rows["gid"].isin(rng.choice(galaxies, cap, replace=False))]

    every = pd.concat([capped(rows) for rows in parts.values()], ignore_index=True)
    out: dict[str, Any] = {"populations": keys, "cap_galaxies": cap, "shared_error": _term(every, "gid").to_dict(),
                           "coadd5": {}}
    for key, rows in parts.items():
        rho = np.zeros(len(rows))
        for k in (0, 1):
            others = [capped(r) for name, r in parts.items() if name != key]
            fitted = _term(pd.concat([capped(rows[rows["half"] != k]), *others], ignore_index=True), "gid")
            mine = rows["half"].to_numpy() == k
            rho[mine] = _rho(fitted, rows[mine])
        coadds = _five([_coadds(rows.assign(shared_rho=rho), "lumos", n, shared=True) for n in COADD_N])
        out["coadd5"][key] = {"bins": coadds, "worst": _worst(coadds)}
    return out


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(result["results"])
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        entry = result["results"][key]
        for name, style in (("coadd5_independent", "o--"), ("coadd5_shared", "s-")):
            rows = [r for r in entry[name] if r["lo"] is not None]
            x = [np.sqrt(r["lo"] * r["hi"]) if r["hi"] and r["hi"] < 1e5 else 2 * r["lo"] for r in rows]
            ax.plot(x, [r["pull_sigma68"] for r in rows], style, label=name.split("_")[1])
        ax.axhspan(0.9, 1.1, color="0.9")
        ax.set_xscale("log")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("co-add true SNR")
    axes[0][0].set_ylabel("5-exposure co-add pull sigma68")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
