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


def _worst(values, key=abs):
    values = [v for v in values if v is not None]
    return max(values, key=key) if values else None


def method_targets_table(report: dict, scope: str, population: str) -> str:
    """The four per-exposure targets of every method, from the comparison rows of one scope and population.

    Worst bias and pull sigma68 over the true-SNR bins >= 5 (pull: the bin farthest from 1), coverage68
    (bin farthest from 0.68) and sigma68 / optimal's (largest) over the bins >= 2, with the range of the
    bins and whether the target is met (bias <= 3 %, pull 0.9-1.1, coverage 0.64-0.72, ratio <= 1.05).
    """
    rows = [r for r in report["comparison"] if r["scope"] == scope and r["population"] == population
            and r["snr_lo"] is not None]
    lines = [f"**{scope}, {population}: per-exposure targets of every method** (worst bin; [range over bins])", "",
             "| method | abs(bias) <= 3 %, SNR >= 5 | pull σ68 0.9–1.1, SNR >= 5 | coverage68 0.64–0.72, SNR >= 2 "
             "| σ68 / optimal's <= 1.05, SNR >= 2 |", "|---|---|---|---|---|"]
    checks = (("bias", 5, lambda v: abs(v), lambda v: abs(v) <= 0.03),
              ("pull_sigma68", 5, lambda v: abs(v - 1.0), lambda v: 0.9 <= v <= 1.1),
              ("coverage68", 2, lambda v: abs(v - 0.68), lambda v: 0.64 <= v <= 0.72),
              ("sigma68_over_optimal", 2, lambda v: v, lambda v: v <= 1.05))
    for method in ORDER:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        cells = []
        for key, lo, badness, ok in checks:
            values = [r[key] for r in mine if r["snr_lo"] >= lo and r[key] is not None]
            if not values:
                cells.append("–")
                continue
            worst = _worst(values, badness)
            met = all(ok(v) for v in values)
            cells.append(f"{_fmt(worst)} [{_fmt(min(values), 2)}, {_fmt(max(values), 2)}] {'met' if met else 'missed'}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
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
            print(method_targets_table(report, scope, population))
    for scope in scopes:
        for population in report["populations"]:
            print()
            print(bins_table(report, scope, population))


if __name__ == "__main__":
    main()
