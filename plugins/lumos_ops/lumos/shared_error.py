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
from lumos_ops.stats import sigma68

__all__ = ["SNR_EDGES", "PullSplit", "SharedError", "decompose_pulls", "pair_correlation", "estimate_shared_error",
           "coadd_variance_factor", "shared_error_of", "with_shared_rho", "record_shared_error"]

SNR_EDGES: tuple[float, ...] = (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, np.inf)
"""Default bins of measured per-exposure SNR for :func:`estimate_shared_error`."""

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
    """Correlation of two exposures' errors per bin of measured per-exposure SNR.

    Attributes
    ----------
    snr_edges : tuple of float
        Bin edges of ``flux / flux_err`` (k + 1 values, increasing; the last may be inf).
    rho : tuple of float
        Correlation per bin (k values in [0, 1), non-decreasing).
    n_galaxies : tuple of int
        Galaxies behind each bin's estimate (with a pair of placements that counts).
    source : str
        Where it was measured (free text: the injection, its frames, the population).
    """

    snr_edges: tuple[float, ...]
    rho: tuple[float, ...]
    n_galaxies: tuple[int, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        edges = np.asarray(self.snr_edges, dtype=np.float64)
        rho = np.asarray(self.rho, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or rho.shape != (edges.size - 1,):
            raise LumosValueError(f"shared error: need k + 1 increasing SNR edges and k rho values; "
                                  f"got {edges.size} edges and {rho.size} values")
        if not np.all((rho >= 0.0) & (rho < 1.0)):
            raise LumosValueError(f"shared error: rho must lie in [0, 1); got {rho.tolist()}")
        object.__setattr__(self, "snr_edges", tuple(float(e) for e in edges))
        object.__setattr__(self, "rho", tuple(float(r) for r in rho))
        object.__setattr__(self, "n_galaxies", tuple(int(n) for n in self.n_galaxies))

    def rho_at(self, snr: ArrayLike) -> np.ndarray:
        """``rho`` of exposures measured at ``snr`` (``flux / flux_err``); outside the edges the end
        bins; 0 where ``snr`` is not finite."""
        snr = np.asarray(snr, dtype=np.float64)
        index = np.clip(np.searchsorted(np.asarray(self.snr_edges), snr, side="right") - 1, 0, len(self.rho) - 1)
        return np.where(np.isfinite(snr), np.asarray(self.rho)[index], 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (checkpoint metadata ``"shared_error"``; inf edges as null)."""
        return {"snr_edges": [None if np.isinf(e) else e for e in self.snr_edges], "rho": list(self.rho),
                "n_galaxies": list(self.n_galaxies), "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SharedError:
        """Inverse of :meth:`to_dict`."""
        try:
            edges = [np.inf if e is None else float(e) for e in data["snr_edges"]]
            return cls(tuple(edges), tuple(float(r) for r in data["rho"]),
                       tuple(int(n) for n in data.get("n_galaxies", ())), str(data.get("source", "")))
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
    frame_values = np.zeros(np.shape(pull), dtype=np.int64) if frame is None else pd.factorize(np.asarray(frame))[0]
    data = pd.DataFrame({"pull": np.asarray(pull, dtype=np.float64), "galaxy": np.asarray(galaxy),
                         "frame": frame_values})
    data = data[np.isfinite(data["pull"])].reset_index(drop=True)
    data["row"] = np.arange(len(data))
    pairs = data.merge(data, on="galaxy", suffixes=("_1", "_2"))
    keep = pairs["row_1"].to_numpy() < pairs["row_2"].to_numpy()  # each unordered pair once
    if frame is not None:
        keep &= pairs["frame_1"].to_numpy() != pairs["frame_2"].to_numpy()
    first, second = pairs["pull_1"].to_numpy()[keep], pairs["pull_2"].to_numpy()[keep]
    n_galaxies = int(pd.unique(pairs["galaxy"].to_numpy()[keep]).size)
    if first.size < _MIN_VALUES:
        return float("nan"), int(first.size), n_galaxies
    total = sigma68(first + second) ** 2
    difference = sigma68(first - second) ** 2
    rho = (total - difference) / (total + difference) if total + difference > 0 else float("nan")
    return float(rho), int(first.size), n_galaxies


def estimate_shared_error(
    flux: ArrayLike,
    flux_err: ArrayLike,
    true_flux: ArrayLike,
    galaxy: ArrayLike,
    *,
    frame: ArrayLike | None = None,
    snr_edges: Sequence[float] = SNR_EDGES,
    min_galaxies: int = 20,
    source: str = "",
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
    snr_edges : sequence of float, keyword-only
        Bins of the galaxy's median measured SNR (``flux / flux_err`` of its placements).
    min_galaxies : int, keyword-only
        A bin with fewer galaxies is pooled with its neighbour (the monotone fit gives it no weight).
    source : str, keyword-only
        Recorded in the result.

    Returns
    -------
    SharedError
        ``max(rho, 0)`` per bin made non-decreasing in SNR (weighted by the pairs per bin); bins
        without an estimate take their neighbours' value, 0 when no bin has one.
    """
    data = pd.DataFrame({
        "flux": np.asarray(flux, dtype=np.float64), "err": np.asarray(flux_err, dtype=np.float64),
        "truth": np.asarray(true_flux, dtype=np.float64), "galaxy": np.asarray(galaxy),
        "frame": np.zeros(np.shape(flux), dtype=np.int64) if frame is None else np.asarray(frame),
    })
    data = data[np.isfinite(data["flux"]) & (data["err"] > 0) & np.isfinite(data["truth"])]
    if data.empty:
        raise LumosValueError("shared error: no finite measurement to estimate it from")
    data["pull"] = (data["flux"] - data["truth"]) / data["err"]
    snr = (data["flux"] / data["err"]).groupby(data["galaxy"]).median()
    edges = np.asarray(snr_edges, dtype=np.float64)
    rho, weight, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        part = data[data["galaxy"].isin(snr.index[(snr >= lo) & (snr < hi)])]
        value, n_pairs, n_galaxies = pair_correlation(part["pull"], part["galaxy"],
                                                      None if frame is None else part["frame"])
        good = n_galaxies >= min_galaxies and np.isfinite(value)
        rho.append(max(value, 0.0) if good else 0.0)
        weight.append(float(n_pairs) if good else 0.0)
        counts.append(n_galaxies)
    rho_arr, w = np.asarray(rho), np.asarray(weight)
    if w.sum() == 0:
        fitted = np.zeros_like(rho_arr)
    else:
        # bins without an estimate take the nearest measured bin's value before the monotone fit
        known = np.flatnonzero(w > 0)
        nearest = known[np.abs(np.arange(rho_arr.size)[:, None] - known[None, :]).argmin(axis=1)]
        fitted = _non_decreasing(rho_arr[nearest], w)
    return SharedError(tuple(edges), tuple(np.clip(fitted, 0.0, 0.99)), tuple(counts), source)


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
    """``frame`` with column ``shared_rho`` (``shared.rho_at(flux / flux_err)``); unchanged when None."""
    if shared is None:
        return frame
    frame = frame.copy()
    flux = frame["flux"].to_numpy(np.float64)
    err = frame["flux_err"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["shared_rho"] = shared.rho_at(flux / err)
    return frame


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
        (only pairs of placements on different frames count).
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
    shared = estimate_shared_error(rows["flux"], rows["flux_err"], rows["true_flux"],
                                   rows["population"].astype(str) + ":" + rows["galaxy"].astype(str),
                                   frame=rows["frame"] if "frame" in rows else None,
                                   source=source or f"injection ({', '.join(pooled)})")
    loaded = load_checkpoint(model, device="cpu")
    if os.fspath(out) != os.fspath(model) or loaded.metadata.get("shared_error") != shared.to_dict():
        save_checkpoint(out, loaded.net, arch=loaded.arch, normalization=loaded.normalization,
                        metadata={**loaded.metadata, "shared_error": shared.to_dict()})
    return shared
