"""Calibration of LUMOS flux PDFs against the true flux: PIT (eq. 13, Fig. 6) and interval coverage."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["interval_coverage", "pit_summary", "coverage_by_mag", "COVERAGE_MAG_EDGES"]

COVERAGE_MAG_EDGES: tuple[float, ...] = (17.5, 20.0, 21.0, 21.5, 22.0, 22.5, 23.0, 24.0)
"""Magnitude bin edges (AB) of the 68 % coverage curve."""


def interval_coverage(frame: pd.DataFrame, truth: np.ndarray) -> dict[str, float]:
    """Fraction of true fluxes inside the PDF's 16-84 % interval and inside ``flux +- flux_err``.

    Parameters
    ----------
    frame : DataFrame
        LUMOS result table (mixture columns, :mod:`lumos_ops.lumos.mixture_table`; ``flux``, ``flux_err``; e-/s).
    truth : ndarray, shape (n,)
        True fluxes (e-/s).

    Returns
    -------
    dict
        ``coverage68_interval`` and ``coverage_mean_pm_std`` (fractions, 0.68 when calibrated).
    """
    from lumos_ops.lumos.mixture import mixture_quantile
    from lumos_ops.lumos.mixture_table import mixtures_from_table

    q = mixture_quantile([0.16, 0.84], *mixtures_from_table(frame).args)
    inside = (truth >= q[:, 0]) & (truth <= q[:, 1])
    within_std = np.abs(frame["flux"].to_numpy() - truth) <= frame["flux_err"].to_numpy()
    return {"coverage68_interval": float(inside.mean()), "coverage_mean_pm_std": float(within_std.mean())}


def pit_summary(frame: pd.DataFrame, truth: np.ndarray) -> dict[str, Any]:
    """PIT values (eq. 13), their 20-bin histogram and KS distance from U(0, 1).

    Parameters
    ----------
    frame : DataFrame
        LUMOS result table (mixture columns, :mod:`lumos_ops.lumos.mixture_table`; e-/s).
    truth : ndarray, shape (n,)
        True fluxes (e-/s).

    Returns
    -------
    dict
        ``_values`` (PIT per stamp, NaN where undefined), ``hist`` (20 counts on [0, 1]),
        ``ks_distance`` and ``chi2_per_bin`` of the histogram against a flat one.
    """
    from scipy.stats import kstest

    from lumos_ops.lumos.mixture import pit
    from lumos_ops.lumos.mixture_table import mixtures_from_table

    values = pit(truth, *mixtures_from_table(frame).args)
    finite = values[np.isfinite(values)]
    hist = np.histogram(finite, bins=20, range=(0, 1))[0]
    return {
        "_values": values,
        "hist": hist.tolist(),
        "ks_distance": float(kstest(finite, "uniform").statistic) if finite.size else float("nan"),
        "chi2_per_bin": float(((hist - hist.mean()) ** 2 / max(hist.mean(), 1e-12)).sum() / hist.size),
    }


def coverage_by_mag(pit_values: np.ndarray, mag: np.ndarray,
                    edges: tuple[float, ...] = COVERAGE_MAG_EDGES) -> list[float]:
    """Fraction of PIT values in (0.16, 0.84) per magnitude bin: the 68 % coverage (NaN for empty bins).

    Parameters
    ----------
    pit_values : ndarray, shape (n,)
        PIT of each stamp (:func:`pit_summary`'s ``_values``).
    mag : ndarray, shape (n,)
        Magnitude of each stamp (AB).
    edges : tuple of float
        Bin edges (AB), ``[lo, hi)`` bins.

    Returns
    -------
    list of float
        One coverage per bin.
    """
    bins = np.array(edges)
    cov = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (mag >= lo) & (mag < hi)
        cov.append(float(np.mean((pit_values[sel] > 0.16) & (pit_values[sel] < 0.84))) if sel.sum() else np.nan)
    return cov
