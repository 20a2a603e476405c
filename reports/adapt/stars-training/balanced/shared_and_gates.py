"""Why 5-exposure co-adds are wider than their errors, pooled over `lumos adapt` runs, and what the registry's gates say.

The runs' held-out tables are pooled as `../flux-correction/pooled.py` pools them. For each method,
on the pulls (flux - true) / flux_err at true SNR 2-20:

* what one galaxy's placements share: the intra-class correlation
  (`injection_report.shared_pull_bins` over one wide bin) and the factor sqrt(1 + 4 rho) it would
  give a 5-exposure co-add, then the robust pair correlation (`shared_error.pair_correlation`) of
  pairs on different sub-frames (what a real co-add of different exposures has) and on one
  sub-frame (which these co-adds also hold: 5 placements on 3 held-out sub-frames);
* the tails (`injection_report.pull_tail_bins`, which every injection report now holds per bin):
  sigma68, the standard deviation (pulls clipped at +-10), the shares above +3 and below -3
  (0.13 % each for a Gaussian), and sigma68 of sqrt(5) x the mean of 5 pulls drawn at random
  from different rows (independent exposures with this error distribution, no shared part); then
  how the optimal sum reads the placements where LUMOS's pull lies beyond +-3.

Then each run's `injection_report.json` through `registry.evaluate_gates` with the default
`Gates()`, no production version (the checks against the classical methods of the same report).
Writes JSON.

    .venv/bin/python reports/adapt/stars-training/balanced/shared_and_gates.py OUT.json RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean, pull_tail_bins, shared_pull_bins
from lumos_ops.lumos.shared_error import pair_correlation, pair_correlation_error
from lumos_ops.pipeline.registry import evaluate_gates

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flux-correction"))
from pooled import held_out_table  # noqa: E402

SNR_EDGES = (2.0, 20.0)


def pairs(pull: np.ndarray, galaxy: np.ndarray, frame: np.ndarray) -> dict:
    """Robust pair correlation of one galaxy's placements on different sub-frames and on one."""
    same = np.char.add(galaxy.astype(str), np.char.add("/", frame.astype(str)))
    out = {}
    for name, groups, frames in (("different_frames", galaxy, frame), ("same_frame", same, None)):
        rho, n_pairs, _ = pair_correlation(pull, groups, frames)
        out[name] = {"rho": rho, "rho_err": pair_correlation_error(pull, groups, frames), "n_pairs": n_pairs}
    return out


def outliers_read_by(table: pd.DataFrame, method: str = "lumos", other: str = "optimal") -> dict:
    """How ``other`` reads the placements where ``method``'s pull lies beyond +-3 (true SNR 2-20):
    its median pull there, and the correlation of the two methods' pulls (clipped at +-10)."""
    inside = table[(table["true_snr"] >= SNR_EDGES[0]) & (table["true_snr"] < SNR_EDGES[1])]
    pulls = {m: ((rows["flux"] - rows["true_flux"]) / rows["flux_err"]).groupby(rows["placement"]).first()
             for m, rows in inside.groupby("method") if m in (method, other)}
    both = pd.concat(pulls, axis=1).dropna()
    far = both[method].abs() > 3.0
    return {"method": method, "other": other, "n_outliers": int(far.sum()),
            "other_median_pull_at_outliers": float(both.loc[far, other].median()),
            "correlation": float(np.corrcoef(both[method].clip(-10, 10), both[other].clip(-10, 10))[0, 1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    runs = [Path(run) for run in args.runs]
    table = pd.concat([held_out_table(run, k) for k, run in enumerate(runs)], ignore_index=True)
    table = table[table["population"] == "sersic"]
    shared, pair_rho, tail = {}, {}, {}
    for method, rows in table.groupby("method"):
        pull = ((rows["flux"] - rows["true_flux"]) / rows["flux_err"]).to_numpy(np.float64)
        (row,) = shared_pull_bins(pull, rows["galaxy"], rows["true_snr"], edges=SNR_EDGES, n_boot=200)
        shared[method] = row
        inside = ((rows["true_snr"] >= SNR_EDGES[0]) & (rows["true_snr"] < SNR_EDGES[1])).to_numpy()
        pair_rho[method] = pairs(pull[inside], rows["galaxy"].to_numpy()[inside], rows["frame"].to_numpy()[inside])
        (tail[method],) = pull_tail_bins(pull, rows["true_snr"], edges=SNR_EDGES)
        diff, same, t = pair_rho[method]["different_frames"], pair_rho[method]["same_frame"], tail[method]
        print(f"{method:9s} true SNR {SNR_EDGES[0]:g}-{SNR_EDGES[1]:g}: ICC {row['rho']:+.3f} ± {row['rho_err']:.3f} "
              f"({row['n_galaxies']} galaxies, co-add factor {row['coadd5_factor']:.2f}); pair rho, different "
              f"sub-frames {diff['rho']:+.3f} ± {diff['rho_err']:.3f}, one sub-frame {same['rho']:+.3f} ± "
              f"{same['rho_err']:.3f}; pull sigma68 {t['sigma68']:.3f}, std {t['std_clipped']:.3f}, above +3: "
              f"{100 * t['above_3']:.1f} %, below -3: {100 * t['below_minus_3']:.1f} %, independent 5-exposure "
              f"co-add sigma68 {t['independent_coadd_sigma68']:.3f}")
    read = outliers_read_by(table)
    print(f"the optimal sum at LUMOS's {read['n_outliers']} placements beyond +-3: median pull "
          f"{read['other_median_pull_at_outliers']:+.2f}; pull correlation {read['correlation']:.2f}")
    gates = {}
    for run in runs:
        result = evaluate_gates(json.loads((run / "injection_report.json").read_text()), None)
        gates[run.name] = {"passed": result.passed, "reasons": list(result.reasons)}
        print(f"{run.name}: gates {'passed' if result.passed else 'failed'}")
        for reason in result.reasons:
            print(f"  {reason}")
    Path(args.out).write_text(json.dumps(json_clean({"true_snr": list(SNR_EDGES), "shared_pull": shared,
                                                     "pair_correlation": pair_rho, "tails": tail,
                                                     "lumos_outliers_read_by_optimal": read,
                                                     "gates": gates}), indent=1) + "\n")


if __name__ == "__main__":
    main()
