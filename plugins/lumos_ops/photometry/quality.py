"""Quality flags shared by the classical estimators (``lumos_ops.flags.Flag`` bits)."""

from __future__ import annotations

import numpy as np

from lumos_ops.flags import Flag
from lumos_ops.photometry.inputs import PhotometryInputs

__all__ = ["footprint_flags", "model_footprint", "bounding_box"]

_FOOTPRINT_BLOCK = 64
"""Models whose bright pixels are selected together (:func:`model_footprint`)."""


def bounding_box(occupied: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns of the smallest box holding every True pixel of a 2-D mask (empty slices if none)."""
    rows = np.flatnonzero(occupied.any(axis=1))
    cols = np.flatnonzero(occupied.any(axis=0))
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


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
    out = np.zeros(model.shape, dtype=bool)
    if n == 0:
        return out
    # Zero pixels (the padding around rendered models) never enter the footprint and add nothing
    # to the cumulative light: the work is done on the box holding every non-zero pixel.
    rows, cols = bounding_box((model != 0).any(axis=0))
    for lo in range(0, n, _FOOTPRINT_BLOCK):  # a block's arrays are reused from the heap, not page-faulted
        block = slice(lo, lo + _FOOTPRINT_BLOCK)
        out[block, rows, cols] = _bright_pixels(model[block, rows, cols], light)
    return out


def _bright_pixels(box: np.ndarray, light: float) -> np.ndarray:
    """:func:`model_footprint` of the models cropped to a box, shape (m, H, W)."""
    m = box.shape[0]
    flat = box.reshape(m, -1)
    if not np.isfinite(flat).all():
        flat = np.nan_to_num(flat, nan=0.0)
    # float64 copies are exact: their running sums are those of the float32 values in float64
    descending = np.sort(flat, axis=1)[:, ::-1].astype(np.float64)
    cum = np.cumsum(descending, axis=1)
    total = cum[:, -1:].copy() if cum.shape[1] else np.zeros((m, 1))
    before = np.subtract(cum, descending, out=cum)  # the light of the brighter pixels
    needed = np.maximum((before < light * total).sum(axis=1), 1)
    threshold = descending[np.arange(m), needed - 1] if cum.shape[1] else np.zeros(m)
    keep = (flat >= threshold[:, None].astype(flat.dtype)) & (flat > 0)
    return keep.reshape(box.shape)


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
    n = inputs.n
    flags = np.zeros(n, dtype=np.int64)
    # Only the footprint pixels can raise a flag: they are gathered by flat index.
    pixels = np.flatnonzero(footprint)
    target = pixels // max(footprint.shape[1] * footprint.shape[2], 1)
    data = np.take(inputs.data, pixels)
    off_chip = np.zeros(pixels.size, dtype=bool) if inputs.on_chip is None else ~np.take(inputs.on_chip, pixels)
    nan = np.isnan(data)
    flags[_any_per_target(target[off_chip], n)] |= Flag.EDGE
    flags[_any_per_target(target[nan & ~off_chip], n)] |= Flag.MASKED
    flags[_any_per_target(target[data >= inputs.saturate[target]], n)] |= Flag.SATURATED
    flags[inputs.background.incomplete] |= Flag.ANNULUS_INCOMPLETE
    flags[~inputs.measurable] = Flag.OFF_IMAGE
    return flags


def _any_per_target(targets: np.ndarray, n: int) -> np.ndarray:
    """Boolean (n,): True for the targets listed in ``targets`` (int, any order, repeats allowed)."""
    hit = np.zeros(n, dtype=bool)
    hit[targets] = True
    return hit
