"""Repeated observations of the same galaxy in the same band, from any FITS exposures + catalogue.

Used by unsupervised transfer learning (§4.3, eq. 11) and by the D-statistic validation (eq. 19).
Stamps and models come from :func:`lumos_ops.measure.prepare_targets`, so simulated and real
exposures are handled identically.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.lumos.config import Normalization
from lumos_ops.lumos.preprocess import NetInputs, prepare_inputs

__all__ = ["Observations", "collect_observations", "make_pairs"]

_REJECT = Flag.OFF_IMAGE | Flag.EDGE | Flag.MASKED


@dataclasses.dataclass(frozen=True)
class Observations:
    """Normalised inputs of every usable (target, exposure) observation.

    Attributes
    ----------
    inputs : NetInputs
        n observations.
    table : DataFrame
        One row per observation: ``ref_id``, ``band``, ``exposure`` (path), ``zero_point``,
        ``i_auto``, ``x``, ``y``.
    """

    inputs: NetInputs
    table: pd.DataFrame


def collect_observations(
    exposure_paths: Sequence[str | os.PathLike[str]],
    catalog: pd.DataFrame,
    norm: Normalization,
    *,
    stamp_size: int,
    default_zero_point: float | None = None,
    model=None,
) -> Observations:
    """Cut, render and normalise every on-image, unflagged target of every exposure.

    Parameters
    ----------
    exposure_paths : sequence of path-like
        FITS exposures (header contract of ``shared/GUIDE.md``).
    catalog : DataFrame
        External catalogue.
    norm : Normalization
        Of the model that will use the inputs.
    stamp_size : int, keyword-only
    default_zero_point : float or None, keyword-only
        Used for exposures without a ``ZP`` header; None makes a missing ``ZP`` an error (pairs
        must be calibrated before they are compared).
    model : LoadedModel or None, keyword-only
        The model the inputs are for: its band x epoch rows (:meth:`LoadedModel.exposure_row`).
        None: the row of a new model for the exposure's survey (``Exposure.band_epoch``).

    Exposures are read with the :func:`~lumos_ops.survey.current_survey`.
    """
    from lumos_ops.io.exposure import read_exposure
    from lumos_ops.measure import prepare_targets

    parts_inputs: list[NetInputs] = []
    parts_table: list[pd.DataFrame] = []
    for path in exposure_paths:
        exposure = read_exposure(path)
        zp = exposure.zero_point if exposure.zero_point is not None else default_zero_point
        if zp is None:
            raise LumosValueError(f"{path}: no ZP header; pairs need calibrated exposures (give a default zero point)")
        ctx = prepare_targets(exposure, catalog, stamp_size=stamp_size)
        keep = np.flatnonzero((ctx.base_flags & _REJECT) == 0)
        if keep.size == 0:
            continue
        i_auto = ctx.catalog["i_auto"].to_numpy(np.float64)[keep]
        parts_inputs.append(
            prepare_inputs(
                ctx.stamps.data[keep], ctx.models[keep], i_auto, ctx.x[keep], ctx.y[keep],
                np.full(keep.size, _row(exposure, model), dtype=np.int64), norm,
                background=None if (b := ctx.lumos_background(norm)) is None else b[keep],
            )
        )
        parts_table.append(pd.DataFrame({
            "ref_id": ctx.catalog["ref_id"].to_numpy(np.int64)[keep],
            "band": exposure.band,
            "exposure": str(path),
            "zero_point": float(zp),
            "i_auto": i_auto,
            "x": ctx.x[keep],
            "y": ctx.y[keep],
        }))
    if not parts_inputs:
        raise LumosValueError("no usable observation in the given exposures (all targets off-image, on edges or masked)")
    inputs = NetInputs(
        images=np.concatenate([p.images for p in parts_inputs]),
        scalars=np.concatenate([p.scalars for p in parts_inputs]),
        band_epoch=np.concatenate([p.band_epoch for p in parts_inputs]),
        n_padded=np.concatenate([p.n_padded for p in parts_inputs]),
    )
    return Observations(inputs=inputs, table=pd.concat(parts_table, ignore_index=True))


def _row(exposure, model) -> int:
    if model is None:
        return exposure.band_epoch
    return model.exposure_row(exposure.band, exposure.epoch, exposure.wavelength_nm)[0]


def make_pairs(table: pd.DataFrame, *, max_pairs: int | None = None, seed: int = 0) -> np.ndarray:
    """Index pairs (i, j), i < j, of observations of the same ``ref_id`` and ``band`` on different exposures.

    Returns
    -------
    ndarray of int64, shape (m, 2)
        At most ``max_pairs`` pairs, drawn at random (seeded) when there are more.
    """
    pairs = []
    for _, group in table.groupby(["ref_id", "band"], sort=True):
        idx = group.index.to_numpy()
        exps = group["exposure"].to_numpy()
        for a in range(idx.size):
            for b in range(a + 1, idx.size):
                if exps[a] != exps[b]:
                    pairs.append((idx[a], idx[b]))
    out = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if max_pairs is not None and out.shape[0] > max_pairs:
        rng = np.random.default_rng(seed)
        out = out[np.sort(rng.choice(out.shape[0], size=max_pairs, replace=False))]
    return out
