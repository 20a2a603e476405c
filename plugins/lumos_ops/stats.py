"""The flux-accuracy statistics every report uses: relative error, bias (paper eq. 17), sigma68
(eq. 18, ``(q84 - q16) / 2``) and the block bootstrap their errors come from. One home, imported
by the evaluation, photo-z and benchmark code.
"""

from __future__ import annotations

import numpy as np

from lumos_ops.exceptions import LumosValueError

__all__ = ["relative_error", "bias", "sigma68", "block_resamples"]


def relative_error(flux: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(f - f0) / f0`` element-wise; NaN where ``f`` is NaN or ``f0 <= 0``.

    Parameters
    ----------
    flux, truth : array_like, shape (n,)
        Measured and true flux (same unit, e.g. e-/s).
    """
    flux = np.asarray(flux, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if flux.shape != truth.shape:
        raise LumosValueError(f"flux and truth must have the same shape, got {flux.shape} and {truth.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(truth > 0, (flux - truth) / truth, np.nan)


def bias(rel: np.ndarray) -> float:
    """Eq. (17): median of the finite relative errors (NaN when there are none)."""
    rel = np.asarray(rel, dtype=np.float64)
    rel = rel[np.isfinite(rel)]
    return float(np.median(rel)) if rel.size else float("nan")


def sigma68(rel: np.ndarray) -> float:
    """Eq. (18): half the 16-84 percentile range of the finite relative errors."""
    rel = np.asarray(rel, dtype=np.float64)
    rel = rel[np.isfinite(rel)]
    if rel.size == 0:
        return float("nan")
    q16, q84 = np.percentile(rel, [16.0, 84.0])
    return float(0.5 * (q84 - q16))


def block_resamples(groups: np.ndarray | None, size: int, rng: np.random.Generator, n_boot: int) -> list[np.ndarray]:
    """``n_boot`` bootstrap index sets of ``size`` rows: rows drawn with replacement, or, given
    ``groups`` (one label per row), whole groups (each draw takes as many groups, with replacement,
    as the rows hold). The placements of one injected galaxy share its profile, so galaxies, not
    rows, are the independent draws."""
    if groups is None:
        return list(rng.integers(0, size, size=(n_boot, size)))
    _, label = np.unique(groups, return_inverse=True)
    order = np.argsort(label, kind="stable")  # the rows of group j are order[start[j]:start[j] + count[j]]
    count = np.bincount(label)
    start = np.cumsum(count) - count
    draws = []
    for pick in rng.integers(0, count.size, size=(n_boot, count.size)):
        lengths = count[pick]
        ends = np.cumsum(lengths)
        draws.append(order[np.arange(ends[-1]) - np.repeat(ends - lengths - start[pick], lengths)])
    return draws
