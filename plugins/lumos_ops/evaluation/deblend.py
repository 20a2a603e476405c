"""The deblending test of the paper's Figs. 8-9: an i = 22 target with an i = 20 neighbour at 0-20 px.

:func:`make_deblend_set` writes TEAHUPOO stamps in which every target has the shape of a catalogue
galaxy rescaled to ``target_mag`` and either that galaxy's own SED or, as in the paper's test (a
TEAHUPOO target), a band flux drawn independently of the galaxy (``target_flux``); every stamp gets
one neighbour (another galaxy with its own SED, rescaled to ``neighbour_mag``) at a distance drawn
uniformly in ``distance`` pixels; with
``neighbours=False`` it writes the same stamps (same seed: targets, backgrounds, positions) without
the neighbour, the isolated control. :func:`bias_by_distance` gives bias and sigma68 of
``(f - f0) / f0`` per distance bin and method; :func:`excess_by_distance` the median of the paired
difference ``(f_with - f_without) / f0``, the part of the bias that the neighbour causes (at low SNR
the isolated bias is the estimator's own pull towards its prior).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError

__all__ = ["make_deblend_set", "bias_by_distance", "excess_by_distance", "rescale_catalog", "DISTANCE_EDGES",
           "TARGET_FLUX_FIELDS"]

DISTANCE_EDGES: tuple[float, ...] = tuple(2.5 * k for k in range(9))
"""Default neighbour-distance bin edges (pixels): 0, 2.5, ..., 20, so that the 5 px of the paper's Fig. 9 is an edge."""


TARGET_FLUX_FIELDS = ("flux_source", "flux_population", "flux_count_slope", "population_i_range", "flux_range")
"""``TeahupooConfig`` fields that decide the band flux of a stamp's target."""


def rescale_catalog(catalog: pd.DataFrame, mag: float) -> pd.DataFrame:
    """Copy of ``catalog`` with every galaxy moved to ``i_auto = mag`` (AB), colours kept.

    The ``flux_nJy_<band>`` columns are multiplied by ``10**(-0.4 * (mag - i_auto))``.
    """
    out = catalog.copy()
    factor = 10.0 ** (-0.4 * (mag - out["i_auto"].to_numpy(np.float64)))
    for column in [c for c in out.columns if c.startswith("flux_nJy_")]:
        out[column] = out[column].to_numpy(np.float64) * factor
    out["i_auto"] = float(mag)
    return out


def make_deblend_set(
    exposure_paths: Sequence[str | os.PathLike[str]],
    catalog: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    n_stamps: int = 4000,
    seed: int = 5,
    target_mag: float = 22.0,
    neighbour_mag: float = 20.0,
    distance: tuple[float, float] = (0.0, 20.0),
    stamp_size: int = 96,
    neighbours: bool = True,
    target_flux: Mapping[str, Any] | None = None,
) -> Path:
    """Write the Fig. 8-9 stamp set; returns its directory.

    Parameters
    ----------
    exposure_paths : sequence of path-like
        Survey exposures whose backgrounds (scattered light, neighbours, cosmic rays) are used.
    catalog : pandas.DataFrame
        Shapes and SEDs to draw targets and neighbours from.
    out_dir : path-like
    n_stamps, seed : int, keyword-only
    target_mag, neighbour_mag : float, keyword-only
        i-band AB magnitudes of target and neighbour (paper: 22 and 20).
    distance : (float, float), keyword-only
        Range (pixels) of the target-neighbour distance.
    stamp_size : int, keyword-only
        >= 93 so that the aperture baseline has its background annulus.
    neighbours : bool, keyword-only
        False: the isolated control (the neighbour's position is still drawn and recorded).
    target_flux : mapping or None, keyword-only
        ``TeahupooConfig`` flux fields (``flux_source``, ``flux_population``, ``flux_count_slope``,
        ``population_i_range``, ``flux_range``) for the targets' band fluxes. None (default): each
        target's own catalogue SED at ``target_mag``. ``{"flux_source": "band_distribution", ...}``:
        TEAHUPOO targets as in the paper's test (shape at ``target_mag``, band flux drawn from the
        band's flux distribution independently of the galaxy). Neighbours always keep their own SED.
    """
    from lumos_ops.sim import TeahupooConfig, generate_training_set

    flux = dict(target_flux) if target_flux is not None else {"flux_source": "auto"}
    unknown = set(flux) - set(TARGET_FLUX_FIELDS)
    if unknown:
        raise LumosValueError(f"target_flux: unknown fields {sorted(unknown)}; use {list(TARGET_FLUX_FIELDS)}")
    config = TeahupooConfig(
        n_stamps=n_stamps, stamp_size=stamp_size, seed=seed,
        neighbour_fraction=1.0 if neighbours else 0.0,
        neighbour_distance=distance, **flux,
    )
    generate_training_set(config, exposure_paths, rescale_catalog(catalog, target_mag), out_dir,
                          neighbour_catalog=rescale_catalog(catalog, neighbour_mag))
    return Path(out_dir)


def bias_by_distance(
    fluxes: Mapping[str, np.ndarray], truth: np.ndarray, distance: np.ndarray, *, edges: Sequence[float] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Bias (median) and sigma68 of ``(f - f0) / f0`` per neighbour-distance bin (pixels).

    Parameters
    ----------
    fluxes : mapping of str to array, each shape (n,)
        Measured flux per method (e-/s).
    truth, distance : array_like, shape (n,)
        True target flux (e-/s) and target-neighbour distance (pixels).
    edges : sequence of float, keyword-only
        Bin edges (default :data:`DISTANCE_EDGES`).

    Returns
    -------
    dict
        ``{method: [{"d_lo", "d_hi", "n", "bias", "sigma68"}, ...]}`` (None where a bin is empty).
    """
    from lumos_ops.stats import bias, relative_error, sigma68

    edges = np.asarray(DISTANCE_EDGES if edges is None else edges, dtype=np.float64)
    if edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise LumosValueError(f"edges must be at least two increasing distances (pixels), got {list(edges)}")
    truth = np.asarray(truth, dtype=np.float64)
    distance = np.asarray(distance, dtype=np.float64)
    out: dict[str, list[dict[str, Any]]] = {}
    for method, flux in fluxes.items():
        rel = relative_error(np.asarray(flux, dtype=np.float64), truth)
        rows = []
        for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            last = k == edges.size - 2
            sel = (distance >= lo) & ((distance <= hi) if last else (distance < hi))
            b, s = bias(rel[sel]), sigma68(rel[sel])
            rows.append({"d_lo": float(lo), "d_hi": float(hi), "n": int(sel.sum()),
                         "bias": None if not np.isfinite(b) else b, "sigma68": None if not np.isfinite(s) else s})
        out[method] = rows
    return out


def excess_by_distance(
    with_neighbour: Mapping[str, np.ndarray],
    isolated: Mapping[str, np.ndarray],
    truth: np.ndarray,
    distance: np.ndarray,
    *,
    edges: Sequence[float] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Bias caused by the neighbour: median of ``(f_with - f_without) / f0`` per distance bin.

    Parameters
    ----------
    with_neighbour, isolated : mapping of str to array, each shape (n,)
        Flux per method (e-/s) of the same targets with and without the neighbour.
    truth, distance : array_like, shape (n,)
        True target flux (e-/s) and the distance (pixels) the neighbour has in the first set.
    edges : sequence of float, keyword-only
        Bin edges (default :data:`DISTANCE_EDGES`).

    Returns
    -------
    dict
        As :func:`bias_by_distance`; ``sigma68`` is that of the paired difference.
    """
    truth = np.asarray(truth, dtype=np.float64)
    paired = {}
    for method, flux in with_neighbour.items():
        if method in isolated:
            paired[method] = truth + np.asarray(flux, np.float64) - np.asarray(isolated[method], np.float64)
    return bias_by_distance(paired, truth, distance, edges=edges)
