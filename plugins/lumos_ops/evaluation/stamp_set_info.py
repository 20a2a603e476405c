"""What a TEAHUPOO test set says about itself: its generator's options and its stamps' band magnitudes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["set_config", "set_flux_source", "band_mag"]


def set_config(ts: Any) -> dict[str, Any]:
    """The ``TeahupooConfig`` fields a set's manifest records (empty when it records none)."""
    return (ts.manifest.get("config") or {}) if isinstance(getattr(ts, "manifest", None), dict) else {}


def set_flux_source(ts: Any) -> str:
    """The set's ``flux_source`` (``"band_distribution"``, ``"catalog"``...) or ``"unknown"``."""
    return str(set_config(ts).get("flux_source", "unknown"))


def band_mag(meta: pd.DataFrame) -> np.ndarray:
    """AB magnitude of each stamp's true band flux.

    Parameters
    ----------
    meta : DataFrame
        Stamp metadata: ``flux`` (e-/s), ``band`` and optionally ``zero_point`` (AB mag of 1 e-/s;
        the band's nominal one where missing).

    Returns
    -------
    ndarray, shape (n,)
        ``zero_point - 2.5 log10(flux)`` (inf or NaN where the flux is not positive).
    """
    from lumos_ops.sim.bands import band_zero_point

    zp = meta["zero_point"].to_numpy(np.float64) if "zero_point" in meta.columns else np.full(len(meta), np.nan)
    missing = ~np.isfinite(zp)
    if missing.any():
        zp = zp.copy()
        zp[missing] = [band_zero_point(b) for b in meta["band"].to_numpy()[missing]]
    with np.errstate(divide="ignore", invalid="ignore"):
        return zp - 2.5 * np.log10(meta["flux"].to_numpy(np.float64))
