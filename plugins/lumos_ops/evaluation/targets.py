"""The acceptance targets of the LUMOS issue (§4 Evidence) as an explicit table.

Each row: ``name``, ``measured``, ``threshold`` (text), ``met`` (True / False, None when the
measurement was not made) and ``detail``. Targets for the shipped default model:

* overall sigma68 of LUMOS <= 0.8 x that of the optimal weighted sum and <= 0.7 x aperture;
* |bias| <= 3 % in every magnitude bin brighter than 22;
* Kolmogorov-Smirnov distance of the PIT from uniform <= 0.03;
* the same for the likelihood made a posterior with the test set's own flux population
  (:func:`lumos_ops.evaluation.population_prior.posterior_pit`), when the model outputs a likelihood;
* coverage of the 68 % interval in [0.65, 0.71];
* deblending: |bias| <= 10 % with the neighbour at >= 5 px (largest |bias| over the distance bins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["issue_targets", "format_targets", "BRIGHT_LIMIT"]

BRIGHT_LIMIT = 22.0
"""Bins whose upper edge is <= this magnitude count as "brighter than 22"."""


def _row(name: str, measured: float | None, threshold: str, met: bool | None, detail: str) -> dict[str, Any]:
    value = None if measured is None or not np.isfinite(measured) else float(measured)
    return {"name": name, "measured": value, "threshold": threshold, "met": None if value is None else bool(met),
            "detail": detail}


def issue_targets(
    overall: Mapping[str, Mapping[str, Any]],
    binned: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    pit_ks: float,
    coverage68: float,
    population_pit_ks: float | None = None,
    deblend: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    deblend_excess: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    deblend_targets: str | None = None,
    method: str = "lumos",
    binning: str = "i_auto",
    reference: str = "bayes_optimal",
) -> list[dict[str, Any]]:
    """The issue's targets evaluated on a validation report.

    Parameters
    ----------
    overall, binned : mapping
        ``comparison_to_dict(...)["overall"]`` / ``["binned"]`` of :mod:`lumos_ops.evaluation.method_comparison`.
    pit_ks : float, keyword-only
        KS distance of the PIT values from U(0, 1).
    coverage68 : float, keyword-only
        Fraction of stamps whose true flux lies in the 16-84 % interval.
    population_pit_ks : float or None, keyword-only
        KS distance from U(0, 1) of the PIT of the likelihood times the test set's flux population
        (``fixed_truth["pit_population_prior"]``); None: no row (a posterior model).
    deblend : mapping or None, keyword-only
        :func:`lumos_ops.evaluation.deblend.bias_by_distance` output; None = test not run.
    deblend_excess : mapping or None, keyword-only
        :func:`lumos_ops.evaluation.deblend.excess_by_distance` output (the bias the neighbour causes);
        stated in the deblending row's detail, the target itself is on the total bias.
    deblend_targets : str or None, keyword-only
        How the deblending targets' fluxes were drawn (``"test_set"``, ``"catalog"``), for the detail.
    method : str, keyword-only
        Key of the LUMOS estimator in ``overall``.
    binning : str, keyword-only
        Name of the magnitude the bins are in (for the detail text).
    reference : str, keyword-only
        Key of the information reference in ``overall`` (:mod:`lumos_ops.evaluation.bayes_reference`);
        when present, the sigma68 rows also state its ratio.

    Returns
    -------
    list of dict
    """
    rows = _sigma68_rows(overall, method, reference)
    rows.append(_bright_bias_row(binned.get(method, []), binning))
    rows.append(_row("PIT KS distance from uniform", pit_ks, "<= 0.03", pit_ks <= 0.03, "eq. (13)"))
    if population_pit_ks is not None:
        rows.append(_row("PIT KS, likelihood x test population", population_pit_ks, "<= 0.03",
                         population_pit_ks <= 0.03, "the other stamps' true fluxes as prior"))
    rows.append(_row("coverage of the 68 % interval", coverage68, "0.65-0.71", 0.65 <= coverage68 <= 0.71,
                     "16-84 % quantiles of the PDF"))
    rows.append(_deblend_row((deblend or {}).get(method, []), (deblend_excess or {}).get(method, []), deblend_targets))
    return rows


def _sigma68_rows(overall: Mapping[str, Mapping[str, Any]], method: str, reference: str) -> list[dict[str, Any]]:
    """sigma68 of LUMOS over that of the optimal weighted sum (<= 0.8) and of aperture photometry (<= 0.7)."""
    s_lumos = (overall.get(method) or {}).get("sigma68")
    s_ref = (overall.get(reference) or {}).get("sigma68")
    rows = []
    for base, factor in (("optimal", 0.8), ("aperture", 0.7)):
        s_base = (overall.get(base) or {}).get("sigma68")
        ratio = s_lumos / s_base if s_lumos is not None and s_base else None
        detail = f"sigma68 {method} {s_lumos} vs {base} {s_base}"
        if s_ref is not None and s_base:
            detail += f"; the information reference {reference} reaches {s_ref / s_base:.3f}"
        rows.append(_row(f"sigma68 LUMOS / {base}", ratio, f"<= {factor}", ratio is not None and ratio <= factor,
                         detail))
    return rows


def _bright_bias_row(bins: Sequence[Mapping[str, Any]], binning: str) -> dict[str, Any]:
    """Largest |bias| over the populated bins brighter than :data:`BRIGHT_LIMIT` (<= 3 %)."""
    bright = [b for b in bins if b["mag_hi"] <= BRIGHT_LIMIT + 1e-9 and b.get("n", 0) > 0 and b.get("bias") is not None]
    worst = max(bright, key=lambda b: abs(b["bias"]), default=None)
    return _row(
        f"max |bias| per {binning} bin brighter than {BRIGHT_LIMIT:g}", None if worst is None else abs(worst["bias"]),
        "<= 0.03", worst is not None and abs(worst["bias"]) <= 0.03,
        "no populated bin" if worst is None else
        f"worst bin {worst['mag_lo']:g}-{worst['mag_hi']:g} (n={worst['n']}), {len(bright)} bins",
    )


def _worst_beyond_5px(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The distance bin from 5 px on with the largest |bias| (None when there is none)."""
    far = [b for b in rows if b["d_lo"] >= 5.0 - 1e-9 and b.get("bias") is not None]
    return max(far, key=lambda b: abs(b["bias"]), default=None)


def _deblend_row(by_distance: Sequence[Mapping[str, Any]], excess_by_distance: Sequence[Mapping[str, Any]],
                 deblend_targets: str | None) -> dict[str, Any]:
    """Largest |bias| with the neighbour at >= 5 px (<= 10 %), stating the part the neighbour causes."""
    worst_d = _worst_beyond_5px(by_distance)
    worst_x = _worst_beyond_5px(excess_by_distance)
    excess = "" if worst_x is None else (
        f"; the neighbour itself causes up to {worst_x['bias']:+.3f} ({worst_x['d_lo']:g}-{worst_x['d_hi']:g} px)")
    return _row(
        "deblending: max |bias| with neighbour at >= 5 px", None if worst_d is None else abs(worst_d["bias"]),
        "<= 0.10", worst_d is not None and abs(worst_d["bias"]) <= 0.10,
        "not run (give survey exposures and --deblend-stamps)" if worst_d is None else
        f"i=22 target{'' if deblend_targets is None else f' ({deblend_targets} fluxes)'}, i=20 neighbour; "
        f"worst bin {worst_d['d_lo']:g}-{worst_d['d_hi']:g} px (n={worst_d['n']})"
        + excess,
    )


def format_targets(rows: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of :func:`issue_targets` rows."""
    lines = [f"{'target':<52} {'measured':>9} {'threshold':>10}  met", "-" * 80]
    for r in rows:
        measured = "n/a" if r["measured"] is None else f"{r['measured']:.3f}"
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"{r['name']:<52} {measured:>9} {r['threshold']:>10}  {met}")
    return "\n".join(lines)
