"""Markdown tables of a ``lumos adapt`` injection report: base model, adapted candidate and classical
methods per true-SNR bin, and the likelihood targets of both models.

Usage::

    .venv/bin/python reports/adapt/summarise.py reports/adapt/injection_report.json [--scope all|BAND ...]
"""

from __future__ import annotations

import argparse
import json

ORDER = ("lumos_base", "lumos_candidate", "optimal", "aperture", "modelfit")


def _fmt(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


def bins_table(report: dict, scope: str, population: str) -> str:
    rows = [r for r in report["comparison"] if r["scope"] == scope and r["population"] == population]
    lines = [f"**{scope}, {population}** (per exposure; bins of true SNR)", "",
             "| method | true SNR | n | bias | σ68 | pull σ68 | coverage68 | σ68 / optimal's |",
             "|---|---|---|---|---|---|---|---|"]
    for method in ORDER:
        for r in (r for r in rows if r["method"] == method):
            snr = "all" if r["snr_lo"] is None else f"{r['snr_lo']:g}–{r['snr_hi']:g}"
            lines.append(f"| {method} | {snr} | {r['n']} | {_fmt(r['bias'])} | {_fmt(r['sigma68'])} | "
                         f"{_fmt(r['pull_sigma68'], 2)} | {_fmt(r['coverage68'], 2)} | {_fmt(r['sigma68_over_optimal'], 2)} |")
    return "\n".join(lines)


def targets_table(candidate: dict, base: dict, title: str) -> str:
    base_rows = {(r["population"], r["target"]): r for r in base["targets"]}
    lines = [f"**{title}**", "", "| population | target | base | adapted | adapted meets it |", "|---|---|---|---|---|"]
    for r in candidate["targets"]:
        b = base_rows.get((r["population"], r["target"]), {})
        target = r["target"].replace("|bias|", "abs(bias)")
        lines.append(f"| {r['population']} | {target} | {_fmt(b.get('value'))} | {_fmt(r['value'])} | "
                     f"{'yes' if r['met'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("--scope", nargs="+", default=None, help="all and/or band names (default: all of them)")
    args = parser.parse_args()
    report = json.loads(open(args.report).read())
    scopes = args.scope or ["all", *report.get("bands", {})]
    print(targets_table(report, report["base"], "Targets, all held-out sub-frames"))
    for band, entry in report.get("bands", {}).items():
        if band in scopes:
            print()
            print(targets_table(entry["candidate"], entry["base"], f"Targets, {band} held-out sub-frames"))
    for scope in scopes:
        for population in report["populations"]:
            print()
            print(bins_table(report, scope, population))


if __name__ == "__main__":
    main()
