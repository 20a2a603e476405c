"""Inject more galaxies into an adapt run's held-out exposures and score one model (candidate LUMOS + classical).

``lumos adapt`` scores its candidate on ``--n-galaxies`` galaxies (300 in the runs of this folder),
which leaves about 40 galaxies per co-add bin. This script reruns only that step, with new draws
(another seed) and as many galaxies as asked, through the same code (``run_injection`` ->
``score_injection``), so the co-add targets can be measured with smaller errors.

``--classical-from DIR`` scores the classical rows of an earlier run of the same seed (the same
injected pixels, checked) with this run's LUMOS rows, so a second model costs only its own
measurement (``--methods lumos``).

Usage::

    python reports/adapt/heldout/inject_candidate.py --split reports/adapt/clear-masked/split.json \
        --survey examples/surveys/sdss-gri-reprojected.json --catalog CAT.parquet \
        --model reports/adapt/clear-masked/more-epochs/model.pt --n-galaxies 1000 --seed 5 --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from lumos_ops.evaluation.injection import InjectionConfig, run_injection
from lumos_ops.evaluation.injection_report import json_clean, score_injection
from lumos_ops.survey import load_survey, use_survey


def with_classical(table: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """``table``'s LUMOS rows with ``earlier``'s classical rows, after checking that both runs
    injected the same galaxies at the same places."""
    keys = ["placement", "galaxy", "place", "x", "y", "true_flux"]
    mine = table[table["method"] == "lumos"].sort_values("placement")[keys].reset_index(drop=True)
    theirs = earlier[earlier["method"] == "lumos"].sort_values("placement")[keys].reset_index(drop=True)
    if not mine.equals(theirs):
        raise SystemExit("--classical-from: that run injected other galaxies or places (another seed or config)")
    return pd.concat([earlier[earlier["method"] != "lumos"], table[table["method"] == "lumos"]], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, help="an adapt run's split.json (its 'heldout' exposures)")
    parser.add_argument("--survey", required=True, help="survey file of the exposures")
    parser.add_argument("--catalog", required=True, help="catalogue of shapes (parquet)")
    parser.add_argument("--model", required=True, help="LUMOS checkpoint to score")
    parser.add_argument("--population", default="sersic")
    parser.add_argument("--n-galaxies", type=int, default=1000)
    parser.add_argument("--n-place", type=int, default=5)
    parser.add_argument("--spacing", type=int, default=44, help="pixels between injected targets")
    parser.add_argument("--min-clearance", type=float, default=6.0, help="pixels from the frames' own sources")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["aperture", "optimal", "lumos"])
    parser.add_argument("--classical-from", type=Path, help="an earlier --out of the same seed: its classical rows")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    held = json.loads(Path(args.split).read_text())["heldout"]
    args.out.mkdir(parents=True, exist_ok=True)
    config = InjectionConfig(population=args.population, n_galaxies=args.n_galaxies, n_place=args.n_place,
                             spacing=args.spacing, min_clearance=args.min_clearance, seed=args.seed)
    started = time.perf_counter()
    with use_survey(load_survey(args.survey)):
        table = run_injection(held, config, methods=args.methods, model=args.model, keep_headers=True,
                              shapes=pd.read_parquet(args.catalog), work_dir=args.out)
    table.to_parquet(args.out / "injection_table.parquet", index=False)
    if args.classical_from:
        table = with_classical(table, pd.read_parquet(args.classical_from / "injection_table.parquet"))
    report = score_injection(table)
    report["run"] = {"heldout_exposures": held, "model": args.model,
                     "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                     "seconds": time.perf_counter() - started}
    (args.out / "injection_report.json").write_text(json.dumps(json_clean(report), indent=2) + "\n")
    for row in report["targets"]:
        print(f"{row['population']:8s} {row['target']:70s} {row['value']:+.3f} {'met' if row['met'] else 'missed'}")


if __name__ == "__main__":
    main()
