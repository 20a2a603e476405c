"""Bias, scatter, pulls and coverage at fixed *true* flux or true SNR.

A posterior shrinks toward its prior: binned by an observed quantity (i_auto, the measured flux)
shrinkage averages away, binned by the truth it shows as a bias that grows toward the faint end.
Every function here bins by the truth. Definitions (per bin):

* ``bias``: median of ``(f - f0) / f0`` (eq. 17);
* ``sigma68``: ``(q84 - q16) / 2`` of ``(f - f0) / f0`` (eq. 18);
* ``pull_sigma68``: ``(q84 - q16) / 2`` of ``(f - f0) / err`` -- 1 for honest errors;
* ``pull_median``: median of ``(f - f0) / err``;
* ``coverage68``: fraction of rows whose 68 % interval holds ``f0``; the interval is
  ``[lower, upper]`` when given (a PDF's q16, q84), else ``f +- err``.

``bias_err``, ``pull_sigma68_err`` and ``coverage68_err`` are bootstrap standard errors (``n_boot``
seeded draws; NaN below 10 rows): with a few dozen rows a bin's pull sigma68 is uncertain by
~0.1, as wide as the 0.9-1.1 target. Rows are resampled with replacement, or, given ``groups``,
whole groups are (a block bootstrap: the placements of one injected galaxy share its departure
from the model, so they are not independent draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import pandas as pd

from lumos_ops.exceptions import LumosValueError
from lumos_ops.stats import block_resamples
from lumos_ops.stats import sigma68 as half_width68

__all__ = ["fixed_truth_bins", "methods_at_fixed_truth", "TRUE_FLUX_EDGES", "TRUE_SNR_EDGES", "crb_flux_error"]

TRUE_FLUX_EDGES: tuple[float, ...] = (0.0, 3.0, 10.0, 30.0, 100.0, 1000.0)
"""Default true-flux bin edges (e-/s per exposure)."""

TRUE_SNR_EDGES: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 1000.0)
"""Default true-SNR bin edges (``f0 / crb_flux_error``)."""


def crb_flux_error(unit_model: ArrayLike, pixel_variance: ArrayLike, flux: ArrayLike | None = None) -> np.ndarray:
    """Cramer-Rao bound of the flux error (e-/s) of each target for a known profile.

    Parameters
    ----------
    unit_model : array_like, shape (n, S, S)
        Unit-flux PSF-convolved profiles (fraction of the flux per pixel).
    pixel_variance : array_like, shape (n,) or (n, S, S)
        Background noise variance ((e-/s)^2 per pixel).
    flux : array_like, shape (n,), optional
        True fluxes (e-/s); with ``exptime`` folded in by the caller, the source's own Poisson
        variance is ``flux * model / exptime``. Omit to use the background only.

    Returns
    -------
    ndarray, shape (n,)
        ``1 / sqrt(sum P^2 / var)``; the true SNR of a target is ``f0 / crb_flux_error``.
    """
    p = np.asarray(unit_model, dtype=np.float64)
    var = np.asarray(pixel_variance, dtype=np.float64)
    if var.ndim == 1:
        var = var[:, None, None]
    if flux is not None:
        var = var + np.clip(np.asarray(flux, dtype=np.float64)[:, None, None] * p, 0.0, None)
    return 1.0 / np.sqrt((p * p / var).sum(axis=(1, 2)))


def _row(truth, flux, err, lower, upper, rng, n_boot: int, groups=None) -> dict[str, float]:
    rel = (flux - truth) / truth
    pull = (flux - truth) / err
    finite = np.isfinite(rel) & np.isfinite(pull) & (err > 0)
    rel, pull = rel[finite], pull[finite]
    groups = None if groups is None else groups[finite]
    lo = (flux - err if lower is None else lower)[finite]
    hi = (flux + err if upper is None else upper)[finite]
    t = truth[finite]
    row: dict[str, float] = {"n": int(finite.sum()), "n_missing": int((~finite).sum())}
    if rel.size == 0:
        row.update(bias=np.nan, bias_err=np.nan, sigma68=np.nan, pull_median=np.nan, pull_sigma68=np.nan,
                   pull_sigma68_err=np.nan, coverage68=np.nan, coverage68_err=np.nan)
        return row
    covered = (t >= lo) & (t <= hi)
    row["bias"] = float(np.median(rel))
    row["sigma68"] = half_width68(rel)
    row["pull_median"] = float(np.median(pull))
    row["pull_sigma68"] = half_width68(pull)
    row["coverage68"] = float(np.mean(covered))
    row.update(bias_err=float("nan"), pull_sigma68_err=float("nan"), coverage68_err=float("nan"))
    if rel.size >= 10 and n_boot > 0:
        draws = block_resamples(groups, rel.size, rng, n_boot)
        row["bias_err"] = float(np.std([np.median(rel[i]) for i in draws]))
        row["pull_sigma68_err"] = float(np.std([half_width68(pull[i]) for i in draws]))
        row["coverage68_err"] = float(np.std([covered[i].mean() for i in draws]))
    return row


def fixed_truth_bins(
    truth: ArrayLike,
    flux: ArrayLike,
    err: ArrayLike,
    *,
    by: ArrayLike | None = None,
    edges: Sequence[float] = TRUE_FLUX_EDGES,
    lower: ArrayLike | None = None,
    upper: ArrayLike | None = None,
    n_boot: int = 200,
    seed: int = 0,
    groups: ArrayLike | None = None,
) -> list[dict[str, float]]:
    """Metrics per bin of a true quantity, plus one row ``all``.

    Parameters
    ----------
    truth, flux, err : array_like, shape (n,)
        True flux, estimate and its 1-sigma (68 %) error, same unit.
    by : array_like, shape (n,), optional
        The true quantity to bin on (default ``truth``; e.g. the true SNR).
    edges : sequence of float
        Bin edges of ``by``.
    lower, upper : array_like, shape (n,), optional
        68 % interval of each row for the coverage (default ``flux +- err``).
    groups : array_like, shape (n,), optional
        Label of the independent unit each row belongs to (an injected galaxy): the bootstrap
        errors resample whole groups. Default: rows are independent.

    Returns
    -------
    list of dict
        ``lo``, ``hi`` and the metrics of the module docstring; the last row has ``lo = hi = None``
        (every row).
    """
    t = np.asarray(truth, dtype=np.float64)
    f = np.asarray(flux, dtype=np.float64)
    e = np.asarray(err, dtype=np.float64)
    key = t if by is None else np.asarray(by, dtype=np.float64)
    if not (t.shape == f.shape == e.shape == key.shape) or t.ndim != 1:
        raise LumosValueError(f"truth, flux, err and by must be 1-d of one length; got {t.shape}, {f.shape}, {e.shape}, {key.shape}")
    lo_arr = None if lower is None else np.asarray(lower, dtype=np.float64)
    hi_arr = None if upper is None else np.asarray(upper, dtype=np.float64)
    label = None if groups is None else np.asarray(groups)
    if label is not None and label.shape != t.shape:
        raise LumosValueError(f"groups must have the length of truth; got {label.shape} and {t.shape}")
    rng = np.random.default_rng(seed)
    rows = []
    edges = [float(x) for x in edges]
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (key >= a) & (key < b)
        rows.append({"lo": a, "hi": b, **_row(t[sel], f[sel], e[sel], None if lo_arr is None else lo_arr[sel],
                                              None if hi_arr is None else hi_arr[sel], rng, n_boot,
                                              None if label is None else label[sel])})
    rows.append({"lo": None, "hi": None, **_row(t, f, e, lo_arr, hi_arr, rng, n_boot, label)})
    return rows


def methods_at_fixed_truth(table: pd.DataFrame, *, edges: Sequence[float] = (0.0, 10.0, 30.0, np.inf)) -> pd.DataFrame:
    """One row per method and bin of true flux: ``n``, ``bias``, ``pull_median``, ``pull_sigma68``, ``coverage68``.

    ``table`` holds one measurement a row: ``method``, ``flux``, ``flux_err`` and the true flux
    ``flux_true`` (one unit, e.g. e-/s per exposure). ``edges`` bin ``flux_true``; the coarse default
    suits a few hundred rows a method. Metrics as in the module docstring, without bootstrap errors.
    """
    import pandas as pd

    missing = {"method", "flux", "flux_err", "flux_true"} - set(table.columns)
    if missing:
        raise LumosValueError(f"methods_at_fixed_truth needs column(s) {sorted(missing)}")
    keep = ("n", "bias", "pull_median", "pull_sigma68", "coverage68")
    rows = []
    for method, group in table.groupby("method", sort=True):
        for row in fixed_truth_bins(group["flux_true"], group["flux"], group["flux_err"], edges=edges, n_boot=0):
            if row["lo"] is None:
                continue
            rows.append({"method": method, "true_lo": row["lo"], "true_hi": row["hi"], **{k: row[k] for k in keep}})
    return pd.DataFrame(rows, columns=["method", "true_lo", "true_hi", *keep])
