"""Sources detected once on a whole frame: the pixels the annulus background leaves out.

The ``"masked_mean"`` background (:mod:`lumos_ops.photometry.background`) leaves the pixels of
detected sources out of each target's annulus. Detecting them in every 94 px cutout repeats the
work where cutouts overlap (2,500 of them hold 2.7 times the pixels of a 4096 x 2048 CCD), so a
frame is searched once, with the same recipe (:func:`detect_frame_sources`): the frame smoothed by
a Gaussian of :data:`~lumos_ops.photometry.background.DETECT_SMOOTH_PX`, pixels above the local
level of the smoothed sky by :data:`~lumos_ops.photometry.background.DETECT_SIGMA` times its local
robust noise (no less than the white-noise value of the pixel noise), groups of at least
:data:`~lumos_ops.photometry.background.DETECT_MIN_AREA` 4-connected pixels, grown by
:data:`~lumos_ops.photometry.background.DETECT_GROW_PX` (an octagon), in
:data:`~lumos_ops.photometry.background.DETECT_PASSES` passes, each after the first measuring the
level and noise without the sources already found. "Local" is per block of ``box`` px (median
and 1.4826 MAD), bilinearly interpolated between block centres, where the cutout recipe used the
annulus of each target. The blank-sky error calibration (:mod:`lumos_ops.noise_calibration`)
chooses its positions away from the same detections. The smoothing is scipy's Gaussian filter,
its column pass done in row blocks (:func:`lumos_ops.photometry.smoothing.gaussian_smooth`, the
same numbers); the groups are found from the runs of the rows
(:func:`lumos_ops.photometry.components.large_groups`, ``ndimage.label``'s groups).
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
from scipy import ndimage

from lumos_ops.photometry.background import (
    DETECT_GROW_PX,
    DETECT_MIN_AREA,
    DETECT_PASSES,
    DETECT_SIGMA,
    DETECT_SMOOTH_PX,
    grow_octagon,
    sorted_median_and_mad,
    white_smoothing_gain,
)
from lumos_ops.photometry.components import large_groups
from lumos_ops.photometry.smoothing import gaussian_smooth

__all__ = ["FrameSources", "detect_frame_sources", "frame_sources", "local_level", "other_sources", "without_groups"]

BLOCK_PX: int = 64
"""Side (pixels) of the blocks whose median and MAD give the local level and noise."""

_MAD_TO_SIGMA = 1.482602218505602


@dataclasses.dataclass(frozen=True)
class FrameSources:
    """Detected sources of one frame.

    Attributes
    ----------
    detected : ndarray of bool, shape (ny, nx)
        Pixels of the detected sources, not grown (NaN pixels are not in it).
    mask : ndarray of bool, shape (ny, nx)
        ``detected`` grown by :data:`~lumos_ops.photometry.background.DETECT_GROW_PX` px: what the
        annulus background leaves out.
    """

    detected: np.ndarray
    mask: np.ndarray


def _block_index(n: int, box: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Block of each of ``n`` positions (blocks of ``n // count`` px, the last one taking the rest),
    the position inside it, the number of blocks and the longest block."""
    count = max(n // box, 1)
    step = n // count
    block = np.minimum(np.arange(n) // step, count - 1)
    return block, np.arange(n) - block * step, count, n - (count - 1) * step


def _block_centres(n: int, box: int) -> np.ndarray:
    block, _, count, _ = _block_index(n, box)
    return np.array([np.flatnonzero(block == b).mean() for b in range(count)])


def _block_median_mad(values: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of the finite values of each ``box`` x ``box`` block of ``values`` (ny, nx)."""
    ny, nx = values.shape
    brow, irow, by, hy = _block_index(ny, box)
    bcol, icol, bx, hx = _block_index(nx, box)
    if by * hy == ny and bx * hx == nx:  # equal blocks: one row per block by a reshape, same order
        rows = values.reshape(by, hy, bx, hx).transpose(0, 2, 1, 3).reshape(by * bx, hy * hx)
    else:
        rows = np.full((by * bx, hy * hx), np.nan, dtype=values.dtype)
        rows[brow[:, None] * bx + bcol[None, :], irow[:, None] * hx + icol[None, :]] = values
    ordered = np.sort(rows, axis=1)
    count = np.isfinite(rows).sum(axis=1)
    median, mad = sorted_median_and_mad(ordered, np.zeros_like(count), count)
    return median.reshape(by, bx).astype(np.float64), mad.reshape(by, bx).astype(np.float64)


_ROWS = 128
"""Image rows whose interpolated threshold is computed and compared at once (kept in cache)."""


def _above_interpolated(values: np.ndarray, grid: np.ndarray, centres: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``values > threshold`` (bool, ny x nx), the threshold the bilinear interpolation of block values
    ``grid`` (by, bx) between the block centres (pixels), held constant beyond the outer centres, in
    float32; NaN values compare False. Computed :data:`_ROWS` image rows at a time."""
    ny, nx = values.shape
    by, bx = grid.shape
    iy = np.interp(np.arange(ny), centres[0], np.arange(by))
    ix = np.interp(np.arange(nx), centres[1], np.arange(bx))
    y0 = np.minimum(np.floor(iy).astype(np.int64), by - 1)
    x0 = np.minimum(np.floor(ix).astype(np.int64), bx - 1)
    x1 = np.minimum(x0 + 1, bx - 1)
    tx = (ix - x0).astype(np.float32)
    g = grid.astype(np.float32)
    along_x = g[:, x0] + (g[:, x1] - g[:, x0]) * tx  # (by, nx)
    step = np.diff(along_x, axis=0, append=along_x[-1:])  # to the next block row (0 after the last)
    ty = (iy - y0).astype(np.float32)[:, None]
    above = np.empty((ny, nx), dtype=bool)
    threshold = np.empty((min(_ROWS, ny), nx), dtype=np.float32)
    # runs of at most _ROWS rows between the same two block rows share their two rows of along_x
    cuts = np.union1d(np.flatnonzero(np.diff(y0)) + 1, np.arange(_ROWS, ny, _ROWS))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, ny]):
        part = threshold[: hi - lo]
        np.multiply(step[y0[lo]], ty[lo:hi], out=part)
        part += along_x[y0[lo]]
        with np.errstate(invalid="ignore"):
            np.greater(values[lo:hi], part, out=above[lo:hi])
    return above


def _normalise(smooth: np.ndarray, weight: np.ndarray) -> None:
    """Divide ``smooth`` in place by the kernel ``weight`` on the frame; NaN where it is below 0.5."""
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth /= weight
    smooth[weight < 0.5] = np.nan


def _fill(grid: np.ndarray) -> np.ndarray:
    """Blocks without a finite value take the median of the others (0 when none has one)."""
    good = np.isfinite(grid)
    return np.where(good, grid, np.median(grid[good]) if good.any() else 0.0)


def detect_frame_sources(data: np.ndarray, *, box: int = BLOCK_PX, sample: int = 2) -> FrameSources:
    """Detect the sources of a whole frame (module docstring).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Pixel values (e-/s per pixel); NaN pixels are ignored (a pixel with less than half of the
        smoothing kernel's weight on finite pixels is not tested).
    box : int, keyword-only
        Side (pixels) of the blocks of the local level and noise.
    sample : int, keyword-only
        The block statistics use every ``sample``-th row and column (the smoothed image is
        correlated over a few pixels, so they are as precise, ``sample**2`` times faster).

    Returns
    -------
    FrameSources
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"data must be 2-D, got shape {data.shape}")
    finite = np.isfinite(data)
    ny, nx = data.shape
    empty = np.zeros(data.shape, dtype=bool)
    if not finite.any():
        return FrameSources(detected=empty, mask=empty.copy())
    # The median only keeps float32 rounding small: normalised smoothing shifts by a constant.
    complete = bool(finite.all())
    every = max(1, int(finite.sum()) // 100_000)
    offset = np.float32(np.median(data.ravel()[::every] if complete else data[finite][::every]))
    excess = data - offset
    if not complete:
        excess[~finite] = 0.0
    smooth = gaussian_smooth(excess, DETECT_SMOOTH_PX, truncate=3.0)
    if complete:  # the kernel weight on the frame is separable: its float32 product, row by row
        ones_y = ndimage.gaussian_filter1d(np.ones(ny, np.float32), DETECT_SMOOTH_PX, mode="constant", truncate=3.0)
        ones_x = ndimage.gaussian_filter1d(np.ones(nx, np.float32), DETECT_SMOOTH_PX, mode="constant", truncate=3.0)
        for lo in range(0, ny, _ROWS):
            _normalise(smooth[lo : lo + _ROWS], ones_y[lo : lo + _ROWS, None] * ones_x[None, :])
    else:
        _normalise(smooth, gaussian_smooth(finite.astype(np.float32), DETECT_SMOOTH_PX, truncate=3.0))
    step = slice(None, None, sample)
    sub_box = max(box // sample, 1)
    sub_shape = smooth[step, step].shape
    centres = (_block_centres(sub_shape[0], sub_box) * sample, _block_centres(sub_shape[1], sub_box) * sample)
    raw = excess[step, step].copy()
    raw[~finite[step, step]] = np.nan
    _, pixel_mad = _block_median_mad(raw, sub_box)
    floor = _fill(_MAD_TO_SIGMA * pixel_mad) * white_smoothing_gain()
    detected, mask = empty, empty
    for _ in range(DETECT_PASSES):
        level, mad = _block_median_mad(np.where(mask[step, step], np.float32(np.nan), smooth[step, step]), sub_box)
        threshold = _fill(level) + DETECT_SIGMA * np.fmax(_fill(_MAD_TO_SIGMA * mad), floor)
        above = _above_interpolated(smooth, threshold, centres)
        detected = large_groups(above, DETECT_MIN_AREA)
        mask = grow_octagon(detected, DETECT_GROW_PX)
    return FrameSources(detected=detected, mask=mask)


def local_level(data: np.ndarray, mask: np.ndarray, *, box: int = BLOCK_PX, sample: int = 2) -> np.ndarray:
    """The frame's sky level on scales above ``box`` px: the median of each ``box`` x ``box`` block's
    finite pixels outside ``mask`` (a block without any takes the median of the others), bilinearly
    interpolated between block centres and held constant beyond the outer ones.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Pixel values (e-/s per pixel); NaN pixels are left out.
    mask : ndarray of bool, shape (ny, nx)
        Pixels left out (e.g. those near a detection, ``lumos_ops.photometry.wing_light``).
    box : int, keyword-only
        Block side (pixels).
    sample : int, keyword-only
        The block medians use every ``sample``-th row and column.

    Returns
    -------
    ndarray of float32, shape (ny, nx)
    """
    step = slice(None, None, sample)
    values = np.where(np.asarray(mask, dtype=bool)[step, step], np.float32(np.nan),
                      np.asarray(data, dtype=np.float32)[step, step])
    sub_box = max(box // sample, 1)
    median, _ = _block_median_mad(values, sub_box)
    grid = _fill(median)
    ny, nx = np.shape(data)
    iy = np.interp(np.arange(ny), _block_centres(values.shape[0], sub_box) * sample, np.arange(grid.shape[0]))
    ix = np.interp(np.arange(nx), _block_centres(values.shape[1], sub_box) * sample, np.arange(grid.shape[1]))
    x0 = np.minimum(np.floor(ix).astype(np.int64), grid.shape[1] - 1)
    x1 = np.minimum(x0 + 1, grid.shape[1] - 1)
    rows = (grid[:, x0] * (1.0 - (ix - x0)) + grid[:, x1] * (ix - x0)).astype(np.float32)  # (by, nx)
    y0 = np.minimum(np.floor(iy).astype(np.int64), grid.shape[0] - 1)
    y1 = np.minimum(y0 + 1, grid.shape[0] - 1)
    ty = (iy - y0).astype(np.float32)[:, None]
    return rows[y0] * (1.0 - ty) + rows[y1] * ty


_LAST: list[tuple[weakref.ref, FrameSources]] = []


def frame_sources(data: np.ndarray) -> FrameSources:
    """:func:`detect_frame_sources` of ``data``, kept for the last frame asked for.

    The targets' background and the blank-sky calibration of one exposure both ask for it (the
    same array object), so the frame is searched once.
    """
    if _LAST and _LAST[0][0]() is data:
        return _LAST[0][1]
    result = detect_frame_sources(data)
    _LAST[:] = [(weakref.ref(data), result)]
    return result


def without_groups(sources: FrameSources, x: np.ndarray, y: np.ndarray) -> FrameSources:
    """``sources`` without the detected groups (8-connected) that reach the 3 x 3 pixels about any of
    the positions ``x``, ``y`` (0-based pixels, shape (k,)), ``mask`` grown again from what is left.

    The targets fitted jointly with their catalogued neighbours are measured on the image less the
    fit's light (:mod:`lumos_ops.photometry.neighbours`): their own and their neighbours' groups are
    in the fit, every other group is another source's, left out as for any target
    (:class:`lumos_ops.target_context.TargetContext`)."""
    detected = np.asarray(sources.detected, dtype=bool)
    if not detected.any() or np.size(x) == 0:
        return sources
    labels, _ = ndimage.label(detected, structure=np.ones((3, 3), dtype=bool))
    ny, nx = detected.shape
    col = np.rint(np.asarray(x, dtype=np.float64))
    row = np.rint(np.asarray(y, dtype=np.float64))
    ok = np.isfinite(col) & np.isfinite(row)
    col, row = col[ok].astype(np.int64), row[ok].astype(np.int64)
    hit = np.zeros(int(labels.max()) + 1, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            r, c = row + dy, col + dx
            inside = (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
            hit[labels[r[inside], c[inside]]] = True
    hit[0] = False
    if not hit.any():
        return sources
    kept = detected & ~hit[labels]
    return FrameSources(detected=kept, mask=grow_octagon(kept, DETECT_GROW_PX))


def other_sources(mask: np.ndarray, detected: np.ndarray | None = None, *, others: np.ndarray | None = None) -> np.ndarray:
    """The pixels of detected sources in each cutout that are not the target's own detection.

    ``mask`` (bool, shape (n, S, S)): the frame's detections cut around each target, the target on
    the central pixel ``(S // 2, S // 2)``. A group of detected pixels (8-connected within the
    cutout) that reaches the 3 x 3 pixels about the centre is the target's own (or a blend it is
    part of); every other group is another source's. A target that is not detected has no own
    group. Returns bool (n, S, S).

    ``detected`` (bool, shape (n, S, S), optional): the same detections before they were grown
    (``FrameSources.detected``, cut like ``mask``). The groups are then those of ``detected``, and
    of ``mask`` the target keeps only what lies within
    :data:`~lumos_ops.photometry.background.DETECT_GROW_PX` px of its own detected pixels (the
    octagon that grew them): a neighbour whose grown pixels merely touch the target's is another
    source, and an undetected target keeps the same octagon about its central pixel (another
    source's grown pixels over it are not left out). Another source's detected pixels are always
    left out, even within that distance. Where the grown detections cover half the sky, as on the
    SDSS frames of ``../shared/realdata``, the grown groups chain a target to most of its
    neighbours (``reports/lumos/own-detection`` measures what that does to every method).

    ``others`` (bool, shape (n, S, S), keyword-only, with ``detected``): ``other_sources(detected)``,
    when already computed (the same cutouts' wing light needs it too).
    """
    if detected is None:
        if others is not None:
            raise ValueError("others needs detected: it holds the groups of the detected pixels")
        return _other_groups(mask)
    mask = np.asarray(mask, dtype=bool)
    detected = np.asarray(detected, dtype=bool)
    if detected.shape != mask.shape:
        raise ValueError(f"detected must have the shape of mask {mask.shape}, got {detected.shape}")
    if mask.ndim != 3:
        raise ValueError(f"mask must be (n, S, S), got shape {mask.shape}")
    if mask.size == 0:
        return mask.copy()
    others = _other_groups(detected) if others is None else np.asarray(others, dtype=bool)
    if others.shape != mask.shape:
        raise ValueError(f"others must have the shape of mask {mask.shape}, got {others.shape}")
    own = detected & ~others
    c = mask.shape[1] // 2
    own[:, c, c] = True  # an undetected target keeps the pixels about its position too
    return mask & (~_grow_stack(own, DETECT_GROW_PX) | others)


def _grow_stack(stack: np.ndarray, radius: int) -> np.ndarray:
    """Each (S, S) plane of ``stack`` (n, S, S) dilated by :func:`grow_octagon`'s octagon, zeros beyond
    its edges: the planes are stacked as rows of one image, ``radius`` empty rows apart."""
    n, s, w = stack.shape
    tall = np.zeros((n, s + radius, w), dtype=bool)
    tall[:, :s] = stack
    grown = grow_octagon(tall.reshape(n * (s + radius), w), radius)
    return grown.reshape(n, s + radius, w)[:, :s]


def _other_groups(mask: np.ndarray) -> np.ndarray:
    """The 8-connected groups of ``mask`` (n, S, S) in each plane that do not reach its central 3 x 3 pixels.

    Only the planes holding any pixel are labelled, stacked as rows of one image one empty row apart
    (8-connected groups never cross it): the groups of ``ndimage.label`` on each plane alone."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    if mask.ndim != 3:
        return out
    planes = np.flatnonzero(mask.any(axis=(1, 2)))
    if planes.size == 0:
        return out
    held = mask[planes]
    n, s, w = held.shape
    tall = np.zeros((n, s + 1, w), dtype=bool)
    tall[:, :s] = held
    labels, _ = ndimage.label(tall.reshape(n * (s + 1), w), structure=np.ones((3, 3), dtype=bool))
    labels = labels.reshape(n, s + 1, w)[:, :s]
    c = s // 2
    own = labels[:, c - 1 : c + 2, c - 1 : c + 2].reshape(n, -1)
    keep = np.zeros(int(labels.max()) + 1, dtype=bool)
    keep[own[own > 0]] = True
    out[planes] = held & ~keep[labels]
    return out
