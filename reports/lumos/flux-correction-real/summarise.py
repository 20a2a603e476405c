"""Per-exposure fixed-truth rows (bias, pull sigma68, coverage68 by true SNR) and the targets of the
``injection_report.json`` files of a directory (one population each): ``python summarise.py DIR``
prints a Markdown table per report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

METHODS = ("lumos", "optimal", "aperture")


def main(out: Path) -> None:
    for path in sorted(out.glob("*.json")):
        report = json.loads(path.read_text())
        print(f"**{path.stem}** ({next(iter(report['populations']))})\n")
        print("| method | true SNR | n | bias | pull σ68 | coverage68 |")
        print("|---|---|---|---|---|---|")
        population = next(iter(report["populations"]))
        for method in METHODS:
            for row in report["populations"][population]["methods"][method]["by_true_snr"]:
                if row["lo"] is None or row["lo"] < 1.0:
                    continue
                hi = "" if row["hi"] > 1e5 else f"{row['hi']:g}"
                print(f"| {method} | {row['lo']:g}–{hi} | {row['n']} | {row['bias']:+.3f} | "
                      f"{row['pull_sigma68']:.2f} | {row['coverage68']:.2f} |")
        print("\n| target | value | met (else: errors outside) |\n|---|---|---|")
        for row in report["targets"]:
            error = row.get("error")
            value = f"{row['value']:.3f}" + (f" ± {error:.3f}" if error is not None else "")
            outside = row.get("outside_in_errors")
            missed = f"no ({outside:.1f})" if outside is not None else "no"
            print(f"| {row['target']} | {value} | {'yes' if row['met'] else missed} |")
        print()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
