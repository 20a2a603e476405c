"""No-data regions that a frame fills with one number instead of NaN (a mosaic's zero border, a
chip gap written as 0): found by :func:`fill_regions`, made NaN by the readers."""

from __future__ import annotations

import numpy as np

__all__ = ["FILL_MIN_AREA_PX", "fill_regions", "zero_fill"]

FILL_MIN_AREA_PX: int = 1000
"""Fewest pixels of one connected region of one exact value that :func:`fill_regions` takes for a
fill (no data) rather than sky."""


def fill_regions(data: np.ndarray, *, min_area: int = FILL_MIN_AREA_PX) -> np.ndarray:
    """Pixels of a frame that hold no data but a fill value: bool, shape of ``data``.

    Reprojected frames and mosaics (SWarp, drizzle) often fill what no exposure covered with one
    number, most often 0, where others write NaN. Such a region is a 4-connected block of at least
    ``min_area`` pixels of one exact value. In a frame of continuous values (floats) noise never
    repeats a value over a block, so any such block is fill. In a quantised frame (integers, or
    integers times ``BSCALE``) the noise does repeat values, and a block is fill only if its value
    lies more than 5 robust standard deviations from the frame's median (a zero border around raw
    counts on a pedestal). The frame's own NaN are not counted.
    """
    from scipy import ndimage

    from lumos_ops.noise_calibration import robust_sigma

    data = np.asarray(data)
    finite = np.isfinite(data)
    out = np.zeros(data.shape, dtype=bool)
    if data.ndim != 2 or finite.sum() < 2 * min_area:
        return out
    interior = finite.copy()  # pixels equal to each of their neighbours: a block's inside holds one value
    right = data[:, 1:] == data[:, :-1]
    down = data[1:, :] == data[:-1, :]
    interior[:, 1:] &= right
    interior[:, :-1] &= right
    interior[1:, :] &= down
    interior[:-1, :] &= down
    if interior.sum() < min_area:
        return out
    labels, n = ndimage.label(interior)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.flatnonzero(area[1:] >= min_area) + 1
    if keep.size == 0:
        return out
    value = {int(k): float(data[labels == k][0]) for k in keep}
    if sum(area[k] for k in keep) >= finite.sum() - min_area:  # nothing but one value: a blank frame, not a fill
        return out
    values = data[finite & ~np.isin(labels, keep)]  # the rest of the frame: a large fill is not its noise
    sample = values[:: max(1, values.size // 20_000)]
    if np.unique(sample).size < 0.5 * sample.size:  # quantised: the noise repeats values too
        med, sig = robust_sigma(values)
        keep = np.array([k for k in keep if abs(value[int(k)] - med) > 5.0 * sig])
    for v in sorted({value[int(k)] for k in keep}):
        block = np.isin(labels, [k for k in keep if value[int(k)] == v])
        out |= ndimage.binary_dilation(block) & (data == v)  # the block's edge pixels hold the value too
    return out


def zero_fill(data: np.ndarray) -> np.ndarray:
    """The :func:`fill_regions` of ``data`` whose value is exactly 0 (bool, shape of ``data``); all
    False at once when the frame has fewer than :data:`FILL_MIN_AREA_PX` zeros. Zero is the fill
    that looks like sky: any other number far from the sky is flagged by the methods, and
    saturation plateaus are never 0."""
    zeros = np.asarray(data) == 0
    if np.count_nonzero(zeros) < FILL_MIN_AREA_PX:
        return np.zeros(zeros.shape, dtype=bool)
    return fill_regions(data) & zeros
