"""The issue targets of several ``lumos inject`` runs side by side.

Usage: ``.venv/bin/python reports/lumos/clear-half-v15/targets_table.py OUT.json NAME=DIR [NAME=DIR ...]``
(each DIR holds the ``injection_report.json`` of ``lumos inject``). Writes, per run, the model
(name, SHA-256) and every target row (population, target, value, met); prints a markdown table with
one column per run (* = met).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Read the runs named in ``argv[1:]``, write ``argv[0]`` and print the table."""
    out, specs = Path(argv[0]), [a.split("=", 1) for a in argv[1:]]
    runs = {}
    for name, directory in specs:
        report = json.loads((Path(directory) / "injection_report.json").read_text())
        runs[name] = {"model": report["model"], "targets": [
            {k: t[k] for k in ("population", "target", "value", "met")} for t in report["targets"]]}
    out.write_text(json.dumps(runs, indent=1) + "\n")
    names = list(runs)
    print("| population | target | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for row in runs[names[0]]["targets"]:
        cells = []
        for name in names:
            match = [t for t in runs[name]["targets"] if (t["population"], t["target"]) == (row["population"], row["target"])]
            cells.append(f"{match[0]['value']:.3f}{' *' if match[0]['met'] else ''}" if match else "—")
        target = row["target"].replace("|", "\\|")
        print(f"| {row['population']} | {target} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
