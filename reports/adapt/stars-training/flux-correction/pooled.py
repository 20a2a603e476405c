"""The likelihood targets of several `lumos adapt` runs' held-out injections, each alone and pooled.

Each run directory holds `injection/sersic-candidate.parquet` (the candidate's LUMOS rows) and
`injection/sersic-base.parquet` (the base model's run, whose classical rows are the comparison).
Pooled, the runs' galaxies are kept apart (their labels offset per run) and scored as one
injection with `score_injection`, which bootstraps whole galaxies: six held-out sub-frames and two
candidates instead of three and one, so the co-add bins hold about twice the galaxies. Prints the
targets and the 5-exposure co-add bins; writes JSON.

    .venv/bin/python reports/adapt/stars-training/flux-correction/pooled.py OUT.json RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean, score_injection

_OFFSET = 10**6


def held_out_table(run: Path, k: int) -> pd.DataFrame:
    """The candidate's LUMOS rows and the base run's classical rows of ``run``, galaxy and placement
    labels offset by ``k`` run slots."""
    candidate = pd.read_parquet(run / "injection" / "sersic-candidate.parquet")
    base = pd.read_parquet(run / "injection" / "sersic-base.parquet")
    table = pd.concat([candidate, base[base["method"] != "lumos"]], ignore_index=True)
    return table.assign(galaxy=table["galaxy"] + k * _OFFSET, placement=table["placement"] + k * _OFFSET)


def summary(report: dict) -> dict:
    """The targets and the LUMOS 5-exposure co-add bins of a scored injection."""
    coadds = report["populations"]["sersic"]["methods"]["lumos"]["coadds"]
    return {"targets": [{k: row[k] for k in ("target", "value", "met", "error", "outside_in_errors")}
                        for row in report["targets"]],
            "coadd5_by_true_snr": next((c["by_true_snr"] for c in coadds if c["n"] == 5), [])}


def _pm(error: float) -> str:
    return f" ± {error:.3f}" if error == error else ""


def _missed(row: dict) -> str:
    outside = row["outside_in_errors"]
    return f" (missed by {outside:.1f} errors)" if outside == outside else " (missed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    tables = [held_out_table(Path(run), k) for k, run in enumerate(args.runs)]
    scored = {Path(run).name: summary(score_injection(t)) for run, t in zip(args.runs, tables)}
    scored["pooled"] = summary(score_injection(pd.concat(tables, ignore_index=True)))
    for name, entry in scored.items():
        met = sum(row["met"] for row in entry["targets"])
        print(f"{name}: {met} of {len(entry['targets'])} met: "
              + " | ".join(f"{row['value']:.3f}{_pm(row['error'])}{'' if row['met'] else _missed(row)}"
                           for row in entry["targets"]))
        print("  5-exposure co-adds: " + " | ".join(
            f"{b['lo']}: bias {b['bias']:+.3f} ± {b['bias_err'] or float('nan'):.3f}, pull {b['pull_sigma68']:.2f}, "
            f"n {b['n']}" for b in entry["coadd5_by_true_snr"] if b["lo"] is not None))
    Path(args.out).write_text(json.dumps(json_clean(scored), indent=1, allow_nan=False))


if __name__ == "__main__":
    main()
