"""Flux-accuracy metrics of the paper's §5.2: bias (eq. 17) and sigma68 (eq. 18), per magnitude bin.

``bias = median((f - f0) / f0)`` and ``sigma68 = (q84 - q16) / 2`` of the same relative error, with
``f0`` the true flux (:mod:`lumos_ops.stats`). :func:`compare_methods` takes a dict ``method -> measured fluxes`` so that any
method (LUMOS included) can be added to the comparison; :func:`plot_comparison` draws Fig. 7.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError
from lumos_ops.stats import bias, relative_error, sigma68

__all__ = [
    "DEFAULT_MAG_BINS",
    "MethodMetrics",
    "compare_methods",
    "comparison_to_dict",
    "plot_comparison",
]

DEFAULT_MAG_BINS: tuple[float, ...] = (17.5, 18.5, 19.5, 20.0, 20.5, 21.0, 21.5, 22.0, 22.5, 23.0)
"""Edges of the i_auto bins (AB mag) of Fig. 7."""


@dataclasses.dataclass(frozen=True)
class MethodMetrics:
    """Metrics of every method, overall and per magnitude bin.

    Attributes
    ----------
    overall : DataFrame
        One row per method: ``method``, ``n`` (finite measurements), ``n_missing`` (NaN fluxes),
        ``bias``, ``sigma68``, ``bias_err`` and ``sigma68_err`` (bootstrap standard errors).
    binned : DataFrame
        One row per method and bin: ``method``, ``mag_lo``, ``mag_hi``, ``mag_mid``, same columns.
    """

    overall: pd.DataFrame
    binned: pd.DataFrame


def _stats(rel: np.ndarray, rng: np.random.Generator, n_boot: int) -> dict[str, float]:
    finite = rel[np.isfinite(rel)]
    row: dict[str, float] = {
        "n": int(finite.size),
        "n_missing": int(rel.size - finite.size),
        "bias": bias(finite),
        "sigma68": sigma68(finite),
        "bias_err": float("nan"),
        "sigma68_err": float("nan"),
    }
    if finite.size >= 10 and n_boot > 0:
        draws = finite[rng.integers(0, finite.size, size=(n_boot, finite.size))]
        q16, q50, q84 = np.percentile(draws, [16.0, 50.0, 84.0], axis=1)
        row["bias_err"] = float(np.std(q50))
        row["sigma68_err"] = float(np.std(0.5 * (q84 - q16)))
    return row


def compare_methods(
    fluxes: Mapping[str, np.ndarray],
    truth: np.ndarray,
    mag: np.ndarray,
    *,
    bins: Sequence[float] = DEFAULT_MAG_BINS,
    n_boot: int = 100,
    seed: int = 0,
) -> MethodMetrics:
    """Bias and sigma68 of several methods measured on the same targets.

    Parameters
    ----------
    fluxes : mapping of str to array_like, shape (n,)
        Measured flux of each target per method (e.g. ``{"aperture": ..., "lumos": ...}``), in the
        unit of ``truth``; NaN marks a failed measurement (counted in ``n_missing``).
    truth : array_like, shape (n,)
        True flux ``f0``; targets with ``f0 <= 0`` are left out.
    mag : array_like, shape (n,)
        Magnitude used for binning (i_auto, AB).
    bins : sequence of float, keyword-only
        Bin edges (increasing).
    n_boot : int, keyword-only
        Bootstrap resamples for the standard errors (0 to skip).
    seed : int, keyword-only
        Bootstrap seed.

    Returns
    -------
    MethodMetrics
    """
    if not fluxes:
        raise LumosValueError("fluxes must hold at least one method")
    truth = np.asarray(truth, dtype=np.float64)
    mag = np.asarray(mag, dtype=np.float64)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise LumosValueError(f"bins must be at least two increasing edges, got {list(bins)}")
    if mag.shape != truth.shape:
        raise LumosValueError(f"mag and truth must have the same shape, got {mag.shape} and {truth.shape}")
    rng = np.random.default_rng(seed)
    valid = truth > 0
    overall, binned = [], []
    for method, flux in fluxes.items():
        rel = relative_error(np.asarray(flux, dtype=np.float64), truth)
        overall.append({"method": method, **_stats(rel[valid], rng, n_boot)})
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = valid & (mag >= lo) & (mag < hi)
            binned.append({"method": method, "mag_lo": lo, "mag_hi": hi, "mag_mid": 0.5 * (lo + hi), **_stats(rel[sel], rng, n_boot)})
    return MethodMetrics(overall=pd.DataFrame(overall), binned=pd.DataFrame(binned))


def comparison_to_dict(metrics: MethodMetrics) -> dict[str, Any]:
    """JSON-ready form: ``{"overall": {method: {...}}, "binned": {method: [{...}, ...]}}`` (NaN -> None)."""

    def clean(record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in record.items():
            if isinstance(value, (float, np.floating)):
                out[key] = None if not np.isfinite(value) else float(value)
            elif isinstance(value, np.integer):
                out[key] = int(value)
            else:
                out[key] = value
        return out

    overall = {r["method"]: clean({k: v for k, v in r.items() if k != "method"}) for r in metrics.overall.to_dict("records")}
    binned: dict[str, list[dict[str, Any]]] = {}
    for record in metrics.binned.to_dict("records"):
        binned.setdefault(record["method"], []).append(clean({k: v for k, v in record.items() if k != "method"}))
    return {"overall": overall, "binned": binned}


def plot_comparison(metrics: MethodMetrics, path: str | os.PathLike[str], *, title: str | None = None) -> str:
    """Fig. 7 of the paper: bias (left) and sigma68 (right) against i_auto for every method.

    Returns
    -------
    str
        The written image path (format from the extension, e.g. ``.png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bias, ax_sig) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for method, rows in metrics.binned.groupby("method", sort=False):
        ok = rows["n"].to_numpy() > 0
        x = rows["mag_mid"].to_numpy()[ok]
        ax_bias.errorbar(x, rows["bias"].to_numpy()[ok], yerr=rows["bias_err"].to_numpy()[ok], marker="o", ms=3, capsize=2, label=method)
        ax_sig.errorbar(x, rows["sigma68"].to_numpy()[ok], yerr=rows["sigma68_err"].to_numpy()[ok], marker="o", ms=3, capsize=2, label=method)
    ax_bias.axhline(0.0, color="0.5", lw=0.8)
    ax_bias.set_xlabel("i_auto [AB]")
    ax_bias.set_ylabel("bias = median[(f - f0) / f0]")
    ax_sig.set_xlabel("i_auto [AB]")
    ax_sig.set_ylabel("sigma68[(f - f0) / f0]")
    ax_sig.set_yscale("log")
    ax_bias.legend(frameon=False)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return os.fspath(path)
