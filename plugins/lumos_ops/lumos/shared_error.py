"""The part of a flux error that every exposure of one galaxy shares, and what it does to co-adds.

Injection–recovery with several placements of each galaxy (``lumos inject``, ``lumos adapt``)
splits the pull of galaxy ``i`` in exposure ``j`` (``(flux - true_flux) / flux_err``) into

    p_ij = c_i + e_ij,    var(c) = tau^2,  var(e) = s^2

``c_i`` is what the exposures share (the galaxy's shape, its departure from the model profile the
network is given, the network's response to both), ``e_ij`` what changes between exposures (noise,
background, sub-pixel position). ``rho = tau^2 / (tau^2 + s^2)`` is the correlation of two
exposures' errors. Every variance is robust: the square of sigma68 (half the 16–84 % range). With
``n_i`` placements the within-galaxy deviations ``p_ij - mean_j p_ij`` have variance
``s^2 (n_i - 1) / n_i`` and the galaxy means ``tau^2 + s^2 / n_i``.

A co-add that treats exposures as independent (the product of likelihoods, or eq. 21) has variance
``sigma_c^2 = 1 / sum_j w_j`` (``w_j = 1 / sigma_j^2``). With pairwise correlations
``rho_jk = sqrt(rho_j rho_k)`` the variance of that weighted mean is ``c * sigma_c^2`` with

    c = 1 + [(sum_j sqrt(rho_j w_j))^2 - sum_j rho_j w_j] / sum_j w_j

(``1 + rho (N - 1)`` for N equal errors): the shared part does not average down.
:func:`lumos_ops.lumos.coadd.coadd_likelihoods` takes ``rho`` per exposure and raises the product
of likelihoods to the power ``1 / c`` (a composite likelihood with its curvature adjusted), which
widens the co-add by ``sqrt(c)`` about its peak and leaves the peak where it was.

``rho`` depends on the survey's pixels, PSF and galaxies as much as on the model, so it is
measured per model on held-out injections (:func:`estimate_shared_error`: the correlation of the
pulls of two placements of a galaxy on different frames) in bins of the exposure's *measured* SNR
(``flux / flux_err``; what a co-add knows), made non-decreasing with SNR (a shared fractional error
grows against the noise as the flux grows), and stored in the checkpoint's metadata
``"shared_error"`` (:meth:`SharedError.to_dict`). Models without it co-add as independent.

A galaxy that is not its catalogue model shares much more of its error than one that is. Given
the optimal fit's ``model_residual`` of each placement
(:func:`lumos_ops.photometry.optimal.model_residual`), the term is also split by the galaxy's
median residual (``SharedError.residual_cuts``); the co-add then takes the row of the source's
median residual over its exposures (:func:`coadd_rho`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from lumos_ops.exceptions import LumosValueError
from lumos_ops.stats import block_resamples, sigma68

__all__ = ["SNR_EDGES", "SHARED_ERROR_POPULATIONS", "RESIDUAL_CUTS", "PullSplit", "SharedError", "decompose_pulls", "pair_correlation",
           "pair_correlation_error", "estimate_shared_error", "SIGNIFICANCE",
           "coadd_variance_factor", "shared_error_of", "with_shared_rho", "coadd_rho", "record_shared_error"]

SNR_EDGES: tuple[float, ...] = (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, np.inf)
"""Default bins of measured per-exposure SNR for :func:`estimate_shared_error`."""

SHARED_ERROR_POPULATIONS: tuple[str, ...] = ("sersic",)
"""Injection populations a recorded term is measured on by default (``lumos adapt``, ``lumos model
shared-error``, and the cross-fitted co-adds of every injection report): the catalogue-model
galaxies. Pooling bulge + disk + knots galaxies with them, even split by residual, gave Sérsic
co-adds pulls of 0.48-0.77 at co-add SNR >= 20 on five injections (``reports/lumos/shared-error/significance``):
the residual axis does not tell the two apart well enough. Pass ``knots`` too to pool them."""

RESIDUAL_CUTS: tuple[float, ...] = (0.01,)
"""Default split of the galaxies' median ``model_residual``: below it a galaxy is close to its
catalogue model, above it it is not (on the adapted SDSS model's held-out injections the split at
0.005, 0.01 or 0.02 gave the same co-adds; ``reports/lumos/shared-error``)."""

SIGNIFICANCE = 2.0
"""A bin's measured ``rho`` is kept only above this many bootstrap standard errors
(:func:`pair_correlation_error`); below, it counts as 0. The estimate is noisy (about ± 0.1 from
50 galaxies), and a noise-level ``rho`` clipped at 0 only ever widens: on the adapted SDSS model's
held-out Sérsic galaxies, whose pairs correlate by 0.06-0.12 ± 0.1, it took the 5-exposure
co-adds' pull from 0.94 to 0.82 (``reports/lumos/shared-error/significance``)."""

BOOTSTRAP_DRAWS = 200
"""Resamples of the galaxies behind :func:`pair_correlation_error`."""

_MIN_VALUES = 10


@dataclasses.dataclass(frozen=True)
class PullSplit:
    """Shared and per-exposure parts of the pulls of a set of galaxies (units of the reported error).

    Attributes
    ----------
    n_galaxies : int
        Galaxies with at least two placements.
    placements : float
        Median placements per galaxy.
    s, tau : float
        Robust standard deviations of the per-exposure and the shared part; NaN with fewer than 10
        galaxies.
    rho : float
        ``tau^2 / (tau^2 + s^2)``.
    """

    n_galaxies: int
    placements: float
    s: float
    tau: float
    rho: float


def decompose_pulls(pull: ArrayLike, galaxy: ArrayLike) -> PullSplit:
    """Split pulls (one per galaxy and placement) into a shared and a per-placement part.

    Parameters
    ----------
    pull : array_like, shape (n,)
        ``(flux - true_flux) / flux_err`` of each placement; non-finite values are dropped.
    galaxy : array_like, shape (n,)
        Galaxy label of each placement; galaxies with fewer than two finite placements are dropped.

    Returns
    -------
    PullSplit
    """
    frame = pd.DataFrame({"pull": np.asarray(pull, dtype=np.float64), "galaxy": np.asarray(galaxy)})
    frame = frame[np.isfinite(frame["pull"])]
    size = frame.groupby("galaxy")["pull"].transform("size")
    frame = frame[size >= 2]
    if frame["galaxy"].nunique() < _MIN_VALUES:
        n = frame["galaxy"].nunique()
        return PullSplit(int(n), float(frame.groupby("galaxy").size().median()) if n else float("nan"),
                         float("nan"), float("nan"), float("nan"))
    grouped = frame.groupby("galaxy")["pull"]
    n_i = grouped.transform("size").to_numpy(np.float64)
    # deviations from the galaxy mean, rescaled to the variance of one placement
    deviation = (frame["pull"] - grouped.transform("mean")).to_numpy() * np.sqrt(n_i / (n_i - 1.0))
    within = sigma68(deviation) ** 2
    counts = grouped.size().to_numpy(np.float64)
    between = sigma68(grouped.mean().to_numpy()) ** 2
    tau2 = max(between - within * float(np.mean(1.0 / counts)), 0.0)
    return PullSplit(n_galaxies=int(counts.size), placements=float(np.median(counts)), s=float(np.sqrt(within)),
                     tau=float(np.sqrt(tau2)), rho=float(tau2 / (tau2 + within)) if tau2 + within > 0 else float("nan"))


@dataclasses.dataclass(frozen=True)
class SharedError:
    """Correlation of two exposures' errors per bin of measured per-exposure SNR, and optionally per
    bin of the source's model residual.

    Attributes
    ----------
    snr_edges : tuple of float
        Bin edges of ``flux / flux_err`` (k + 1 values, increasing; the last may be inf).
    rho : tuple of float
        Correlation per SNR bin over all galaxies (k values in [0, 1), non-decreasing): what a source
        whose model residual is unknown gets.
    n_galaxies : tuple of int
        Galaxies behind each bin's estimate (with a pair of placements that counts).
    source : str
        Where it was measured (free text: the injection, its frames, the population).
    residual_cuts : tuple of float
        Interior edges (increasing) of the source's median ``model_residual``
        (:func:`lumos_ops.photometry.optimal.model_residual`: how far its pixels depart from its
        catalogue model); empty: no residual axis.
    rho_by_residual : tuple of tuple of float
        ``len(residual_cuts) + 1`` rows of ``k`` values: ``rho`` per residual bin and SNR bin.
    """

    snr_edges: tuple[float, ...]
    rho: tuple[float, ...]
    n_galaxies: tuple[int, ...] = ()
    source: str = ""
    residual_cuts: tuple[float, ...] = ()
    rho_by_residual: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        edges = np.asarray(self.snr_edges, dtype=np.float64)
        rho = np.asarray(self.rho, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or rho.shape != (edges.size - 1,):
            raise LumosValueError(f"shared error: need k + 1 increasing SNR edges and k rho values; "
                                  f"got {edges.size} edges and {rho.size} values")
        cuts = np.asarray(self.residual_cuts, dtype=np.float64)
        table = np.asarray(self.rho_by_residual, dtype=np.float64).reshape(-1, rho.size) if self.rho_by_residual else \
            np.zeros((0, rho.size))
        if np.any(~np.isfinite(cuts)) or np.any(np.diff(cuts) <= 0) or (cuts.size and table.shape[0] != cuts.size + 1) \
                or (not cuts.size and table.shape[0]):
            raise LumosValueError(f"shared error: need increasing finite residual cuts and one rho row per residual "
                                  f"bin; got {cuts.size} cuts and {table.shape[0]} rows")
        if not (np.all((rho >= 0.0) & (rho < 1.0)) and np.all((table >= 0.0) & (table < 1.0))):
            raise LumosValueError(f"shared error: rho must lie in [0, 1); got {rho.tolist()} {table.tolist()}")
        object.__setattr__(self, "snr_edges", tuple(float(e) for e in edges))
        object.__setattr__(self, "rho", tuple(float(r) for r in rho))
        object.__setattr__(self, "n_galaxies", tuple(int(n) for n in self.n_galaxies))
        object.__setattr__(self, "residual_cuts", tuple(float(c) for c in cuts))
        object.__setattr__(self, "rho_by_residual", tuple(tuple(float(r) for r in row) for row in table))

    def _snr_bin(self, snr: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(np.asarray(self.snr_edges), snr, side="right") - 1, 0, len(self.rho) - 1)

    def rho_at(self, snr: ArrayLike, residual: ArrayLike | None = None) -> np.ndarray:
        """``rho`` of exposures measured at ``snr`` (``flux / flux_err``) of sources whose median
        model residual is ``residual`` (NaN or None: unknown, the all-galaxy value); outside the
        edges the end bins; 0 where ``snr`` is not finite."""
        snr = np.asarray(snr, dtype=np.float64)
        index = self._snr_bin(snr)
        value = np.asarray(self.rho)[index]
        if residual is not None and self.residual_cuts:
            residual = np.broadcast_to(np.asarray(residual, dtype=np.float64), snr.shape)
            row = np.searchsorted(np.asarray(self.residual_cuts), residual, side="right")
            known = np.isfinite(residual)
            table = np.asarray(self.rho_by_residual)
            value = np.where(known, table[np.where(known, row, 0), index], value)
        return np.where(np.isfinite(snr), value, 0.0)

    def rho_rows(self, snr: ArrayLike) -> np.ndarray:
        """``rho`` of every residual bin for exposures at ``snr``, shape (n, len(residual_cuts) + 1)."""
        snr = np.asarray(snr, dtype=np.float64)
        table = np.asarray(self.rho_by_residual).T[self._snr_bin(snr)]
        return np.where(np.isfinite(snr)[:, None], table, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (checkpoint metadata ``"shared_error"``; inf edges as null)."""
        out = {"snr_edges": [None if np.isinf(e) else e for e in self.snr_edges], "rho": list(self.rho),
               "n_galaxies": list(self.n_galaxies), "source": self.source}
        if self.residual_cuts:
            out["residual_cuts"] = list(self.residual_cuts)
            out["rho_by_residual"] = [list(row) for row in self.rho_by_residual]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SharedError:
        """Inverse of :meth:`to_dict`."""
        try:
            edges = [np.inf if e is None else float(e) for e in data["snr_edges"]]
            return cls(tuple(edges), tuple(float(r) for r in data["rho"]),
                       tuple(int(n) for n in data.get("n_galaxies", ())), str(data.get("source", "")),
                       tuple(float(c) for c in data.get("residual_cuts", ())),
                       tuple(tuple(float(r) for r in row) for row in data.get("rho_by_residual", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise LumosValueError(f"shared error: cannot read {dict(data)!r} ({exc})") from None


def _non_decreasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [value, weight, count]
    for v, w in zip(values, weights):
        blocks.append([float(v), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            total = w1 + w2
            blocks.append([(v1 * w1 + v2 * w2) / total if total > 0 else 0.5 * (v1 + v2), total, c1 + c2])
    return np.concatenate([np.full(c, v) for v, _, c in blocks])


def _pairs(pull: ArrayLike, galaxy: ArrayLike, frame: ArrayLike | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums and differences of the pulls of every pair of finite placements of a galaxy (only pairs
    on different frames when ``frame`` is given) and the galaxy code of each pair."""
    frame_values = np.zeros(np.shape(pull), dtype=np.int64) if frame is None else pd.factorize(np.asarray(frame))[0]
    data = pd.DataFrame({"pull": np.asarray(pull, dtype=np.float64), "galaxy": pd.factorize(np.asarray(galaxy))[0],
                         "frame": frame_values})
    data = data[np.isfinite(data["pull"])].reset_index(drop=True)
    data["row"] = np.arange(len(data))
    pairs = data.merge(data, on="galaxy", suffixes=("_1", "_2"))
    keep = pairs["row_1"].to_numpy() < pairs["row_2"].to_numpy()  # each unordered pair once
    if frame is not None:
        keep &= pairs["frame_1"].to_numpy() != pairs["frame_2"].to_numpy()
    first, second = pairs["pull_1"].to_numpy()[keep], pairs["pull_2"].to_numpy()[keep]
    return first + second, first - second, pairs["galaxy"].to_numpy()[keep]


def _rho_of(total: np.ndarray, difference: np.ndarray) -> float:
    """``(S - D) / (S + D)`` of pair sums and differences (:func:`pair_correlation`)."""
    s, d = sigma68(total) ** 2, sigma68(difference) ** 2
    return (s - d) / (s + d) if s + d > 0 else float("nan")


def pair_correlation(pull: ArrayLike, galaxy: ArrayLike, frame: ArrayLike | None = None) -> tuple[float, int, int]:
    """Robust correlation of the pulls of two placements of one galaxy.

    Over every pair of finite placements of a galaxy (only pairs on different frames when ``frame``
    is given: a real co-add combines different exposures, so an error shared by one frame's
    placements is not the galaxy's), ``rho = (S - D) / (S + D)`` with ``S`` and ``D`` the squared
    sigma68 of the pair sums and differences (exact for Gaussian pulls: ``2 (1 +- rho)`` times the
    variance).

    Returns
    -------
    rho, n_pairs, n_galaxies : float, int, int
        ``rho`` is NaN with fewer than 10 pairs.
    """
    total, difference, code = _pairs(pull, galaxy, frame)
    n_galaxies = int(np.unique(code).size)
    if total.size < _MIN_VALUES:
        return float("nan"), int(total.size), n_galaxies
    return float(_rho_of(total, difference)), int(total.size), n_galaxies


def pair_correlation_error(pull: ArrayLike, galaxy: ArrayLike, frame: ArrayLike | None = None, *,
                           n_boot: int = BOOTSTRAP_DRAWS, seed: int = 0) -> float:
    """Standard error of :func:`pair_correlation`'s ``rho``: the standard deviation of it over
    ``n_boot`` resamples of the galaxies with replacement (a galaxy's pairs share its placements,
    so galaxies, not pairs, are the independent draws); NaN with fewer than 10 pairs. Seeded: the
    same rows give the same error."""
    return _rho_error(*_pairs(pull, galaxy, frame), n_boot=n_boot, seed=seed)


def _rho_error(total: np.ndarray, difference: np.ndarray, code: np.ndarray, *, n_boot: int = BOOTSTRAP_DRAWS,
               seed: int = 0) -> float:
    """:func:`pair_correlation_error` of pairs given as :func:`_pairs` returns them."""
    if total.size < _MIN_VALUES:
        return float("nan")
    draws = block_resamples(code, total.size, np.random.default_rng(seed), n_boot)
    values = np.array([_rho_of(total[index], difference[index]) for index in draws])
    return float(np.nanstd(values))


def _by_snr(data: pd.DataFrame, edges: np.ndarray, min_galaxies: int, frames: bool,
            significance: float) -> tuple[np.ndarray, list[int]]:
    """Non-decreasing ``rho`` per SNR bin of the galaxies in ``data`` (columns ``pull``, ``galaxy``,
    ``frame``, ``gsnr``: the galaxy's median measured SNR) and the galaxies behind each bin. A bin's
    ``rho`` counts as 0 unless it exceeds ``significance`` times its bootstrap error."""
    rho, weight, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        part = data[(data["gsnr"] >= lo) & (data["gsnr"] < hi)]
        total, difference, code = _pairs(part["pull"], part["galaxy"], part["frame"] if frames else None)
        n_pairs, n_galaxies = int(total.size), int(np.unique(code).size)
        value = _rho_of(total, difference) if n_pairs >= _MIN_VALUES else float("nan")
        good = n_galaxies >= min_galaxies and np.isfinite(value)
        if good and value > 0 and significance > 0 and not value > significance * _rho_error(total, difference, code):
            value = 0.0
        rho.append(max(value, 0.0) if good else 0.0)
        weight.append(float(n_pairs) if good else 0.0)
        counts.append(n_galaxies)
    rho_arr, w = np.asarray(rho), np.asarray(weight)
    if w.sum() == 0:
        return np.zeros_like(rho_arr), counts
    # bins without an estimate take the nearest measured bin's value before the monotone fit
    known = np.flatnonzero(w > 0)
    nearest = known[np.abs(np.arange(rho_arr.size)[:, None] - known[None, :]).argmin(axis=1)]
    return np.clip(_non_decreasing(rho_arr[nearest], w), 0.0, 0.99), counts


def estimate_shared_error(
    flux: ArrayLike,
    flux_err: ArrayLike,
    true_flux: ArrayLike,
    galaxy: ArrayLike,
    *,
    frame: ArrayLike | None = None,
    residual: ArrayLike | None = None,
    residual_cuts: Sequence[float] = RESIDUAL_CUTS,
    snr_edges: Sequence[float] = SNR_EDGES,
    min_galaxies: int = 20,
    source: str = "",
    snr_err: ArrayLike | None = None,
    significance: float = SIGNIFICANCE,
) -> SharedError:
    """Measure ``rho`` per bin of measured SNR from an injection with several placements per galaxy.

    Parameters
    ----------
    flux, flux_err, true_flux : array_like, shape (n,)
        Measured flux, its calibrated error and the injected flux of each placement (e-/s).
    galaxy : array_like, shape (n,)
        Galaxy label of each placement.
    frame : array_like, shape (n,), keyword-only
        Frame (exposure) of each placement: only pairs on different frames count
        (:func:`pair_correlation`). None: every pair.
    residual : array_like, shape (n,), keyword-only
        ``model_residual`` of each placement (:func:`lumos_ops.photometry.optimal.model_residual`).
        Given, galaxies are also split by their median residual at ``residual_cuts``, and each
        split gets its own ``rho`` per SNR bin (``SharedError.rho_by_residual``; a split with
        fewer than ``min_galaxies`` galaxies takes the all-galaxy values).
    residual_cuts : sequence of float, keyword-only
        Interior edges of the galaxies' median residual.
    snr_edges : sequence of float, keyword-only
        Bins of the galaxy's median measured SNR (``flux / flux_err`` of its placements).
    min_galaxies : int, keyword-only
        A bin with fewer galaxies is pooled with its neighbour (the monotone fit gives it no weight).
    source : str, keyword-only
        Recorded in the result.
    snr_err : array_like, shape (n,), keyword-only
        Errors that set the measured SNR of the bins (default ``flux_err``): the errors before the
        survey's error floor (``flux_err_stat``), as :func:`with_shared_rho` looks the term up, so
        that the bins keep apart sources whose SNR the floor caps near ``1 / floor``. The pulls use
        ``flux_err``; a correlation does not depend on the scale of both errors.
    significance : float, keyword-only
        A bin's ``rho`` counts as 0 unless it exceeds this many of its bootstrap standard errors
        (:func:`pair_correlation_error`); 0 keeps every positive estimate.

    Returns
    -------
    SharedError
        ``max(rho, 0)`` (0 where not significant) per bin made non-decreasing in SNR (weighted by the pairs per bin); bins
        without an estimate take their neighbours' value, 0 when no bin has one.
    """
    data = pd.DataFrame({
        "flux": np.asarray(flux, dtype=np.float64), "err": np.asarray(flux_err, dtype=np.float64),
        "truth": np.asarray(true_flux, dtype=np.float64), "galaxy": np.asarray(galaxy),
        "frame": np.zeros(np.shape(flux), dtype=np.int64) if frame is None else np.asarray(frame),
        "residual": np.full(np.shape(flux), np.nan) if residual is None else np.asarray(residual, dtype=np.float64),
        "snr_err": np.asarray(flux_err if snr_err is None else snr_err, dtype=np.float64),
    })
    data = data[np.isfinite(data["flux"]) & (data["err"] > 0) & np.isfinite(data["truth"])]
    if data.empty:
        raise LumosValueError("shared error: no finite measurement to estimate it from")
    data["pull"] = (data["flux"] - data["truth"]) / data["err"]
    data["gsnr"] = data["galaxy"].map((data["flux"] / data["snr_err"]).groupby(data["galaxy"]).median())
    edges = np.asarray(snr_edges, dtype=np.float64)
    marginal, counts = _by_snr(data, edges, min_galaxies, frame is not None, significance)
    rows: list[np.ndarray] = []
    cuts = tuple(float(c) for c in residual_cuts) if residual is not None else ()
    if cuts:
        median = data["galaxy"].map(data.groupby("galaxy")["residual"].median()).to_numpy()
        split = np.searchsorted(np.asarray(cuts), median, side="right")
        for k in range(len(cuts) + 1):
            part = data[np.isfinite(median) & (split == k)]
            fitted, n_part = _by_snr(part, edges, min_galaxies, frame is not None, significance)
            rows.append(fitted if sum(n_part) >= min_galaxies else marginal)
    return SharedError(tuple(edges), tuple(marginal), tuple(counts), source, cuts, tuple(tuple(r) for r in rows))


def coadd_variance_factor(rho: ArrayLike, weight: ArrayLike, valid: ArrayLike | None = None) -> np.ndarray:
    """``c`` per source: the variance of an independent-exposure co-add times ``c`` is its true variance.

    Parameters
    ----------
    rho : array_like, shape (n, m)
        Shared-error correlation of each exposure (NaN counts as 0).
    weight : array_like, shape (n, m)
        Inverse variance of each exposure (any unit, the same within a row).
    valid : array_like of bool, shape (n, m), optional
        Exposures in the co-add.

    Returns
    -------
    ndarray, shape (n,)
        ``1 + [(sum sqrt(rho w))^2 - sum rho w] / sum w``; 1 for rows without a valid exposure.
    """
    r = np.clip(np.nan_to_num(np.asarray(rho, dtype=np.float64)), 0.0, 1.0)
    w = np.asarray(weight, dtype=np.float64)
    ok = np.isfinite(w) & (w > 0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    w = np.where(ok, w, 0.0)
    total = w.sum(axis=1)
    root = np.sqrt(r * w).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        extra = (root**2 - (r * w).sum(axis=1)) / total
    return np.where(total > 0, 1.0 + np.maximum(extra, 0.0), 1.0)


def shared_error_of(metadata: Mapping[str, Any]) -> SharedError | None:
    """The :class:`SharedError` recorded in a checkpoint's metadata, or None."""
    data = metadata.get("shared_error")
    return SharedError.from_dict(data) if data else None


def with_shared_rho(frame: pd.DataFrame, shared: SharedError | None) -> pd.DataFrame:
    """``frame`` with the columns the co-adds read; unchanged when ``shared`` is None.

    ``shared_rho`` is ``shared.rho_at(flux / flux_err_stat)`` (the all-galaxy value; ``flux_err``
    where the rows have no error floor, :mod:`lumos_ops.photometry.error_floor`). With a residual
    axis also ``shared_rho_bins`` (the row's ``rho`` of every residual bin, a list) and
    ``shared_residual_cuts``: the co-add picks the bin of the source's median ``model_residual``
    over its exposures (:func:`coadd_rho`), which ``frame`` must then hold.
    """
    if shared is None:
        return frame
    from lumos_ops.photometry.error_floor import statistical_error

    frame = frame.copy()
    flux = frame["flux"].to_numpy(np.float64)
    err = statistical_error(frame)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / err
    frame["shared_rho"] = shared.rho_at(snr)
    if shared.residual_cuts:
        if "model_residual" not in frame:
            raise LumosValueError("shared error with a residual axis: the rows need model_residual")
        frame["shared_rho_bins"] = list(shared.rho_rows(snr))
        frame["shared_residual_cuts"] = [list(shared.residual_cuts)] * len(frame)
    return frame


def coadd_rho(table: pd.DataFrame, group: ArrayLike) -> np.ndarray:
    """``rho`` of every row of a long table for a co-add of the rows sharing ``group``.

    Rows with ``shared_rho_bins`` and ``shared_residual_cuts`` (lists; :func:`with_shared_rho`)
    take the bin of their group's median ``model_residual``; the others, and groups without a
    finite residual, take ``shared_rho``; 0 where a row has neither. Where a row carries
    ``floor_rho`` (the survey's error floor, :mod:`lumos_ops.photometry.error_floor`) the larger
    of the two counts: both are the correlation of two exposures' errors.
    """
    n = len(table)
    marginal = table["shared_rho"].to_numpy(np.float64) if "shared_rho" in table else np.zeros(n)
    out = _recorded_rho(table, group, np.nan_to_num(marginal))
    if "floor_rho" in table:
        out = np.maximum(out, np.nan_to_num(table["floor_rho"].to_numpy(np.float64)))
    return out


def _recorded_rho(table: pd.DataFrame, group: ArrayLike, out: np.ndarray) -> np.ndarray:
    """:func:`coadd_rho` of the model's recorded term alone (``out``: the rows' ``shared_rho``)."""
    n = len(table)
    if n == 0 or "shared_rho_bins" not in table or "model_residual" not in table:
        return out
    residual = pd.Series(table["model_residual"].to_numpy(np.float64))
    median = residual.groupby(np.asarray(group)).transform("median").to_numpy()
    bins = table["shared_rho_bins"].to_numpy(object)
    cuts = table["shared_residual_cuts"].to_numpy(object)
    listed = np.array([isinstance(b, (list, tuple, np.ndarray)) and isinstance(c, (list, tuple, np.ndarray))
                       for b, c in zip(bins, cuts)], dtype=bool)
    rows = np.flatnonzero(listed & np.isfinite(median))
    lengths = np.array([len(bins[i]) for i in rows], dtype=np.int64)
    # one batched lookup per table shape (a model version's rows share it)
    for length in np.unique(lengths):
        these = rows[lengths == length]
        table_rho = np.array([bins[i] for i in these], dtype=np.float64).reshape(these.size, int(length))
        row_cuts = np.array([cuts[i] for i in these], dtype=np.float64).reshape(these.size, int(length) - 1)
        column = (median[these][:, None] >= row_cuts).sum(axis=1)
        out[these] = table_rho[np.arange(these.size), column]
    return out


def placement_residual(table: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray | None:
    """``model_residual`` of each of ``rows`` (LUMOS rows of an injection table): the rows' own
    column, else that of the ``optimal`` rows of the same population and placement in ``table``;
    None when neither is there."""
    if "model_residual" in rows and np.isfinite(rows["model_residual"].to_numpy(np.float64)).any():
        return rows["model_residual"].to_numpy(np.float64)
    if "model_residual" not in table or "placement" not in table:
        return None
    optimal = table[table["method"] == "optimal"].drop_duplicates(["population", "placement"])
    lookup = optimal.set_index(["population", "placement"])["model_residual"]
    keys = pd.MultiIndex.from_arrays([rows["population"], rows["placement"]])
    values = lookup.reindex(keys).to_numpy(np.float64)
    return values if np.isfinite(values).any() else None


def record_shared_error(
    model: str | os.PathLike[str],
    table: pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    populations: Sequence[str] | None = None,
    source: str = "",
) -> SharedError:
    """Estimate the shared error from the LUMOS rows of an injection table measured with ``model``
    and write ``model`` with it (metadata ``"shared_error"``) to ``out`` (may be ``model`` itself;
    the weights and their SHA-256 are unchanged; nothing is rewritten when the value is already there).

    Parameters
    ----------
    model : path-like
        The checkpoint that measured the table.
    table : DataFrame
        Injection table (``lumos inject``, ``lumos adapt``): ``method``, ``population``, ``galaxy``,
        ``flux``, ``flux_err``, ``true_flux`` (e-/s), several placements per galaxy, and ``frame``
        (only pairs of placements on different frames count); the ``model_residual`` of the
        ``optimal`` rows of the same placements gives the term its residual axis
        (:func:`placement_residual`).
    out : path-like
        Checkpoint to write.
    populations : sequence of str, keyword-only
        Populations to pool (default: all in the table); galaxies are told apart per population.
    source : str, keyword-only
        Recorded with the value (default: the populations).
    """
    from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint

    rows = table[table["method"] == "lumos"]
    if populations is not None:
        missing = sorted(set(populations) - set(rows["population"].unique()))
        if missing:
            raise LumosValueError(f"shared error: the injection table has no LUMOS rows of population(s) {missing}; "
                                  f"it has {sorted(rows['population'].unique())}")
        rows = rows[rows["population"].isin(list(populations))]
    if rows.empty:
        raise LumosValueError("shared error: the injection table has no LUMOS rows (run it with the lumos method)")
    pooled = sorted(rows["population"].unique())
    from lumos_ops.photometry.error_floor import statistical_error

    shared = estimate_shared_error(rows["flux"], rows["flux_err"], rows["true_flux"],
                                   rows["population"].astype(str) + ":" + rows["galaxy"].astype(str),
                                   frame=rows["frame"] if "frame" in rows else None,
                                   residual=placement_residual(table, rows),
                                   source=source or f"injection ({', '.join(pooled)})",
                                   snr_err=statistical_error(rows))
    loaded = load_checkpoint(model, device="cpu")
    if os.fspath(out) != os.fspath(model) or loaded.metadata.get("shared_error") != shared.to_dict():
        save_checkpoint(out, loaded.net, arch=loaded.arch, normalization=loaded.normalization,
                        metadata={**loaded.metadata, "shared_error": shared.to_dict()})
    return shared
