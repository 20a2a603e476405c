"""PIT KS of the population-prior PIT: exact likelihoods on synthetic populations, and stored injections.

Usage:
    python reports/lumos/pit-prior/rescore.py OUT.json [TABLE.parquet ...] [--synthetic-only] [--no-groups]

1. Synthetic: five flux populations (e-/s), 10,000 truths each, measured with Gaussian errors of
   their true width; the PIT of those exact likelihoods under the population prior
   (``posterior_pit``) should be uniform. Ungrouped, and (unless ``--no-groups``, for code that
   predates groups) as 1,000 galaxies placed 10 times each.
2. Each injection table: per population, the LUMOS rows the report scores, PIT KS by the report's
   own code (``injection_report.population_pit``), next to the value stored in the
   ``injection_report.json`` beside the table (made by the code of its day); and the same PIT with
   ``model_flux`` (the noiseless reading through the catalogue model and the measurement's PSF
   model) in place of the true flux, which takes the models' own error out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lumos_ops.evaluation.population_prior import posterior_pit

N = 10_000


def _ks(values: np.ndarray) -> float:
    values = np.sort(values[np.isfinite(values)])
    return float(np.max(np.abs(np.arange(1, values.size + 1) / values.size - values)))


def _populations(rng: np.random.Generator) -> list[tuple[str, np.ndarray, float]]:
    """(name, truths, error floor as a fraction of the flux)."""
    def power_law(lo: float, hi: float, slope: float, n: int) -> np.ndarray:
        e = slope - 1.0
        return (lo**-e + rng.random(n) * (hi**-e - lo**-e)) ** (-1.0 / e)

    return [
        ("counts f^-1.8 on 0.5-1000", power_law(0.5, 1000.0, 1.8, N), 0.0),
        ("log-uniform 1-1000", np.exp(rng.uniform(0.0, np.log(1000.0), N)), 0.0),
        ("counts f^-2.2 on 0.1-300", power_law(0.1, 300.0, 2.2, N), 0.0),
        ("log-uniform 20-5000, 1 % floor", np.exp(rng.uniform(np.log(20.0), np.log(5000.0), N)), 0.01),
        ("two peaks at 10 and 200", np.concatenate([rng.normal(10.0, 1.0, N // 2), rng.normal(200.0, 5.0, N - N // 2)]), 0.0),
    ]


def _width(truth: np.ndarray, floor: float) -> np.ndarray:
    """Error (e-/s): 2 e-/s of sky, Poisson noise of the source and ``floor`` of the flux."""
    return np.sqrt(4.0 + 0.05 * np.abs(truth) + (floor * truth) ** 2)


def synthetic(groups: bool) -> list[dict]:
    rows = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        for name, truth, floor in _populations(rng):
            sigma = _width(truth, floor)
            flux = truth + sigma * rng.standard_normal(N)
            row = {"population": name, "seed": seed,
                   "ks_rows": _ks(posterior_pit(truth, np.ones((N, 1)), flux[:, None], sigma[:, None]))}
            if groups:
                placed = np.repeat(truth[: N // 10], 10)
                sigma = _width(placed, floor)
                flux = placed + sigma * rng.standard_normal(N)
                row["ks_1000_galaxies_x10"] = _ks(posterior_pit(placed, np.ones((N, 1)), flux[:, None], sigma[:, None],
                                                                groups=np.repeat(np.arange(N // 10), 10)))
            rows.append(row)
            print(json.dumps(row))
    return rows


def injection(path: Path) -> list[dict]:
    from lumos_ops.evaluation.injection_report import population_pit

    table = pd.read_parquet(path)
    stored_path = path.with_name("injection_report.json")
    stored = json.loads(stored_path.read_text())["populations"] if stored_path.exists() else {}
    rows = []
    for pop, part in table[table["method"] == "lumos"].groupby("population", sort=False):
        ok = part[np.isfinite(part["flux"]) & np.isfinite(part["flux_err"])]
        new = population_pit(ok)
        old = stored.get(pop, {}).get("methods", {}).get("lumos", {}).get("pit_population_prior", {})
        row = {"table": str(path), "population": pop, "n": new["n"], "ks": new["ks_distance"], "ks_error": new["ks_error"],
               "hist": new["hist"], "stored_ks": old.get("ks_distance"), "stored_ks_error": old.get("ks_error")}
        if "model_flux" in ok:
            model = population_pit(ok.assign(true_flux=ok["model_flux"]))
            row.update(ks_vs_model_flux=model["ks_distance"], ks_vs_model_flux_error=model["ks_error"])
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "hist"}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("tables", type=Path, nargs="*")
    parser.add_argument("--synthetic-only", action="store_true")
    parser.add_argument("--no-groups", action="store_true")
    args = parser.parse_args()
    result = {"synthetic": synthetic(not args.no_groups)}
    if not args.synthetic_only:
        result["injections"] = [row for path in args.tables for row in injection(path)]
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
