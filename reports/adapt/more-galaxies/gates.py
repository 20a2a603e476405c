"""The registry's gates for a ``lumos adapt`` candidate on its 300 held-out galaxies and 600 more, pooled.

    python gates.py ADAPT_RUN NEW_CANDIDATE_DIR NEW_BASE_DIR OUT.json

- ``ADAPT_RUN/injection/sersic-base.parquet``: the run's held-out injection measured by the base
  model and the classical methods; ``sersic-candidate.parquet``: the candidate's LUMOS rows;
- ``NEW_CANDIDATE_DIR/injection_table.parquet``: ``lumos inject`` of 600 other galaxies (seed 2) with
  the candidate and the optimal sum;
- ``NEW_BASE_DIR/injection_table.parquet``: the same galaxies and placements (the same seed draws
  them whatever the methods) with the base model and the aperture.

The classical methods of the pooled report are those measured on all 900 galaxies (aperture and
optimal). The candidate's report (``adapt_report``: candidate LUMOS with the classical methods) is
checked by ``evaluate_gates`` with the default :class:`~lumos_ops.pipeline.registry.Gates`, with the
base model's report as production's: the gate ``lumos model promote`` applies. Prints the
checks and writes them with both reports' targets to OUT.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from lumos_ops.evaluation.adapt_report import adapt_report
from lumos_ops.evaluation.injection_report import json_clean, score_injection
from lumos_ops.pipeline.registry import evaluate_gates
from lumos_ops.survey import load_survey, use_survey

CLASSICAL = ("aperture", "optimal")


def pooled(run: Path, new_candidate: Path, new_base: Path) -> pd.DataFrame:
    """One table of the 900 galaxies with ``model`` = base (base LUMOS and classical rows) or candidate."""
    base = pd.read_parquet(run / "injection" / "sersic-base.parquet").assign(model="base")
    candidate = pd.read_parquet(run / "injection" / "sersic-candidate.parquet").assign(model="candidate")
    own = pd.concat([base[base["method"].isin(("lumos", *CLASSICAL))], candidate], ignore_index=True)
    more_candidate = pd.read_parquet(new_candidate / "injection_table.parquet")
    more_base = pd.read_parquet(new_base / "injection_table.parquet")
    key = ["galaxy", "place", "frame"]
    if not (more_candidate[more_candidate["method"] == "lumos"][key].sort_values(key).reset_index(drop=True)
            .equals(more_base[more_base["method"] == "lumos"][key].sort_values(key).reset_index(drop=True))):
        raise SystemExit("the two new injections did not place the same galaxies: rerun with the same seed")
    more = pd.concat([more_candidate.assign(model=more_candidate["method"].map(lambda m: "candidate" if m == "lumos"
                                                                               else "base")),
                      more_base.assign(model="base")], ignore_index=True)
    more["galaxy"] = more["galaxy"] + int(own["galaxy"].max()) + 1
    more["placement"] = more["placement"] + int(own["placement"].max()) + 1
    return pd.concat([own, more], ignore_index=True)


def main(run: str, new_candidate: str, new_base: str, out: str) -> None:
    table = pooled(Path(run), Path(new_candidate), Path(new_base))
    with use_survey(load_survey(Path(run) / "survey.json")):  # the sub-frames' header mapping (their bands)
        report = adapt_report(table)
    production = score_injection(table[table["model"] == "base"])
    result = evaluate_gates(report, production, production_version="base model")
    print(f"{table['galaxy'].nunique()} galaxies; gates {'passed' if result.passed else 'failed'}")
    for check in result.checks:
        print(f"  {'pass' if check['passed'] else 'FAIL'} {check['population']} {check['check']}: "
              f"{check['value']} (limit {check['limit']})")
    for reason in result.reasons:
        print(f"  reason: {reason}")
    rows = {name: [{k: t.get(k) for k in ("target", "value", "error", "met")} for t in rep["targets"]]
            for name, rep in (("candidate", report), ("base", production))}
    Path(out).write_text(json.dumps(json_clean({"n_galaxies": int(table["galaxy"].nunique()), "gates": result.to_dict(),
                                                "targets": rows}), indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
