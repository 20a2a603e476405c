"""Injection reports of ``lumos inject``'s shape for the registry's gates (tests/pipeline/test_registry.py,
tests/dags/test_lumos_nightly.py)."""

from __future__ import annotations

EDGES = [(1.0, 2.0), (2.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 50.0), (50.0, 1e6)]
GOOD = {"bias": 0.01, "sigma68": 0.10, "pull": 1.02}
APERTURE = {"bias": 0.02, "sigma68": 0.20, "pull": 1.05}
OPTIMAL = {"bias": 0.03, "sigma68": 0.15, "pull": 1.20}


def bins(bias: float, sigma68: float, pull: float, *, n: int = 200, sigma68_at: dict | None = None) -> list[dict]:
    """``by_true_snr`` rows as ``lumos inject`` writes them: sigma68 falls with SNR, one overall row."""
    rows = []
    for i, (lo, hi) in enumerate(EDGES):
        s = (sigma68_at or {}).get(lo, sigma68 / (i + 1))
        rows.append({"lo": lo, "hi": hi, "n": n, "n_missing": 0, "bias": bias, "bias_err": 0.005, "sigma68": s,
                     "pull_median": 0.0, "pull_sigma68": pull, "coverage68": 0.68})
    rows.append({"lo": None, "hi": None, "n": n * len(EDGES), "n_missing": 0, "bias": bias, "bias_err": 0.002,
                 "sigma68": sigma68, "pull_median": 0.0, "pull_sigma68": pull, "coverage68": 0.68})
    return rows


def report(lumos: dict | None = None, *, populations=("sersic", "blended"), aperture=APERTURE, optimal=OPTIMAL,
           sigma68_at: dict | None = None) -> dict:
    """An injection report of the shape of reports/lumos/injection/injection_report.json."""
    lumos = lumos or GOOD
    pops = {}
    for pop in populations:
        methods = {"lumos": {"n": 1200, "by_true_snr": bins(**lumos, sigma68_at=sigma68_at), "d_width": 1.0},
                   "aperture": {"n": 1200, "by_true_snr": bins(**aperture), "d_width": 1.0},
                   "optimal": {"n": 1200, "by_true_snr": bins(**optimal), "d_width": 1.0}}
        pops[pop] = {"methods": methods, "n_galaxies": 200}
    targets = [{"population": p, "target": "D width 0.9-1.1", "value": 1.0, "met": True} for p in populations]
    return {"populations": pops, "targets": targets, "command": "lumos inject (test)"}
