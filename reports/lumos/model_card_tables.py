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


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path("reports/lumos")
    parts = [
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
