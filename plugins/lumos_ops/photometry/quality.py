"""Quality flags shared by the classical estimators (``lumos_ops.flags.Flag`` bits)."""

from __future__ import annotations

import numpy as np

from lumos_ops.flags import Flag
from lumos_ops.photometry.inputs import PhotometryInputs

__all__ = ["footprint_flags", "model_footprint"]


def model_footprint(model: np.ndarray, *, light: float = 0.99) -> np.ndarray:
    """Brightest model pixels that together hold ``light`` of each model's flux on the grid.

    Pixels equal to the threshold value are all kept (ties).

    Parameters
    ----------
    model : ndarray, shape (n, S, S)
        Non-negative model images.
    light : float, keyword-only
        Fraction of the (on-grid) model flux to cover.

    Returns
    -------
    ndarray of bool, shape (n, S, S)
    """
    n = model.shape[0]
    if n == 0:
        return np.zeros(model.shape, dtype=bool)
    flat = np.nan_to_num(model.reshape(n, -1), nan=0.0)
    descending = np.sort(flat, axis=1)[:, ::-1].astype(np.float64)
    cum = np.cumsum(descending, axis=1)
    needed = np.maximum(((cum - descending) < light * cum[:, -1:]).sum(axis=1), 1)
    threshold = descending[np.arange(n), needed - 1]
    keep = (flat >= threshold[:, None].astype(flat.dtype)) & (flat > 0)
    return keep.reshape(model.shape)


def footprint_flags(inputs: PhotometryInputs, footprint: np.ndarray) -> np.ndarray:
    """EDGE, MASKED, SATURATED, ANNULUS_INCOMPLETE and OFF_IMAGE bits for a measurement footprint.

    Parameters
    ----------
    inputs : PhotometryInputs
        Cutouts of ``n`` targets (the background is computed if it was not yet).
    footprint : ndarray of bool, shape (n, S, S)
        Pixels the measurement relies on (aperture pixels, or the model's bright pixels).

    Returns
    -------
    ndarray of int64, shape (n,)
        Targets off the image get OFF_IMAGE alone.
    """
    off_chip = inputs.off_chip_mask()
    nan = np.isnan(inputs.data)
    flags = np.zeros(inputs.n, dtype=np.int64)
    flags[(footprint & off_chip).any(axis=(1, 2))] |= Flag.EDGE
    flags[(footprint & nan & ~off_chip).any(axis=(1, 2))] |= Flag.MASKED
    saturated = inputs.data >= inputs.saturate[:, None, None]
    flags[(footprint & saturated).any(axis=(1, 2))] |= Flag.SATURATED
    flags[inputs.background.incomplete] |= Flag.ANNULUS_INCOMPLETE
    flags[~inputs.measurable] = Flag.OFF_IMAGE
    return flags
