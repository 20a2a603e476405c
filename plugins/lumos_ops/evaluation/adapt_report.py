"""The report of ``lumos adapt``: the candidate's injection report with the base model beside it.

:func:`adapt_report` scores an injection table holding the base model's rows (``model = "base"``:
LUMOS and the classical methods) and the candidate's (``model = "candidate"``: LUMOS) measured
on the same injected galaxies: the candidate with the classical methods in the format of
``lumos inject`` (what the registry's gates read), ``base`` (the base model's LUMOS entries and
targets), ``bands`` (both per band of the held-out exposures, read through the current survey) and
``comparison`` (flat rows per scope, population, method and true-SNR bin).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["adapt_report", "comparison_rows", "plot_view"]


def adapt_report(table: pd.DataFrame, *, shared_error_rows: pd.DataFrame | None = None) -> dict[str, Any]:
    """Candidate report (candidate LUMOS + classical), with the base model's LUMOS and per-band reports.

    ``shared_error_rows``: the candidate's LUMOS rows, with ``model_residual``, of every population
    its shared-error term pools (``score_injection``), as ``lumos adapt`` records it.
    """
    from lumos_ops.evaluation.injection_report import score_injection

    classical = table[(table["model"] == "base") & (table["method"] != "lumos")]
    candidate = pd.concat([classical, table[(table["model"] == "candidate") & (table["method"] == "lumos")]],
                          ignore_index=True)
    base = table[(table["model"] == "base")]
    report = score_injection(candidate, shared_error_rows=shared_error_rows)
    base_report = score_injection(base)
    report["base"] = {"populations": {p: {"lumos": e["methods"].get("lumos"),
                                          "sigma68_ratio_by_true_snr": e["sigma68_ratio_by_true_snr"]}
                                      for p, e in base_report["populations"].items()},
                      "targets": base_report["targets"]}
    bands = {}
    band_of = _frame_bands(table["frame"].unique())
    for band in sorted(set(band_of.values())):
        frames = [f for f, b in band_of.items() if b == band]
        cand_b = score_injection(candidate[candidate["frame"].isin(frames)])
        base_b = score_injection(base[base["frame"].isin(frames)])
        bands[band] = {"frames": frames, "candidate": cand_b,
                       "base": {"populations": {p: {"lumos": e["methods"].get("lumos"),
                                                    "sigma68_ratio_by_true_snr": e["sigma68_ratio_by_true_snr"]}
                                                for p, e in base_b["populations"].items()},
                                "targets": base_b["targets"]}}
    report["bands"] = bands
    report["comparison"] = comparison_rows(report)
    return report


def plot_view(report: dict[str, Any]) -> dict[str, Any]:
    """The report's populations with the base model's LUMOS beside the candidate's, for the plot."""
    populations = {}
    for pop, entry in report["populations"].items():
        methods = {("lumos (adapted)" if m == "lumos" else m): e for m, e in entry["methods"].items()}
        base = report["base"]["populations"].get(pop, {}).get("lumos")
        if base:
            methods["lumos (base)"] = base
        populations[pop] = {"methods": methods}
    return {"populations": populations}


def _frame_bands(frames) -> dict[str, str]:
    from lumos_ops.io.exposure import read_exposure

    return {str(f): read_exposure(str(f)).band for f in frames}


def comparison_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (scope = all or a band, population, model/method, true-SNR bin) of bias, sigma68,
    pull sigma68, coverage68 and sigma68 / optimal's, for base, candidate and classical methods."""
    rows = []
    scopes = [("all", report, report.get("base"))] + [(b, e["candidate"], e["base"]) for b, e in report.get("bands", {}).items()]
    for scope, cand, base in scopes:
        for pop, entry in cand["populations"].items():
            methods = dict(entry["methods"])
            optimal = methods.get("optimal")
            if "lumos" in methods:
                methods["lumos_candidate"] = methods.pop("lumos")
            if base and base["populations"].get(pop, {}).get("lumos"):
                methods["lumos_base"] = base["populations"][pop]["lumos"]
            for name, m in methods.items():
                for i, b in enumerate(m["by_true_snr"]):
                    opt = optimal["by_true_snr"][i]["sigma68"] if optimal else None
                    ratio = b["sigma68"] / opt if opt and b["sigma68"] is not None and np.isfinite(opt) else None
                    rows.append({"scope": scope, "population": pop, "method": name, "snr_lo": b["lo"],
                                 "snr_hi": b["hi"], "n": b["n"], "bias": b["bias"], "sigma68": b["sigma68"],
                                 "pull_sigma68": b["pull_sigma68"], "coverage68": b["coverage68"],
                                 "sigma68_over_optimal": ratio})
    return rows
