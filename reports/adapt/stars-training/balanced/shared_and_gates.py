"""What a galaxy's placements share, pooled over `lumos adapt` runs, and what the registry's gates say.

For each method, the intra-class correlation of the pulls of one galaxy's placements at true SNR
2-20 (`injection_report.shared_pull_bins` over one wide bin, the runs' held-out tables pooled as
`../flux-correction/pooled.py` pools them) and the factor sqrt(1 + 4 rho) it gives a 5-exposure
co-add that treats the exposures as independent. Then each run's `injection_report.json` through
`registry.evaluate_gates` with the default `Gates()`, no production version (the checks against the
classical methods of the same report). Writes JSON.

    .venv/bin/python reports/adapt/stars-training/balanced/shared_and_gates.py OUT.json RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from lumos_ops.evaluation.injection_report import json_clean, shared_pull_bins
from lumos_ops.pipeline.registry import evaluate_gates

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flux-correction"))
from pooled import held_out_table  # noqa: E402

SNR_EDGES = (2.0, 20.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    runs = [Path(run) for run in args.runs]
    table = pd.concat([held_out_table(run, k) for k, run in enumerate(runs)], ignore_index=True)
    table = table[table["population"] == "sersic"]
    shared = {}
    for method, rows in table.groupby("method"):
        pull = (rows["flux"] - rows["true_flux"]) / rows["flux_err"]
        (row,) = shared_pull_bins(pull, rows["galaxy"], rows["true_snr"], edges=SNR_EDGES, n_boot=200)
        shared[method] = row
        print(f"{method:9s} true SNR {SNR_EDGES[0]:g}-{SNR_EDGES[1]:g}: rho {row['rho']:+.3f} ± {row['rho_err']:.3f} "
              f"({row['n_galaxies']} galaxies), 5-exposure co-add factor {row['coadd5_factor']:.2f}")
    gates = {}
    for run in runs:
        result = evaluate_gates(json.loads((run / "injection_report.json").read_text()), None)
        gates[run.name] = {"passed": result.passed, "reasons": list(result.reasons)}
        print(f"{run.name}: gates {'passed' if result.passed else 'failed'}")
        for reason in result.reasons:
            print(f"  {reason}")
    Path(args.out).write_text(json.dumps(json_clean({"true_snr": list(SNR_EDGES), "shared_pull": shared,
                                                     "gates": gates}), indent=1) + "\n")


if __name__ == "__main__":
    main()
