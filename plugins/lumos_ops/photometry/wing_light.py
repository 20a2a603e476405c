"""The light of detected sources beyond their detection, as a frame's own profile of distance.

Every method leaves the pixels of other detected sources out: the annulus background leaves the
frame's detections (grown by :data:`~lumos_ops.photometry.background.DETECT_GROW_PX`) out of its
mean, and the model-weighted sums and LUMOS's stamp leave other sources' grown detections out of
their footprints (``TargetContext.mask_other_sources``). Beyond its detection a source still has
light: its faint wings, and the fainter sources that cluster around it. On the real frames of
``../shared/realdata`` the sky is 0.05-0.09 of the pixel noise brighter 5 px from a detection
than 15-20 px from one (docs/background.md, "Light beyond the detections"). An annulus holds
pixels at every distance beyond the mask; a target a clearance away from every detection has
its core where that light is least. Its background, the annulus mean, is then too high, and every
method reads it low by the same fraction of its error.

This module measures that light on each frame and subtracts it, pixel by pixel, from each
target's cutouts:

- :func:`measure_wing_profile`: the mean pixel value of the frame's undetected pixels, less the
  frame's sky level on scales above :data:`LEVEL_BOX_PX` px, measured at least
  :data:`LEVEL_CLEARANCE_PX` from every detection (:func:`~lumos_ops.photometry.frame_sources.local_level`:
  scattered light and gradients, which would otherwise pass for light near the detections of a
  brighter part of the frame), per bin of distance (chessboard, pixels) to the nearest detected pixel (bins
  :data:`EDGES_PX`, each holding at least :data:`MIN_PIXELS` pixels, fewer merged into the bin
  before), made non-increasing with distance by a weighted pool-adjacent-violators fit, less its
  value in the farthest bin. It needs no model of any source and no survey constant: each
  frame's own pixels give it.
- :func:`wing_light`: in each cutout, the distance of every pixel to the nearest pixel of
  another detected source (groups that do not reach the target's centre,
  :func:`~lumos_ops.photometry.frame_sources.other_sources`; the target's own light is what is
  measured), and the profile there.

Subtracting the same map from the annulus and from the footprint, each pixel gets the light its
surroundings hold on average: the annulus mean estimates the sky far from detections, and the
footprint keeps the galaxy. Sources whose light the map misses (a bright star's halo, stronger than
the frame's average) are left as before. The constant a whole frame shares cancels between the
annulus and the footprint, which is why the profile is measured from its farthest bin.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
from scipy import ndimage

from lumos_ops.cutouts import cut_mask

__all__ = ["EDGES_PX", "LEVEL_BOX_PX", "LEVEL_CLEARANCE_PX", "MIN_PIXELS", "WingProfile", "frame_wing_profile", "measure_wing_profile", "wing_light",
           "wing_map"]

EDGES_PX: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 60)
"""Lower edges (pixels) of the distance bins of the profile; the last bin is open."""

MIN_PIXELS: int = 2000
"""Fewest undetected pixels a distance bin needs; a bin with fewer is merged into the one before."""

LEVEL_BOX_PX: int = 128
"""Side (pixels) of the blocks of the frame's sky level that the profile is measured from."""

LEVEL_CLEARANCE_PX: float = 15.0
"""Pixels closer than this (pixels) to a detection are left out of the level: the light the profile
measures reaches about this far on the real frames, and a level that held it would take it out."""

_CLIP_SIGMA = 10.0
"""Pixel values are limited to the median +- this many robust standard deviations (single hot
pixels and cosmic rays that the detection's smoothing leaves undetected)."""


@dataclasses.dataclass(frozen=True)
class WingProfile:
    """Light beyond the detections of one frame, by distance to the nearest detected pixel.

    Attributes
    ----------
    edges : ndarray of float64, shape (k,)
        Lower edge (pixels) of each distance bin; the last bin is open.
    excess : ndarray of float64, shape (k,)
        Mean pixel value (image units, e-/s per pixel) of the bin less the farthest bin's,
        non-increasing with distance, 0 in the last bin.
    counts : ndarray of int64, shape (k,)
        Undetected pixels in each bin.
    """

    edges: np.ndarray
    excess: np.ndarray
    counts: np.ndarray

    def at(self, distance: np.ndarray) -> np.ndarray:
        """The excess (image units) at ``distance`` (pixels, any shape): the value of its bin,
        0 beyond the last edge's bin and at distance 0 (a detected pixel)."""
        distance = np.asarray(distance)
        index = np.searchsorted(self.edges, distance, side="right") - 1
        values = np.append(self.excess, 0.0)  # index -1 (below the first edge) reads 0
        return values[index].astype(np.float32)


def _decreasing_fit(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-increasing sequence closest to ``values`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for v, w in zip(values, weights):
        blocks.append([float(v), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, m) for m, _, n in blocks])


def _distance(detected: np.ndarray) -> np.ndarray:
    """Chessboard distance (pixels, int32) of every pixel to the nearest ``True`` pixel of ``detected``
    (0 on them): the largest of the row and column offsets, eight times faster than the Euclidean
    distance on a CCD and used alike by the profile and the maps."""
    return ndimage.distance_transform_cdt(~detected, metric="chessboard")


_PLANES = 256
"""Cutouts whose distances are computed in one call (a few tens of MB of int32)."""

_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = True


def _plane_distances(planes: np.ndarray) -> np.ndarray:
    """:func:`_distance` of each plane of ``planes`` (bool, (k, S, S), each holding a ``True`` pixel) on
    its own, in one call: int32 (k, S, S) pixels. The chessboard metric's 3 x 3 neighbours within a
    plane, none across planes, make the same two raster passes as each plane alone."""
    return ndimage.distance_transform_cdt(~planes, metric=_IN_PLANE)


def measure_wing_profile(data: np.ndarray, detected: np.ndarray) -> WingProfile:
    """The profile of a frame (module docstring).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        Pixel values (e-/s per pixel); NaN pixels are left out.
    detected : ndarray of bool, shape (ny, nx)
        The frame's detected pixels, not grown (``FrameSources.detected``).

    Returns
    -------
    WingProfile
        All excesses 0 (one bin) when the frame has no detection or too few undetected pixels.
    """
    data = np.asarray(data)
    detected = np.asarray(detected, dtype=bool)
    if data.shape != detected.shape or data.ndim != 2:
        raise ValueError(f"data {data.shape} and detected {detected.shape} must be the same 2-D shape")
    edges = np.asarray(EDGES_PX, dtype=np.float64)
    finite = np.isfinite(data)
    use = finite & ~detected
    if not detected.any() or use.sum() < 2 * MIN_PIXELS:
        return WingProfile(edges=edges[:1], excess=np.zeros(1), counts=np.array([int(use.sum())]))
    from lumos_ops.photometry.frame_sources import local_level

    distance = _distance(detected)
    level = local_level(data, distance <= LEVEL_CLEARANCE_PX, box=LEVEL_BOX_PX)
    distance = distance[use]
    values = data[use].astype(np.float64) - level[use]
    sample = values[:: max(1, values.size // 200_000)]  # the clip's centre and scale need no more
    median = float(np.median(sample))
    spread = 1.482602218505602 * float(np.median(np.abs(sample - median)))
    if spread > 0:
        np.clip(values, median - _CLIP_SIGMA * spread, median + _CLIP_SIGMA * spread, out=values)
    lookup = np.searchsorted(edges, np.arange(int(edges[-1]) + 1), side="right") - 1  # bin of each distance
    index = lookup[np.minimum(distance, int(edges[-1]))]
    counts = np.bincount(index, minlength=edges.size)
    sums = np.bincount(index, weights=values, minlength=edges.size)
    keep: list[int] = []
    for i in range(edges.size):  # merge a sparse bin into the one before
        if counts[i] >= MIN_PIXELS or not keep:
            keep.append(i)
        else:
            counts[keep[-1]] += counts[i]
            sums[keep[-1]] += sums[i]
    if counts[keep[0]] < MIN_PIXELS and len(keep) > 1:  # a sparse first bin joins the next
        counts[keep[1]] += counts[keep[0]]
        sums[keep[1]] += sums[keep[0]]
        keep = keep[1:]
    counts, sums, edges = counts[keep], sums[keep], edges[keep]
    edges[0] = EDGES_PX[0]
    fitted = _decreasing_fit(sums / counts, counts.astype(np.float64))
    return WingProfile(edges=edges, excess=fitted - fitted[-1], counts=counts.astype(np.int64))


_LAST: list[tuple[weakref.ref, WingProfile]] = []


def frame_wing_profile(data: np.ndarray) -> WingProfile:
    """:func:`measure_wing_profile` of ``data`` with its frame detections
    (:func:`~lumos_ops.photometry.frame_sources.frame_sources`), kept for the last frame asked for."""
    if _LAST and _LAST[0][0]() is data:
        return _LAST[0][1]
    from lumos_ops.photometry.frame_sources import frame_sources

    result = measure_wing_profile(data, frame_sources(data).detected)
    _LAST[:] = [(weakref.ref(data), result)]
    return result


def wing_light(profile: WingProfile, detected: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: int) -> np.ndarray:
    """The light of other sources beyond their detections in each cutout (module docstring).

    Parameters
    ----------
    profile : WingProfile
        The frame's profile (:func:`frame_wing_profile`).
    detected : ndarray of bool, shape (ny, nx)
        The frame's detected pixels, not grown.
    x0, y0 : ndarray of int, shape (n,)
        Image column and row of each cutout's pixel [0, 0] (``Stamps.x0``, ``Stamps.y0``).
    size : int
        Cutout side (pixels); the target on pixel ``(size // 2, size // 2)``.

    Returns
    -------
    ndarray of float32, shape (n, size, size)
        Image units (e-/s per pixel); 0 in cutouts without another detected source, and on the
        other sources' own pixels (left out by every method).
    """
    from lumos_ops.photometry.frame_sources import other_sources

    n = int(np.size(x0))
    if n == 0 or not np.any(profile.excess):
        return np.zeros((n, size, size), dtype=np.float32)
    return wing_map(profile, other_sources(cut_mask(detected, x0, y0, size)))


def wing_map(profile: WingProfile, other: np.ndarray) -> np.ndarray:
    """:func:`wing_light` of cutouts whose other sources' detected pixels are already known.

    Parameters
    ----------
    profile : WingProfile
        The frame's profile (:func:`frame_wing_profile`).
    other : ndarray of bool, shape (n, S, S)
        The pixels of other detected sources (not grown) in each cutout, the target on pixel
        ``(S // 2, S // 2)`` (:func:`~lumos_ops.photometry.frame_sources.other_sources` of the cut
        detections).

    Returns
    -------
    ndarray of float32, shape (n, S, S)
        Image units (e-/s per pixel), as :func:`wing_light`.
    """
    other = np.asarray(other, dtype=bool)
    light = np.zeros(other.shape, dtype=np.float32)
    if other.shape[0] == 0 or not np.any(profile.excess):
        return light
    cap = int(np.ceil(profile.edges[-1]))
    lookup = profile.at(np.arange(cap + 1))  # the profile at every whole distance (chessboard distances are whole)
    held = np.flatnonzero(other.any(axis=(1, 2)))
    for start in range(0, held.size, _PLANES):
        rows = held[start : start + _PLANES]
        distance = _plane_distances(other[rows])
        np.minimum(distance, cap, out=distance)
        light[rows] = lookup[distance]
    return light
