"""Issue-11 targets of ``lumos inject`` runs: base model against candidate, same seed and populations.

Usage::

    python targets_compare.py OUT.json BASE_DIR:CANDIDATE_DIR [BASE_DIR:CANDIDATE_DIR ...]

Each directory holds the ``injection_report.json`` of one run. Prints a markdown table (one row per
population and target: base value, candidate value, met or missed) and writes it as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _targets(directory: str) -> dict[tuple[str, str], dict]:
    report = json.loads((Path(directory) / "injection_report.json").read_text())
    return {(t["population"], t["target"]): t for t in report["targets"]}


def main(out: str, pairs: list[str]) -> None:
    rows = []
    for pair in pairs:
        base_dir, candidate_dir = pair.split(":")
        base, candidate = _targets(base_dir), _targets(candidate_dir)
        for key in base:
            if key in candidate:
                rows.append({"population": key[0], "target": key[1], "base": base[key]["value"], "base_met": base[key]["met"],
                             "candidate": candidate[key]["value"], "candidate_met": candidate[key]["met"],
                             "base_dir": base_dir, "candidate_dir": candidate_dir})
    print("| population | target | v11 | candidate |\n|---|---|---|---|")
    for r in rows:
        mark = {True: "met", False: "missed", None: "n/a"}
        print(f"| {r['population']} | {r['target']} | {r['base']:.3f} ({mark[r['base_met']]}) | "
              f"{r['candidate']:.3f} ({mark[r['candidate_met']]}) |")
    Path(out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
