"""Compare two ``lumos validate`` reports of the same test set (a base and a candidate model) at fixed truth.

Usage: ``.venv/bin/python reports/lumos/noise-texture/survey_compare.py BASE.json CANDIDATE.json OUT.json``.
Per bin of true SNR, for LUMOS: n, bias, pull sigma68, coverage68 and sigma68 / the optimal
weighted sum's, read from each report's ``fixed_truth`` section, plus the PIT KS distance of the
likelihood x test population; prints a markdown table (base -> candidate) and writes the figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(report: dict) -> list[dict]:
    """LUMOS per true-SNR bin (the all-SNR row last) with sigma68 / optimal's."""
    methods = report["fixed_truth"]["methods"]
    optimal = {(r["lo"], r["hi"]): r for r in methods["optimal"]["by_true_snr"]}
    out = []
    for row in methods["lumos"]["by_true_snr"]:
        opt = optimal[(row["lo"], row["hi"])]
        out.append({k: row[k] for k in ("lo", "hi", "n", "bias", "pull_sigma68", "coverage68", "sigma68")}
                   | {"sigma68_over_optimal": row["sigma68"] / opt["sigma68"]})
    return out


def main(argv: list[str]) -> int:
    base, cand = (json.loads(Path(p).read_text()) for p in argv[1:3])
    result = {"base": argv[1], "candidate": argv[2], "base_lumos": rows(base), "candidate_lumos": rows(cand),
              "pit_ks": [r["fixed_truth"].get("pit_population_prior", {}).get("ks_distance") for r in (base, cand)]}
    Path(argv[3]).write_text(json.dumps(result, indent=1) + "\n")
    print("| true SNR | n | bias | pull σ68 | coverage68 | σ68 / optimal |")
    print("|---|---|---|---|---|---|")
    for b, c in zip(result["base_lumos"], result["candidate_lumos"]):
        snr = "all" if b["lo"] is None else f"{b['lo']:g}–{b['hi']:g}"
        print(f"| {snr} | {b['n']} | {b['bias']:+.3f} → {c['bias']:+.3f} | {b['pull_sigma68']:.2f} → {c['pull_sigma68']:.2f} | "
              f"{b['coverage68']:.3f} → {c['coverage68']:.3f} | {b['sigma68_over_optimal']:.2f} → {c['sigma68_over_optimal']:.2f} |")
    print(f"PIT KS (likelihood x test population): {result['pit_ks'][0]:.3f} → {result['pit_ks'][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
