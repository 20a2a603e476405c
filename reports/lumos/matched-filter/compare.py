"""Side by side: two LUMOS models' fixed-truth evidence, bin by bin of true SNR.

Usage: ``.venv/bin/python reports/lumos/matched-filter/compare.py BASE_DIR CANDIDATE_DIR [--json OUT]``

Each directory holds the reports of ``scripts/report-lumos.sh`` for one model (any of
``survey/validation.json``, ``bright/validation.json``, ``injection/injection_report.json``,
``injection-sim/injection_report.json``); a report missing from either side is skipped. Printed per
report, population and true-SNR bin: LUMOS bias, pull σ68, 68 % coverage and σ68 / the optimal weighted
sum's for both models; then the ``targets`` rows of the injection reports. Bins are of the **true** SNR.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPORTS = {
    "survey": "survey/validation.json",
    "bright": "bright/validation.json",
    "injection": "injection/injection_report.json",
    "injection-sim": "injection-sim/injection_report.json",
}


def _methods(report: dict) -> dict[str, dict]:
    """Population name -> {method -> method entry} of a validate or inject report."""
    if "populations" in report:
        return {name: pop["methods"] for name, pop in report["populations"].items()}
    return {"all": report["fixed_truth"]["methods"]}


def _rows(methods: dict) -> list[dict]:
    """Per true-SNR bin >= 2: LUMOS bias, pull, coverage and sigma68 / optimal's."""
    optimal = {(r["lo"], r["hi"]): r for r in methods["optimal"]["by_true_snr"]}
    out = []
    for row in methods["lumos"]["by_true_snr"]:
        if row["lo"] is None or row["lo"] < 2.0:
            continue
        o = optimal.get((row["lo"], row["hi"]))
        ratio = row["sigma68"] / o["sigma68"] if o and o["sigma68"] else None
        out.append({"lo": row["lo"], "hi": row["hi"], "n": row["n"], "bias": row["bias"],
                    "pull_sigma68": row["pull_sigma68"], "coverage68": row["coverage68"], "sigma68_over_optimal": ratio})
    return out


def compare(base: Path, candidate: Path) -> dict:
    """Both models' per-bin rows and targets for every report present on both sides."""
    result: dict = {}
    for key, rel in REPORTS.items():
        a, b = base / rel, candidate / rel
        if not (a.is_file() and b.is_file()):
            continue
        ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
        ma, mb = _methods(ra), _methods(rb)
        entry = {"populations": {name: {"base": _rows(ma[name]), "candidate": _rows(mb[name])}
                                 for name in ma if name in mb}}
        if "targets" in ra and "populations" in ra:
            cand = {(t["population"], t["target"]): t for t in rb["targets"]}
            entry["targets"] = [{"population": t["population"], "target": t["target"], "base": t.get("value"),
                                 "candidate": cand.get((t["population"], t["target"]), {}).get("value"),
                                 "base_met": t["met"], "candidate_met": cand.get((t["population"], t["target"]), {}).get("met")}
                                for t in ra["targets"]]
        result[key] = entry
    return result


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if value is None else fmt.format(value)


def markdown(result: dict) -> str:
    """The comparison as markdown tables (base → candidate in every cell)."""
    parts = []
    for key, entry in result.items():
        lines = [f"**{key}** (LUMOS, base → candidate, by true SNR)", "",
                 "| population | true SNR | n | bias | pull σ68 | coverage68 | σ68 / optimal |", "|---|---|---|---|---|---|---|"]
        for name, pop in entry["populations"].items():
            for a, b in zip(pop["base"], pop["candidate"]):
                lines.append(
                    f"| {name} | {a['lo']:g}–{a['hi']:g} | {b['n']} | {a['bias']:+.3f} → {b['bias']:+.3f} | "
                    f"{a['pull_sigma68']:.2f} → {b['pull_sigma68']:.2f} | {a['coverage68']:.2f} → {b['coverage68']:.2f} | "
                    f"{_f(a['sigma68_over_optimal'])} → {_f(b['sigma68_over_optimal'])} |")
        parts.append("\n".join(lines))
        if "targets" in entry:
            rows = [f"**{key}**: targets (worst bin), base → candidate", "", "| population | target | base | candidate |",
                    "|---|---|---|---|"]
            for t in entry["targets"]:
                mark = {True: " ✓", False: "", None: ""}
                rows.append(f"| {t['population']} | {t['target']} | {_f(t['base'], '{:.3f}')}{mark[t['base_met']]} | "
                            f"{_f(t['candidate'], '{:.3f}')}{mark[t['candidate_met']]} |")
            parts.append("\n".join(rows))
    return "\n\n".join(parts)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__)
        return 2
    result = compare(Path(argv[1]), Path(argv[2]))
    if "--json" in argv:
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
