"""Every method's bias and pull σ68 by true SNR, before and after the neighbour fit, from two
``lumos inject`` reports of the same draw (``docs/neighbours.md``).

Usage: ``.venv/bin/python reports/lumos/neighbours/methods_by_snr.py BEFORE.json AFTER.json [--json OUT]``
(``injection_report.json`` files); prints a markdown table per population.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(before: dict, after: dict) -> list[dict]:
    """One row per population, method and true-SNR bin >= 2 present in both reports."""
    out = []
    for population, entry in after["populations"].items():
        old_methods = before["populations"].get(population, {}).get("methods", {})
        for method, new in entry["methods"].items():
            old = {(r["lo"], r["hi"]): r for r in old_methods.get(method, {}).get("by_true_snr", [])}
            for row in new["by_true_snr"]:
                if row["lo"] is None or row["lo"] < 2.0 or (row["lo"], row["hi"]) not in old:
                    continue
                was = old[(row["lo"], row["hi"])]
                out.append({"population": population, "method": method, "lo": row["lo"], "hi": row["hi"], "n": row["n"],
                            "bias_before": was["bias"], "bias_after": row["bias"],
                            "pull_before": was["pull_sigma68"], "pull_after": row["pull_sigma68"]})
    return out


def main(argv: list[str]) -> None:
    before, after = (json.loads(Path(p).read_text()) for p in argv[:2])
    table = rows(before, after)
    print("| population | method | true SNR | n | bias before → after | pull σ68 before → after |")
    print("|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['population']} | {r['method']} | {r['lo']:g}–{r['hi']:g} | {r['n']} | "
              f"{r['bias_before']:+.3f} → {r['bias_after']:+.3f} | {r['pull_before']:.2f} → {r['pull_after']:.2f} |")
    if "--json" in argv:
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
