"""Width of the D statistic (eq. 19, Fig. 12) of repeated observations of the same galaxy.

Two calibrated flux PDFs of one galaxy from two exposures give ``D = (f1 - f2) / sqrt(s1^2 + s2^2)``;
for calibrated errors its sigma68 is 1 at every magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.stats import sigma68

__all__ = ["d_width_by_magnitude", "pair_d_width"]


def d_width_by_magnitude(d: np.ndarray, mag: np.ndarray, *, n_bins: int = 5) -> list[dict[str, float]]:
    """sigma68 of D (eq. 19) in equally populated magnitude bins.

    Parameters
    ----------
    d : ndarray, shape (n,)
        D of each pair (dimensionless).
    mag : ndarray, shape (n,)
        Magnitude of each pair (AB), e.g. the first observation's ``i_auto``.
    n_bins : int, keyword-only
        Bins wanted; fewer when there are under 5 pairs a bin.

    Returns
    -------
    list of dict
        Per bin with >= 3 pairs: ``mag_lo``, ``mag_hi`` (AB), ``n``, ``sigma68_D``.
    """
    ok = np.isfinite(d) & np.isfinite(mag)
    d, mag = d[ok], mag[ok]
    if d.size < n_bins * 5:
        n_bins = max(1, d.size // 5)
    if d.size == 0:
        return []
    edges = np.quantile(mag, np.linspace(0, 1, n_bins + 1))
    out = []
    for k in range(n_bins):
        sel = (mag >= edges[k]) & ((mag < edges[k + 1]) if k < n_bins - 1 else (mag <= edges[k + 1]))
        if sel.sum() < 3:
            continue
        out.append({"mag_lo": float(edges[k]), "mag_hi": float(edges[k + 1]), "n": int(sel.sum()),
                    "sigma68_D": sigma68(d[sel])})
    return out


def pair_d_width(loaded: Any, exposures: Sequence[str], catalog: pd.DataFrame, batch_size: int) -> dict[str, Any]:
    """D of every pair of observations of one galaxy in ``exposures``, measured by LUMOS in nJy.

    Parameters
    ----------
    loaded : LoadedModel
        The model (``lumos_ops.lumos.checkpoint.load_checkpoint``).
    exposures : sequence of str
        Calibrated survey exposures (FITS with ``ZP``).
    catalog : DataFrame
        Their catalogue.
    batch_size : int
        Stamps per network batch.

    Returns
    -------
    dict
        ``n_pairs``, ``sigma68_D`` (all pairs), ``by_imag`` (:func:`d_width_by_magnitude` in
        ``i_auto``) and ``_d`` (D per pair, not for the JSON report).
    """
    from lumos_ops.lumos.coadd import njy_factor
    from lumos_ops.lumos.inference import mixture_table, predict_mixtures
    from lumos_ops.lumos.mixture import d_statistic
    from lumos_ops.lumos.pairs import collect_observations, make_pairs

    obs = collect_observations(exposures, catalog, loaded.normalization, stamp_size=loaded.net.config.stamp_size,
                               default_zero_point=None)
    i_auto = obs.table["i_auto"].to_numpy(np.float64)
    cols = mixture_table(predict_mixtures(loaded, obs.inputs, i_auto, batch_size=batch_size), likelihood=loaded.is_likelihood)
    c = njy_factor(obs.table["zero_point"].to_numpy())
    pairs = make_pairs(obs.table)
    f, s = cols["flux"] * c, cols["flux_err"] * c
    d = d_statistic(f[pairs[:, 0]], s[pairs[:, 0]], f[pairs[:, 1]], s[pairs[:, 1]])
    return {
        "n_pairs": int(pairs.shape[0]),
        "sigma68_D": sigma68(d),
        "by_imag": d_width_by_magnitude(d, i_auto[pairs[:, 0]]),
        "_d": d,
    }
