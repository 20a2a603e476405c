"""A `lumos inject` report's table with the target's own overlap term added to its blends' leak
(docs/neighbours.md, "The leak measured on the exposure's isolated targets"), for comparison.

    .venv/bin/python reports/lumos/crosstalk/self_term.py REPORT_DIR OUT_DIR
    .venv/bin/lumos inject --rescore --out OUT_DIR

Every point of the flux axis of a blended row whose leak was measured (finite ``neighbour_leak_err``)
moves by ``κ ρ² f`` (``ρ²`` the column ``neighbour_overlap``, ``f`` the row's flux): the term
``-κ (c - ρ² f)`` gives back where the code gives ``-κ c``.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pandas as pd


def main(src: str, dst: str) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    shutil.copy(f"{src}/injection_report.json", dst)
    table = pd.read_parquet(f"{src}/injection_table.parquet")
    rows = (table["population"] == "blended") & table["neighbour_leak_err"].notna()
    kappa, rho2, flux = (table[c].fillna(0.0).to_numpy() for c in ("neighbour_leak", "neighbour_overlap", "flux"))
    shift = np.where(rows, kappa * rho2 * flux, 0.0)
    for column in ["flux", "mean", "median", "mode", "q16", "q84"] + [f"mu_{i}" for i in range(5)]:
        if column in table:
            table[column] = table[column] + shift
    table.to_parquet(f"{dst}/injection_table.parquet", index=False)
    print(dst, int(rows.sum()), "blended rows moved")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
