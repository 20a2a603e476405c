"""Photo-z accuracy metrics on ``dz = (z_phot - z_spec) / (1 + z_spec)``.

``sigma68 = (q84 - q16) / 2`` (paper eq. 14), ``NMAD = 1.4826 * median(|dz - median(dz)|)``,
outlier fraction ``|dz| > threshold`` (paper eq. 23: 0.02 for PAUS narrow bands; 0.15 is the usual
broad-band choice), ``bias = median(dz)``; overall, per i_auto bin and for the best X % of the
sources ranked by a quality value (the paper quotes the best 50 %).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError
from lumos_ops.stats import sigma68

__all__ = [
    "PAUS_OUTLIER_THRESHOLD",
    "DEFAULT_IMAG_BINS",
    "NMAD_SCALE",
    "delta_z",
    "nmad",
    "photoz_metrics",
    "binned_photoz_metrics",
    "best_fraction_mask",
]

PAUS_OUTLIER_THRESHOLD: float = 0.02
"""Narrow-band outlier definition ``|dz| > 0.02`` (paper eq. 23)."""

DEFAULT_IMAG_BINS: tuple[float, ...] = (17.5, 19.5, 20.5, 21.0, 21.5, 22.0, 22.5, 23.0)
"""Edges of the i_auto bins (AB mag) for :func:`binned_photoz_metrics`."""

NMAD_SCALE: float = 1.4826
"""Median absolute deviation to Gaussian sigma."""


def delta_z(z_phot: np.ndarray, z_spec: np.ndarray) -> np.ndarray:
    """``(z_phot - z_spec) / (1 + z_spec)``, shape (n,); NaN where either is NaN."""
    z_phot = np.asarray(z_phot, dtype=np.float64)
    z_spec = np.asarray(z_spec, dtype=np.float64)
    if z_phot.shape != z_spec.shape or z_phot.ndim != 1:
        raise LumosValueError(f"z_phot and z_spec must be 1-d with the same shape, got {z_phot.shape} and {z_spec.shape}")
    if np.any(z_spec[np.isfinite(z_spec)] <= -1):
        raise LumosValueError("z_spec must be > -1")
    return (z_phot - z_spec) / (1.0 + z_spec)


def nmad(dz: np.ndarray) -> float:
    """``1.4826 * median(|dz - median(dz)|)`` of the finite values (NaN if none)."""
    dz = np.asarray(dz, dtype=np.float64)
    dz = dz[np.isfinite(dz)]
    if dz.size == 0:
        return float("nan")
    return float(NMAD_SCALE * np.median(np.abs(dz - np.median(dz))))


def photoz_metrics(
    z_phot: np.ndarray, z_spec: np.ndarray, *, outlier_threshold: float = PAUS_OUTLIER_THRESHOLD
) -> dict[str, float]:
    """Summary metrics of one sample.

    Parameters
    ----------
    z_phot, z_spec : array_like, shape (n,)
        Photometric and spectroscopic redshifts; pairs with a NaN are counted in ``n_missing``.
    outlier_threshold : float, keyword-only
        ``|dz|`` above which a source is an outlier (default 0.02).

    Returns
    -------
    dict
        ``n``, ``n_missing``, ``sigma68``, ``nmad``, ``outlier_fraction``, ``bias`` (median dz),
        ``mean`` (mean dz).
    """
    if not (np.isfinite(outlier_threshold) and outlier_threshold > 0):
        raise LumosValueError(f"outlier_threshold must be > 0, got {outlier_threshold!r}")
    dz = delta_z(z_phot, z_spec)
    ok = np.isfinite(dz)
    d = dz[ok]
    return {
        "n": int(ok.sum()),
        "n_missing": int((~ok).sum()),
        "sigma68": sigma68(d),
        "nmad": nmad(d),
        "outlier_fraction": float(np.mean(np.abs(d) > outlier_threshold)) if d.size else float("nan"),
        "bias": float(np.median(d)) if d.size else float("nan"),
        "mean": float(np.mean(d)) if d.size else float("nan"),
    }


def best_fraction_mask(quality: np.ndarray, fraction: float, *, larger_is_better: bool = False) -> np.ndarray:
    """Boolean mask of the best ``fraction`` of the sources with a finite quality value.

    Parameters
    ----------
    quality : array_like, shape (n,)
        Quality proxy, e.g. ``qz`` (smaller is better) or ``odds`` (``larger_is_better=True``).
    fraction : float
        In (0, 1]; ``ceil(fraction * n_finite)`` sources are kept (ties broken by order).
    """
    if not (0.0 < fraction <= 1.0):
        raise LumosValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    quality = np.asarray(quality, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(quality))
    keep = int(np.ceil(fraction * finite.size))
    values = -quality[finite] if larger_is_better else quality[finite]
    order = finite[np.argsort(values, kind="stable")]
    mask = np.zeros(quality.shape, dtype=bool)
    mask[order[:keep]] = True
    return mask


def binned_photoz_metrics(
    z_phot: np.ndarray,
    z_spec: np.ndarray,
    i_auto: np.ndarray,
    *,
    bins: Sequence[float] = DEFAULT_IMAG_BINS,
    quality: np.ndarray | None = None,
    fractions: Sequence[float] = (1.0, 0.5),
    larger_is_better: bool = False,
    outlier_threshold: float = PAUS_OUTLIER_THRESHOLD,
) -> pd.DataFrame:
    """Metrics overall and per i_auto bin, for each quality fraction.

    The best-fraction cut is applied within each bin (as in the paper's per-magnitude curves).

    Parameters
    ----------
    z_phot, z_spec, i_auto : array_like, shape (n,)
        i_auto in AB mag.
    bins : sequence of float, keyword-only
        Increasing bin edges (AB mag).
    quality : array_like, shape (n,), optional, keyword-only
        Quality proxy for the fractions below 1 (required if any fraction < 1).
    fractions : sequence of float, keyword-only
        Fractions of the best sources to keep (default full sample and best 50 %).

    Returns
    -------
    pandas.DataFrame
        Columns ``fraction, bin, mag_lo, mag_hi`` (``bin`` = "all" for the whole sample, with NaN
        edges) and the keys of :func:`photoz_metrics`.
    """
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise LumosValueError(f"bins must be at least two increasing edges, got {tuple(bins)}")
    i_auto = np.asarray(i_auto, dtype=np.float64)
    z_phot = np.asarray(z_phot, dtype=np.float64)
    z_spec = np.asarray(z_spec, dtype=np.float64)
    if i_auto.shape != z_spec.shape:
        raise LumosValueError(f"i_auto must have the shape of z_spec {z_spec.shape}, got {i_auto.shape}")
    if any(f < 1.0 for f in fractions) and quality is None:
        raise LumosValueError("quality is required for fractions below 1")
    if quality is not None:
        quality = np.asarray(quality, dtype=np.float64)
        if quality.shape != z_spec.shape:
            raise LumosValueError(f"quality must have the shape of z_spec {z_spec.shape}, got {quality.shape}")
    rows = []
    selections = [("all", float("nan"), float("nan"), np.ones(z_spec.shape, dtype=bool))]
    for lo, hi in zip(edges[:-1], edges[1:]):
        selections.append((f"{lo:g}-{hi:g}", float(lo), float(hi), (i_auto >= lo) & (i_auto < hi)))
    for fraction in fractions:
        for name, lo, hi, sel in selections:
            if fraction < 1.0:
                q = np.where(sel, quality, np.nan)
                sel = best_fraction_mask(q, fraction, larger_is_better=larger_is_better)
            metrics = photoz_metrics(z_phot[sel], z_spec[sel], outlier_threshold=outlier_threshold)
            rows.append({"fraction": float(fraction), "bin": name, "mag_lo": lo, "mag_hi": hi, **metrics})
    return pd.DataFrame(rows)
