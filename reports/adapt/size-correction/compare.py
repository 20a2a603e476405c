"""Issue 11's targets and the registry's comparison of two ``lumos adapt`` runs of one candidate.

    python compare.py BEFORE/injection_report.json AFTER/injection_report.json OUT.json

Prints, per target, the candidate's value in each run (met or not), each run's error floors and
the per-exposure LUMOS bias and pull by true SNR for the candidate, the base model and the
aperture; writes the same to ``OUT.json``.
"""

from __future__ import annotations

import json
import sys


def _rows(report: dict, method: str, model: str) -> list[dict]:
    """The base model's LUMOS rows sit under ``base``; the classical methods beside the candidate."""
    if model == "base" and method == "lumos":
        return report["base"]["populations"]["sersic"]["lumos"]["by_true_snr"]
    return report["populations"]["sersic"]["methods"][method]["by_true_snr"]


def main(before_path: str, after_path: str, out_path: str) -> None:
    runs = {"before": json.load(open(before_path)), "after": json.load(open(after_path))}
    out: dict = {"targets": [], "bins": {}, "floors": {}}
    for a, b in zip(runs["before"]["targets"], runs["after"]["targets"]):
        out["targets"].append({"target": a["target"], "before": a["value"], "before_met": a["met"],
                               "after": b["value"], "after_met": b["met"], "after_error": b.get("error")})
        print(f"{a['target'][:72]:<72} {a['value']:7.3f} {'met ' if a['met'] else 'MISS'} -> "
              f"{b['value']:7.3f} {'met' if b['met'] else 'MISS'}")
    for run, report in runs.items():
        print(run, "met", sum(t["met"] for t in report["targets"]), "of", len(report["targets"]))
        out["floors"][run] = report["adapt"]["error_floor"].get("flux_error_floor")
        for label, method, model in (("candidate", "lumos", "candidate"), ("base", "lumos", "base"),
                                     ("aperture", "aperture", "base"), ("optimal", "optimal", "base")):
            try:
                rows = _rows(report, method, model)
            except KeyError:
                continue
            cells = [{k: r[k] for k in ("lo", "hi", "n", "bias", "sigma68", "pull_sigma68", "coverage68")}
                     for r in rows if r["lo"] is not None]
            out["bins"].setdefault(run, {})[label] = cells
            print(f"  {label:<9} " + " | ".join(f"{c['lo']:g}: {100 * c['bias']:+.1f} % s68 {c['sigma68']:.3f} "
                                                 f"pull {c['pull_sigma68']:.2f}" for c in cells))
    with open(out_path, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
