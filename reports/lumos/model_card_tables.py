"""Print the model card's evidence tables (markdown) from the reports of ``scripts/report-lumos.sh``.

Usage: ``.venv/bin/python reports/lumos/model_card_tables.py [REPORTS_DIR]`` (default ``reports/lumos``).
Every number is read from ``survey/validation.json``, ``bright/validation.json``,
``injection/injection_report.json``, ``injection-sim/injection_report.json`` and, when present,
``injection-sim8/injection_report.json`` and ``injection-moffat/injection_report.json``; bins are of the
**true** SNR (docs/likelihood.md §4).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if value is None else fmt.format(value)


def _snr(row: dict) -> str:
    return f"{row['lo']:g}–{row['hi']:g}"


def validation_table(path: Path, title: str) -> str:
    """Fixed-truth table by true SNR of one ``lumos validate`` report."""
    report = json.loads(path.read_text())
    fixed = report["fixed_truth"]
    methods = fixed["methods"]
    ks = fixed.get("pit_population_prior", {}).get("ks_distance")
    ratio = {(r["lo"], r["hi"]): r for r in methods["optimal"]["by_true_snr"]}
    ap = {(r["lo"], r["hi"]): r for r in methods["aperture"]["by_true_snr"]}
    lines = [f"**{title}** ({report['summary']['n_stamps']:,} stamps, by true SNR; PIT KS of likelihood × "
             f"test population {_f(ks, '{:.3f}')})", "",
             "| true SNR | n | LUMOS bias | LUMOS pull σ68 | LUMOS coverage | σ68 LUMOS / optimal | aperture bias | optimal bias |",
             "|---|---|---|---|---|---|---|---|"]
    for row in methods["lumos"]["by_true_snr"]:
        if row["lo"] is None:
            continue
        key = (row["lo"], row["hi"])
        opt, apr = ratio.get(key), ap.get(key)
        r = row["sigma68"] / opt["sigma68"] if opt and opt["sigma68"] else None
        lines.append(f"| {_snr(row)} | {row['n']} | {row['bias']:+.3f} ± {row['bias_err']:.3f} | {row['pull_sigma68']:.2f} | "
                     f"{row['coverage68']:.3f} | {_f(r)} | {_f(apr and apr['bias'], '{:+.3f}')} | "
                     f"{_f(opt and opt['bias'], '{:+.3f}')} |")
    return "\n".join(lines)


def _coadd(method: dict, n: int, lo: float, hi: float) -> dict | None:
    for entry in method.get("coadds", []):
        if entry["n"] == n:
            for row in entry["by_true_snr"]:
                if (row["lo"], row["hi"]) == (lo, hi):
                    return row
    return None


def injection_table(path: Path, title: str) -> str:
    """LUMOS at fixed true SNR per population of one ``lumos inject`` report (optimal in brackets)."""
    report = json.loads(path.read_text())
    lines = [f"**{title}**: LUMOS at fixed true SNR (optimal weighted sum in brackets)", "",
             "| population | true SNR | n | bias | pull σ68 | coverage | σ68 / optimal | 5-exp co-add bias | co-add pull σ68 "
             "| shared ρ of a galaxy's placements |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, population in report["populations"].items():
        lumos, optimal = population["methods"]["lumos"], population["methods"]["optimal"]
        opt = {(r["lo"], r["hi"]): r for r in optimal["by_true_snr"]}
        shared = {(r["lo"], r["hi"]): r for r in lumos.get("shared_pull", [])}
        for row in lumos["by_true_snr"]:
            if row["lo"] is None or row["lo"] < 2.0:
                continue
            o = opt.get((row["lo"], row["hi"]))
            c = _coadd(lumos, 5, row["lo"], row["hi"])
            rho = shared.get((row["lo"], row["hi"]))
            ratio = row["sigma68"] / o["sigma68"] if o and o["sigma68"] else None
            lines.append(
                f"| {name} | {_snr(row)} | {row['n']} | {row['bias']:+.3f} ({_f(o and o['bias'], '{:+.3f}')}) | "
                f"{row['pull_sigma68']:.2f} ± {_f(row.get('pull_sigma68_err'))} ({_f(o and o['pull_sigma68'])}) | "
                f"{row['coverage68']:.2f} "
                f"({_f(o and o['coverage68'])}) | {_f(ratio)} | {_f(c and c['bias'], '{:+.3f}')} | "
                f"{_f(c and c['pull_sigma68'])} | {_f(rho and rho['rho'], '{:+.3f}')} ± {_f(rho and rho['rho_err'], '{:.3f}')} |")
        ks = (lumos.get("pit_population_prior") or {}).get("ks_distance")
        lines.append(f"| {name} | D width | | {_f(lumos.get('d_width'))} ({_f(optimal.get('d_width'))}) | "
                     f"PIT KS (population prior) {_f(ks, '{:.3f}')} | | | | | |")
    return "\n".join(lines)


def model_limited_table(path: Path, title: str) -> str:
    """LUMOS scored against the model-limited flux (``model_flux``) per population of one ``lumos inject``
    report, with the population's noiseless catalogue-model bias (optimal weighted sum in brackets)."""
    report = json.loads(path.read_text())
    lines = [f"**{title}**: against the flux the catalogue model reads from the noiseless galaxy "
             "(`model_flux`; optimal weighted sum in brackets)", "",
             "| population | true SNR | n | model bias (median, σ68) | bias vs model | pull σ68 vs model | coverage vs model |",
             "|---|---|---|---|---|---|---|"]
    for name, population in report["populations"].items():
        lumos, optimal = population["methods"]["lumos"], population["methods"]["optimal"]
        if "by_true_snr_model" not in lumos:
            continue
        opt = {(r["lo"], r["hi"]): r for r in optimal["by_true_snr_model"]}
        floor = {(r["lo"], r["hi"]): r for r in population.get("model_bias_by_true_snr", [])}
        for row in lumos["by_true_snr_model"]:
            if row["lo"] is None or row["lo"] < 2.0:
                continue
            o, m = opt.get((row["lo"], row["hi"])), floor.get((row["lo"], row["hi"]))
            lines.append(
                f"| {name} | {_snr(row)} | {row['n']} | {_f(m and m['median'], '{:+.3f}')}, {_f(m and m['sigma68'], '{:.3f}')} | "
                f"{row['bias']:+.3f} ({_f(o and o['bias'], '{:+.3f}')}) | "
                f"{row['pull_sigma68']:.2f} ± {_f(row.get('pull_sigma68_err'))} ({_f(o and o['pull_sigma68'])}) | "
                f"{row['coverage68']:.2f} ({_f(o and o['coverage68'])}) |")
    return "\n".join(lines)


def targets_table(path: Path, title: str) -> str:
    """The targets rows of one ``lumos inject`` report, also against the model-limited flux where scored."""
    report = json.loads(path.read_text())
    lines = [f"**{title}**: the likelihood issue's targets", "",
             "| population | target | value | met | against `model_flux` |", "|---|---|---|---|---|"]
    for row in report["targets"]:
        lines.append(f"| {row['population']} | {row['target']} | {_f(row.get('value'), '{:.3f}')} | "
                     f"{'yes' if row['met'] else 'no'} | {_f(row.get('value_vs_model_flux'), '{:.3f}')} |")
    return "\n".join(lines)


def validation_targets(path: Path) -> list[dict]:
    """The likelihood issue's per-exposure targets of one ``lumos validate`` report, scored by the
    rules of ``lumos inject``'s (``evaluation.injection_report.targets``: the same worst bins) from its
    fixed-truth bins; co-adds are not part of a stamp test set."""
    from lumos_ops.evaluation.injection_report import targets

    report = json.loads(path.read_text())
    fixed = report["fixed_truth"]
    lum, opt = fixed["methods"]["lumos"], fixed["methods"]["optimal"]
    ratios = [{"lo": r["lo"], "hi": r["hi"], "lumos_over_optimal": r["sigma68"] / o["sigma68"]
               if o["sigma68"] else float("nan")} for r, o in zip(lum["by_true_snr"], opt["by_true_snr"])]
    d_width = report["summary"].get("sigma68_D")
    entry = {"methods": {"lumos": {"by_true_snr": lum["by_true_snr"],
                                   "d_width": float("nan") if d_width is None else d_width,
                                   "pit_population_prior": fixed.get("pit_population_prior", {})}},
             "sigma68_ratio_by_true_snr": ratios}
    return targets({"populations": {"sersic": entry}})


SUMMARY_COLUMNS = (("survey", None, "simulator `survey`"), ("bright", None, "simulator `bright`"),
                   ("injection", "sersic", "real frames, Sérsic"), ("injection", "knots", "real frames, knots"),
                   ("injection", "blended", "real frames, blends"))


def _short(target: str) -> str:
    """A short name of one of ``lumos inject``'s target texts."""
    names = (("shared-error term", "co-add pull (shared term)"), ("co-add, SNR >= 5: |bias|", "co-add bias"),
             ("co-add, SNR >= 5: pull", "co-add pull"), ("|bias|", "bias"), ("pull sigma68", "pull"),
             ("coverage68", "coverage"), ("sigma68 / optimal", "σ68 / optimal"), ("D width", "D width"),
             ("PIT KS", "PIT KS"))
    return next((short for key, short in names if key in target), target)


def _md(text: str) -> str:
    """``text`` for a markdown table cell (its ``|`` escaped)."""
    return text.replace("|", "\\|")


def _cell(row: dict | None) -> str:
    if row is None or row.get("value") is None or row["value"] != row["value"]:
        return "—"
    err = row.get("error")
    value = f"{row['value']:.3f}" + (f" ± {err:.3f}" if err is not None and err == err else "")
    return value + ("" if row["met"] else " **missed**")


def summary_table(root: Path) -> str:
    """Every target (rows) in the simulator's held-out stamps and the real-frame injection's three
    populations (columns): the worst bin's value, its bootstrap error and whether it is met."""
    rows: dict[tuple[str, str | None], dict[str, dict]] = {}
    for name, population, _ in SUMMARY_COLUMNS:
        if population is None:
            found = validation_targets(root / name / "validation.json")
        else:
            report = json.loads((root / name / "injection_report.json").read_text())
            found = [t for t in report["targets"] if t["population"] == population]
        rows[(name, population)] = {t["target"].replace("0.8", "limit").replace("1.05", "limit"): t for t in found}
    order = list(dict.fromkeys(k for cells in rows.values() for k in cells))
    lines = ["**Summary**: the likelihood issue's targets (LUMOS; worst bin; ± the bin's bootstrap error; the "
             "σ68 limit is 1.05 × optimal's for isolated galaxies, 0.8 × for blends)", "",
             "| target | " + " | ".join(title for _, _, title in SUMMARY_COLUMNS) + " |",
             "|---" * (len(SUMMARY_COLUMNS) + 1) + "|"]
    for key in order:
        lines.append(f"| {_md(key)} | " + " | ".join(_cell(rows[(n, p)].get(key)) for n, p, _ in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines)


def met_table(root: Path) -> str:
    """Targets met per injection and population, with every miss's value."""
    lines = ["**Targets met per injection** (LUMOS; each report's `targets`)", "",
             "| injection | population | met | misses (value ± error) |", "|---|---|---|---|"]
    for name in ("injection", "injection-moffat", "injection-sim", "injection-sim8", "error-floor/calibration"):
        path = root / name / "injection_report.json"
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        for population in report["populations"]:
            found = [t for t in report["targets"] if t["population"] == population]
            misses = "; ".join(f"{_short(t['target'])} {_cell(t).replace(' **missed**', '')}" for t in found if not t["met"])
            lines.append(f"| `{name}` | {population} | {sum(t['met'] for t in found)} of {len(found)} | {misses or '—'} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path("reports/lumos")
    parts = [
        summary_table(root),
        met_table(root),
        validation_table(root / "survey" / "validation.json", "Simulator, held-out survey `survey`"),
        validation_table(root / "bright" / "validation.json", "Simulator, held-out survey `bright`"),
        injection_table(root / "injection" / "injection_report.json", "Injection `injection` (real frames)"),
        injection_table(root / "injection-sim" / "injection_report.json", "Injection `injection-sim` (simulated CCDs)"),
    ]
    sim8 = root / "injection-sim8" / "injection_report.json"
    if sim8.exists():
        parts.append(injection_table(sim8, "Injection `injection-sim8` (the same galaxies over eight simulated CCDs)"))
    parts += [
        model_limited_table(root / "injection" / "injection_report.json", "Injection `injection` (real frames)"),
        model_limited_table(root / "injection-sim" / "injection_report.json", "Injection `injection-sim` (simulated CCDs)"),
        targets_table(root / "injection" / "injection_report.json", "Injection `injection` (real frames)"),
    ]
    moffat = root / "injection-moffat" / "injection_report.json"
    if moffat.exists():
        parts.append(injection_table(moffat, "Injection `injection-moffat` (real frames, the measurement's Moffat PSF)"))
        parts.append(targets_table(moffat, "Injection `injection-moffat` (real frames, the measurement's Moffat PSF)"))
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
