"""Issue 11's targets for a ``lumos adapt`` candidate on more held-out galaxies: one more injection, pooled.

    python pooled.py ADAPT_RUN NEW_INJECTION_DIR OUT.json

``ADAPT_RUN/injection/sersic-candidate.parquet`` (the candidate's LUMOS rows) and
``sersic-base.parquet`` (its optimal rows) are the run's own held-out injection;
``NEW_INJECTION_DIR/injection_table.parquet`` is a ``lumos inject`` of other galaxies (another seed)
into the same held-out exposures with the candidate, the optimal sum and the run's survey file.
Prints and writes the targets of each and of both pooled (the new galaxies and placements numbered after the run's), scored by
``score_injection``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean, score_injection


def _tables(run: Path, new: Path) -> dict[str, pd.DataFrame]:
    injection = run / "injection"
    lumos = pd.read_parquet(injection / "sersic-candidate.parquet")
    base = pd.read_parquet(injection / "sersic-base.parquet")
    own = pd.concat([lumos[lumos["method"] == "lumos"], base[base["method"] == "optimal"]], ignore_index=True)
    more = pd.read_parquet(new / "injection_table.parquet")
    more["galaxy"] = more["galaxy"] + int(own["galaxy"].max()) + 1
    more["placement"] = more["placement"] + int(own["placement"].max()) + 1
    return {"adapt run": own, "new injection": more, "pooled": pd.concat([own, more], ignore_index=True)}


def main(run: str, new: str, out: str) -> None:
    result = {}
    for name, table in _tables(Path(run), Path(new)).items():
        report = score_injection(table)
        rows = [{k: t.get(k) for k in ("target", "value", "error", "met", "outside_in_errors")} for t in report["targets"]]
        result[name] = {"n_galaxies": int(table["galaxy"].nunique()), "targets": rows,
                        "met": sum(bool(t["met"]) for t in rows)}
        print(f"{name}: {result[name]['n_galaxies']} galaxies, {result[name]['met']} of {len(rows)} met")
        for t in rows:
            print(f"  {'MET ' if t['met'] else 'miss'} {t['value']:8.3f} ± {t['error'] if t['error'] is not None else float('nan'):.3f}  {t['target']}")
    Path(out).write_text(json.dumps(json_clean(result), indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
