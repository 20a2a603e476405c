"""Signal-to-noise per band of each method: what it reports and what it achieves against the truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.stats import sigma68

__all__ = ["snr_by_band"]


def snr_by_band(meta: pd.DataFrame, truth: np.ndarray, results: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Per band and method: median reported SNR (f / sigma_f) and empirical SNR (median f0 / sigma68(f - f0)).

    Parameters
    ----------
    meta : DataFrame
        Stamp metadata with a ``band`` column, one row per stamp.
    truth : ndarray, shape (n,)
        True fluxes (e-/s).
    results : dict of str to (ndarray, ndarray)
        Per method, measured flux and its reported error (e-/s), shape (n,) each.

    Returns
    -------
    dict
        ``{band: {"n": stamps, method: {"snr_reported_median", "snr_empirical"}}}`` (None when undefined).
    """
    out: dict[str, Any] = {}
    bands = meta["band"].to_numpy().astype(str)
    for band in sorted(set(bands)):
        sel = bands == band
        row: dict[str, Any] = {"n": int(sel.sum())}
        for name, (flux, err) in results.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                reported = flux[sel] / err[sel]
            spread = sigma68((flux - truth)[sel])
            row[name] = {"snr_reported_median": float(np.nanmedian(reported)) if np.isfinite(reported).any() else None,
                         "snr_empirical": float(np.median(truth[sel]) / spread) if spread > 0 else None}
        out[band] = row
    return out
