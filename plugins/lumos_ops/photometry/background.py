"""Local background from a circular annulus around each target (PAUS, paper §3.2).

The background ``b`` (e-/s per pixel) that an aperture sum, an optimal weighted sum or a profile
fit subtracts must be the *mean* of the sky under the target: a sum of ``A`` sky pixels has
expectation ``A`` times the mean, whatever the shape of the pixel distribution. All three
classical baselines take it from :func:`annulus_background`, which offers three estimators:

``"masked_mean"`` (default)
    Sources are detected in the cutout (smoothed by a Gaussian of 2 px, above 4 times the robust
    noise of the smoothed annulus, groups of >= 5 pixels, grown by 5 px; two passes) and left out
    of the annulus, then the mean of the rest after a mean-centred clip at ``+-6`` standard
    deviations (:func:`clipped_mean`) against single-pixel outliers. It removes the faint wings
    of neighbours (and of the target itself), which no cut on single pixel values can, and
    leaves the sky distribution as it is, skewed or not.
``"clipped_mean"``
    The mean after the mean-centred clip at ``+-5`` standard deviations, without the source
    mask: it rejects bright pixels only (cores of stars and galaxies, cosmic rays).
``"median_clip"``
    The historical estimator: the mean of the pixels kept by ``astropy.stats.sigma_clip`` at
    ``+-3`` standard deviations around the *median* (5 iterations). Biased low for positively
    skewed sky noise, high for source wings; kept for comparison.

Why the median-centred 3 sigma clip is biased. Write the sky pixel density to first order in its
skewness ``g`` (Edgeworth): ``f(z) = phi(z) [1 + g/6 He3(z)]``, ``z = (x - mu) / s``,
``He3 = z^3 - 3 z``. The mean of the pixels kept in a window ``[c - k s, c + k s]`` is, to first
order in ``g`` and in the window centre ``a = (c - mu) / s``,

    mu + s [2 a k phi(k) - g k^3 phi(k) / 3] / (1 - 2 Q(k)),

with ``phi`` the unit normal density and ``Q`` its upper tail. The second term is the long tail
cut off by a window centred on the mean (``a = 0``); the first is the shift of a window centred
on the median, ``a = -g/6``. For a median-centred window the bias is therefore
``-g k (1 + k^2) phi(k) / 3 * s``: ``-0.044 g s`` at ``k = 3``, and more once the clipped
standard deviation shrinks the window on later iterations and for tails heavier than the
expansion (-0.07 s measured for a gamma distribution of skewness 1). A window centred on the
mean at ``k = 5`` or 6 leaves ``-6e-5 g s`` or ``-4e-7 g s`` to first order (measured for the same
gamma distribution: -0.003 s and -0.001 s). The clip scale is the standard deviation of the kept
pixels, not their MAD, which is smaller than it for a skewed distribution and would pull the
window in. ``docs/background.md`` has the measurements on synthetic and real frames.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal

import numpy as np
from astropy.utils.exceptions import AstropyUserWarning
from scipy import ndimage
from scipy.special import erf

from lumos_ops.constants import ANNULUS_RADII
from lumos_ops.exceptions import LumosValueError
from lumos_ops.photometry.row_runs import dilate_by_runs

__all__ = [
    "AnnulusBackground",
    "BackgroundEstimator",
    "BACKGROUND_ESTIMATORS",
    "annulus_background",
    "annulus_pixel_count",
    "clipped_mean",
    "grow_octagon",
    "sorted_median_and_mad",
    "white_smoothing_gain",
]

BackgroundEstimator = Literal["masked_mean", "clipped_mean", "median_clip"]
"""Name of an annulus background estimator (see the module docstring)."""

BACKGROUND_ESTIMATORS: tuple[str, ...] = ("masked_mean", "clipped_mean", "median_clip")
"""The estimators :func:`annulus_background` accepts; the first is the default."""

DETECT_SMOOTH_PX: float = 2.0
"""Standard deviation (pixels) of the Gaussian that smooths the cutout for source detection."""

DETECT_SIGMA: float = 4.0
"""Detection threshold, in robust standard deviations of the smoothed annulus pixels."""

DETECT_MIN_AREA: int = 5
"""Fewest connected pixels above the threshold that make a source."""

DETECT_GROW_PX: int = 5
"""Radius (pixels) by which detected sources are grown (an octagon close to a disc)."""

DETECT_PASSES: int = 2
"""Detection passes; each after the first measures the smoothed sky without the sources found."""

MIN_SKY_FRACTION: float = 0.05
"""An annulus whose detected sources would leave fewer of its finite pixels than this fraction
is not source-masked (its background is the plain clipped mean)."""

_DEFAULT_SIGMA: dict[str, float] = {"masked_mean": 6.0, "clipped_mean": 5.0, "median_clip": 3.0}
_DEFAULT_MAXITERS: dict[str, int] = {"masked_mean": 10, "clipped_mean": 10, "median_clip": 5}
_MAD_TO_SIGMA = 1.482602218505602
"""``1 / Phi^-1(3/4)``: the MAD of a normal distribution times this is its standard deviation."""


@dataclasses.dataclass(frozen=True)
class AnnulusBackground:
    """Background estimate for ``n`` targets.

    Attributes
    ----------
    mean : ndarray, shape (n,)
        Mean of the annulus pixels kept by the estimator (e-/s per pixel); NaN when no pixel is
        usable.
    variance : ndarray, shape (n,)
        Pixel-noise variance ((e-/s)^2 per pixel): the variance of the clipped annulus pixels
        (ddof=1) divided by that of a unit normal truncated at the clipping threshold (0.973 for
        3 sigma, 0.99998 for 5 sigma, 1 - 7e-8 for 6 sigma), so that clipping does not bias the
        noise of Gaussian pixels low.
    n_used : ndarray of int, shape (n,)
        Annulus pixels kept after removing NaN pixels, pixels of detected sources and clipped
        pixels.
    n_total : ndarray of int, shape (n,)
        Pixels whose centre lies in the annulus (whether on the image or not).
    n_masked : ndarray of int, shape (n,)
        Finite annulus pixels left out as parts of detected sources (0 but for ``"masked_mean"``).
    """

    mean: np.ndarray
    variance: np.ndarray
    n_used: np.ndarray
    n_total: np.ndarray
    n_masked: np.ndarray

    @property
    def mean_variance(self) -> np.ndarray:
        """Variance of :attr:`mean` itself, ``variance / n_used`` ((e-/s)^2 per pixel)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.n_used > 0, self.variance / np.maximum(self.n_used, 1), np.nan)

    @property
    def incomplete(self) -> np.ndarray:
        """Targets with fewer than half of the annulus pixels usable (edge, masks, clipping).

        Pixels of detected sources count as usable: a crowded annulus is not an incomplete one.
        """
        return self.n_used + self.n_masked < 0.5 * self.n_total

    def take(self, index: np.ndarray | slice) -> AnnulusBackground:
        """The estimates of a subset of the targets."""
        return AnnulusBackground(
            mean=self.mean[index],
            variance=self.variance[index],
            n_used=self.n_used[index],
            n_total=self.n_total[index],
            n_masked=self.n_masked[index],
        )


def _truncated_normal_variance(k: float) -> float:
    """Variance of a unit normal truncated to [-k, k]."""
    density = np.exp(-0.5 * k * k) / np.sqrt(2.0 * np.pi)
    return float(1.0 - 2.0 * k * density / erf(k / np.sqrt(2.0)))


def annulus_pixel_count(*, r_in: float = ANNULUS_RADII[0], r_out: float = ANNULUS_RADII[1]) -> float:
    """Area (pixels) of the annulus ``r_in <= r <= r_out``."""
    return float(np.pi * (r_out**2 - r_in**2))


def clipped_mean(values: np.ndarray, *, sigma: float = 5.0, maxiters: int = 10) -> np.ndarray:
    """Pixels kept by a mean-centred clip at ``+-sigma`` standard deviations, per row.

    The first pass keeps the finite pixels within ``sigma * 1.4826 * MAD`` of the median, a
    start that sources cannot drag; each later pass keeps those within ``sigma * s`` of the mean
    of the pixels kept so far, ``s`` their standard deviation (divided by that of a unit normal
    truncated at ``+-sigma``), until no row changes or after ``maxiters`` passes. Centring on the
    mean (not the median) and scaling by the standard deviation (not the MAD, which is smaller
    than it for a skewed distribution: 0.71 of it for an exponential) keeps the clip where it
    removes almost nothing of a skewed sky, so the mean of the kept pixels estimates the mean of
    the sky distribution (see the module docstring).

    Parameters
    ----------
    values : ndarray, shape (n, m)
        Pixel values (e-/s per pixel), one row per target; NaN pixels are ignored.
    sigma : float, keyword-only
        Clipping threshold in standard deviations (> 0).
    maxiters : int, keyword-only
        Most passes (>= 1).

    Returns
    -------
    ndarray of bool, shape (n, m)
        True for the pixels kept.
    """
    if not sigma > 0:
        raise LumosValueError(f"sigma must be > 0, got {sigma}")
    if maxiters < 1:
        raise LumosValueError(f"maxiters must be >= 1, got {maxiters}")
    return _clip(values, sigma, maxiters)[0]


def _clip(
    values: np.ndarray, sigma: float, maxiters: int, *, mask: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`clipped_mean` on sorted rows: the kept pixels (None unless ``mask``), their count,
    mean and sum of squared deviations from that mean.

    Every pass keeps the finite pixels with ``|v - c| <= limit``, a contiguous run of the sorted
    row, so each row is sorted once and the passes move the two ends of its run by binary search;
    the means and squared deviations of the runs come from prefix sums of the sorted values. The
    kept pixels are those of the pass-by-pass iteration on the values themselves; infinite values
    are ignored like NaN.
    """
    values = np.where(np.isinf(values), np.nan, values) if np.isinf(values).any() else values
    n, m = values.shape
    if m == 0:
        return np.zeros((n, 0), dtype=bool), np.zeros(n, dtype=np.int64), np.full(n, np.nan), np.zeros(n)
    ordered = np.sort(values, axis=1)  # NaN last
    count = np.count_nonzero(np.isfinite(values), axis=1)
    # Only the finite values (the first count of each sorted row) are ever read.
    ordered = ordered[:, : max(int(count.max(initial=0)), 1)]
    m = ordered.shape[1]
    row = np.arange(n)
    last = max(m - 1, 0)
    centre, mad = sorted_median_and_mad(ordered, np.zeros_like(count), count)
    centre = centre.astype(np.float64)
    # Prefix sums of the values about the row's median (small numbers: no cancellation); the NaN
    # after the finite values only reach prefix sums beyond them, which no run uses.
    shift = np.where(count > 0, centre, 0.0)
    sums = np.empty((n, m + 1))
    squares_sum = np.empty((n, m + 1))
    sums[:, 0] = squares_sum[:, 0] = 0.0
    deviation = np.subtract(ordered, shift[:, None], out=squares_sum[:, 1:])  # squared and summed in place below
    np.cumsum(deviation, axis=1, out=sums[:, 1:])
    np.multiply(deviation, deviation, out=deviation)
    np.cumsum(deviation, axis=1, out=deviation)

    def run_stats(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        used = hi - lo
        first = (sums[rows, hi] - sums[rows, lo]) / np.maximum(used, 1)
        sq = np.maximum(squares_sum[rows, hi] - squares_sum[rows, lo] - used * first * first, 0.0)
        return shift[rows] + first, sq, used

    scale = _MAD_TO_SIGMA * mad.astype(np.float64)
    flat = np.flatnonzero(~(scale > 0))
    if flat.size:  # quantised pixels (MAD = 0): the standard deviation of the finite values
        _, sq, used = run_stats(flat, np.zeros(flat.size, dtype=np.int64), count[flat])
        scale[flat] = np.sqrt(sq / np.maximum(used - 1, 1))
    lo = np.zeros(n, dtype=np.int64)
    hi = count.astype(np.int64)
    truncation = np.sqrt(_truncated_normal_variance(sigma))
    tolerance = 16.0 * np.finfo(np.float64).eps
    # A row whose kept pixels did not change on a pass after the first has its centre and scale
    # computed from those very pixels: every later pass leaves it as it is, so only the rows that
    # changed are carried on (each row's passes are those of the whole-array iteration).
    active = row
    for iteration in range(maxiters):
        c = centre[active]
        # The tolerance keeps every pixel of a flat row, whatever the rounding of its mean.
        limit = sigma * scale[active] + tolerance * np.abs(c)
        r = row[active]
        with np.errstate(invalid="ignore"):
            # first kept: the first finite value not below the window
            a, b = np.zeros(active.size, dtype=np.int64), count[active].astype(np.int64)
            while (open_ := a < b).any():
                mid = (a + b) // 2
                v = ordered[r, np.minimum(mid, last)]
                drop = open_ & (v < c) & ~(np.abs(v - c) <= limit)
                a, b = np.where(drop, mid + 1, a), np.where(open_ & ~drop, mid, b)
            new_lo = a
            # end of the run: the first finite value above the window
            a, b = new_lo.copy(), count[active].astype(np.int64)
            while (open_ := a < b).any():
                mid = (a + b) // 2
                v = ordered[r, np.minimum(mid, last)]
                keep = open_ & ~((v > c) & ~(np.abs(v - c) <= limit))
                a, b = np.where(keep, mid + 1, a), np.where(open_ & ~keep, mid, b)
            new_hi = np.maximum(a, new_lo)
        changed = (new_lo != lo[active]) | (new_hi != hi[active])
        if not changed.any():
            break
        if iteration > 0:  # the first pass replaces the robust start of every row
            active, new_lo, new_hi = active[changed], new_lo[changed], new_hi[changed]
        lo[active], hi[active] = new_lo, new_hi
        mean, sq, used = run_stats(active, new_lo, new_hi)
        centre[active] = np.where(used > 0, mean, centre[active])
        scale[active] = np.sqrt(sq / np.maximum(used - 1, 1)) / truncation
    mean, sq, used = run_stats(row, lo, hi)
    if not mask:
        return None, used, mean, sq
    with np.errstate(invalid="ignore"):
        low = ordered[row, np.minimum(lo, last)][:, None]
        high = ordered[row, np.clip(hi - 1, 0, last)][:, None]
        kept = (used > 0)[:, None] & (values >= low) & (values <= high)
    return kept, used, mean, sq


def _robust_centre_and_scale(values: np.ndarray, *, in_float64: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Median and ``1.4826 * MAD`` of the finite values of each row.

    Pixels quantised to fewer levels than the noise spans can have MAD = 0: the scale is their
    standard deviation there. ``in_float64``: the numbers of ``values.astype(np.float64)``; float32
    values are then sorted as float32 (faster, and in the order of their float64 copies).
    """
    infinite = values.shape[1] == 0 or bool(np.isinf(values).any())
    if in_float64 and values.dtype == np.float32 and not infinite:
        ordered = np.sort(values, axis=1).astype(np.float64)  # NaN sort last
        count = np.isfinite(values).sum(axis=1)
        centre, mad = sorted_median_and_mad(ordered, np.zeros_like(count), count)
    else:
        values = np.asarray(values, dtype=np.float64) if in_float64 else values
        if infinite:
            centre = _row_median(values)
            mad = _row_median(np.abs(values - centre[:, None]))
        else:
            centre, mad = _row_median_and_mad(values)
    scale = _MAD_TO_SIGMA * mad
    flat = np.flatnonzero(~(scale > 0))
    fallback = np.zeros(values.shape[0])
    if flat.size:
        rows = np.asarray(values[flat], dtype=np.float64) if in_float64 else values[flat]
        finite = np.isfinite(rows)
        fallback[flat] = _row_std(rows, finite, _row_mean(rows, finite))
    return centre, np.where(scale > 0, scale, fallback)


def _row_median_and_mad(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and median absolute deviation of the finite values of each row, from one sort.

    The same numbers as ``_row_median(values)`` and ``_row_median(|values - median|)`` (values
    without infinities).
    """
    ordered = np.sort(values, axis=1)  # NaN sort last
    count = np.isfinite(values).sum(axis=1)
    return sorted_median_and_mad(ordered, np.zeros_like(count), count)


def sorted_median_and_mad(ordered: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and median absolute deviation of the slices ``ordered[i, start[i]:stop[i]]`` of sorted rows.

    The median of an even count is the mean of the middle two, as ``np.median``; NaN for an empty
    slice. The distances below and above the median are two ascending runs of the sorted slice, so
    the middle elements of their merge are found by a binary search per row, without sorting the
    distances: the numbers are those of ``np.median(np.abs(v - np.median(v)))``.
    """
    n, m = ordered.shape
    dtype = ordered.dtype
    row = np.arange(n)
    count = stop - start
    last = max(m - 1, 0)
    mid_lo = np.clip(start + np.maximum((count - 1) // 2, 0), 0, last)
    mid_hi = np.clip(start + np.maximum(count // 2, 0), 0, last)
    centre = np.where(count > 0, 0.5 * (ordered[row, mid_lo] + ordered[row, mid_hi]), np.nan).astype(dtype, copy=False)
    # split: the first element of the slice >= centre (binary search per row)
    split, hi = start.copy(), np.maximum(stop, start)
    while True:
        open_ = split < hi
        if not open_.any():
            break
        mid = (split + hi) // 2
        less = open_ & (ordered[row, np.clip(mid, 0, last)] < centre)
        split = np.where(less, mid + 1, split)
        hi = np.where(open_ & ~less, mid, hi)
    # distances centre - ordered[split - 1 - j] and ordered[split + j] - centre ascend in j
    below = split - start
    above = count - below

    def kth(k: np.ndarray) -> np.ndarray:
        # i of the k + 1 smallest distances come from below the centre: the smallest i in
        # [lo, hi] with dist_below[i] >= dist_above[k - i]
        lo = np.maximum(0, k + 1 - above)
        hi = np.minimum(k + 1, below)
        while True:
            open_ = lo < hi
            if not open_.any():
                break
            mid = (lo + hi) // 2
            low_dist = centre - ordered[row, np.clip(split - 1 - mid, 0, last)]
            high_dist = ordered[row, np.clip(split + k - mid, 0, last)] - centre
            more = open_ & (low_dist < high_dist)
            lo = np.where(more, mid + 1, lo)
            hi = np.where(open_ & ~more, mid, hi)
        from_below = np.where(lo > 0, centre - ordered[row, np.clip(split - lo, 0, last)], -np.inf)
        from_above = np.where(k - lo >= 0, ordered[row, np.clip(split + k - lo, 0, last)] - centre, -np.inf)
        return np.maximum(from_below, from_above).astype(dtype, copy=False)

    k1 = np.maximum((count - 1) // 2, 0)
    k2 = np.minimum(np.maximum(count // 2, 0), np.maximum(count - 1, 0))
    mad = 0.5 * (kth(k1) + kth(k2))
    return centre, np.where(count > 0, mad, np.nan).astype(dtype, copy=False)


def _row_median(values: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row (NaN where none); faster than ``np.nanmedian``."""
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    ordered = np.sort(values, axis=1)  # NaN sort last
    count = np.isfinite(values).sum(axis=1)
    row = np.arange(values.shape[0])
    lower = ordered[row, np.maximum((count - 1) // 2, 0)]
    upper = ordered[row, np.minimum(count // 2, values.shape[1] - 1)]
    return np.where(count > 0, 0.5 * (lower + upper), np.nan)


def _row_mean(values: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Mean of the ``kept`` values of each row (0 where none)."""
    return np.where(kept, values, 0.0).sum(axis=1) / np.maximum(kept.sum(axis=1), 1)


def _row_std(values: np.ndarray, kept: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Standard deviation (ddof=1) of the ``kept`` values of each row about ``centre`` (0 for < 2)."""
    sq, used = _row_squares(values, kept, centre)
    return np.sqrt(sq / np.maximum(used - 1, 1))


def _row_squares(values: np.ndarray, kept: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the squared deviations of the ``kept`` values of each row from ``centre``, and their count."""
    return np.where(kept, (values - centre[:, None]) ** 2, 0.0).sum(axis=1), kept.sum(axis=1)


def _median_clip(values: np.ndarray, *, sigma: float, maxiters: int) -> np.ndarray:
    """Pixels kept by ``astropy.stats.sigma_clip`` (median centre, standard deviation scale), per row."""
    from astropy.stats import sigma_clip  # only this historical estimator needs astropy.stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        clipped = sigma_clip(values, sigma=sigma, maxiters=maxiters, axis=1, masked=True, copy=False)
    return ~np.ma.getmaskarray(clipped)


_PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
_PLANE_CROSS[1] = [[False, True, False], [True, True, True], [False, True, False]]
"""4-connectivity within each cutout, none across cutouts."""


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` (n, S, S) dilated in each plane by an octagon of ``radius`` px (close to a disc).

    A square of half-side ``round(0.4 radius)`` followed by a diamond of the remaining radius:
    their sum reaches ``radius`` along the axes and about ``radius`` along the diagonals.
    """
    if radius <= 0:
        return mask
    return _unpack_planes(_grow_packed(np.packbits(mask, axis=0), radius), mask.shape[0])


def _grow_packed(packed: np.ndarray, radius: int) -> np.ndarray:
    """:func:`_grow` of planes packed 8 to a byte along axis 0 (``np.packbits(mask, axis=0)``).

    The octagon is the union of horizontal runs: row offset ``dy`` spans ``+-(radius - max(|dy| -
    half, 0))`` columns (``half = round(0.4 radius)``). Each plane is dilated with zeros outside
    it, as ``maximum_filter`` and ``binary_dilation`` do, and each bit is one plane, so the shifts
    and ORs work on 8 planes at once.
    """
    half, spread = _octagon_split(radius)
    widths: dict[int, np.ndarray] = {}
    run = packed.copy()
    for w in range(1, radius + 1):  # run: horizontal dilation by +-w
        run[:, :, w:] |= packed[:, :, :-w]
        run[:, :, :-w] |= packed[:, :, w:]
        if w >= radius - spread:
            widths[w] = run.copy() if w < radius else run
    if radius - spread == 0:
        widths[0] = packed
    grown = widths[radius].copy()
    for dy in range(1, half + spread + 1):
        source = widths[radius - max(dy - half, 0)]
        grown[:, dy:, :] |= source[:, :-dy, :]
        grown[:, :-dy, :] |= source[:, dy:, :]
    return grown


def _octagon_split(radius: int) -> tuple[int, int]:
    """The octagon of :func:`_grow`: half-side of its square (``round(0.4 radius)``) and the radius
    of its diamond (the rest), pixels."""
    half = int(round(0.4 * radius))
    return half, radius - half


def grow_octagon(mask: np.ndarray, radius: int) -> np.ndarray:
    """A 2-D ``mask`` dilated by the octagon of :func:`_grow` (``radius`` px), zeros beyond its edges
    (rows packed 64 pixels to a word, :func:`lumos_ops.photometry.row_runs.dilate_by_runs`)."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return mask.copy()
    half, spread = _octagon_split(radius)
    return dilate_by_runs(mask, [radius - max(dy - half, 0) for dy in range(half + spread + 1)])


def _pack_planes(flat_index: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``np.packbits(mask, axis=0)`` of the (n, S, S) mask that is True at the (distinct) ``flat_index``."""
    n, plane = shape[0], int(np.prod(shape[1:]))
    layer, pixel = np.divmod(flat_index, plane)
    byte = (layer >> 3) * plane + pixel
    bits = np.left_shift(1, 7 - (layer & 7))  # packbits: the first plane is the high bit
    packed = np.bincount(byte, weights=bits, minlength=((n + 7) // 8) * plane)  # distinct bits: sum = OR
    return packed.astype(np.uint8).reshape(((n + 7) // 8, *shape[1:]))


def _unpack_planes(packed: np.ndarray, n: int) -> np.ndarray:
    """Inverse of ``np.packbits(mask, axis=0)`` for ``n`` planes."""
    return np.unpackbits(packed, axis=0, count=n).view(bool)


def white_smoothing_gain() -> float:
    """Standard deviation of white unit-variance noise after the detection smoothing."""
    size = 8 * int(np.ceil(DETECT_SMOOTH_PX)) + 1
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    smoothed = ndimage.gaussian_filter(delta, DETECT_SMOOTH_PX, mode="constant", truncate=3.0)
    return float(np.sqrt(np.sum(smoothed**2)))


def _component_areas(mask: np.ndarray) -> np.ndarray:
    """Area (pixels) of the 4-connected group of each True pixel of ``mask`` within its plane.

    Parameters
    ----------
    mask : ndarray of bool, shape (n, S, S)

    Returns
    -------
    ndarray of int, shape (mask.sum(),)
        One area per True pixel, in the order of ``np.flatnonzero(mask)``.

    Only the image rows holding a True pixel are labelled (with ``ndimage.label``, as the whole
    stack would be with :data:`_PLANE_CROSS`): they are stacked into one 2-D image, with an empty
    row wherever two of them are not neighbours in the same plane, so the groups are the same.
    """
    n, size = mask.shape[0], mask.shape[-1]
    lines = mask.reshape(n * size, size)
    busy = np.flatnonzero(lines.any(axis=1))
    if busy.size == 0:
        return np.zeros(0, dtype=np.int64)
    adjacent = np.zeros(busy.size, dtype=bool)
    adjacent[1:] = (np.diff(busy) == 1) & (busy[1:] % size != 0)
    position = np.arange(busy.size) + np.cumsum(~adjacent)
    stacked = np.zeros((position[-1] + 1, size), dtype=bool)
    stacked[position] = lines[busy]
    labels, count = ndimage.label(stacked)
    label_of = labels[stacked]
    return np.bincount(label_of, minlength=count + 1)[label_of]


def _float32_below(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 ``threshold`` (NaN stays NaN).

    For every float32 ``x``, ``x > threshold`` and ``x > _float32_below(threshold)`` agree, so a
    float32 image is compared with float64 thresholds without converting it to float64.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = threshold.astype(np.float32)
        above = rounded.astype(np.float64) > threshold
    return np.where(above, np.nextafter(rounded, np.float32(-np.inf)), rounded)


def _annulus_sources(cutouts: np.ndarray, values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Annulus pixels that belong to sources detected in the cutouts.

    The cutouts are smoothed by a Gaussian of :data:`DETECT_SMOOTH_PX` (normalised over the finite
    pixels; a pixel with less than half of the kernel weight on finite pixels is not tested). A
    pixel is detected when its smoothed value exceeds the median of the smoothed annulus by
    :data:`DETECT_SIGMA` times the noise of the smoothed image: the robust (MAD) standard
    deviation of the smoothed annulus, but no less than what white noise of the annulus pixels'
    robust standard deviation gives (a floor for anti-correlated or flat data). Groups of at
    least :data:`DETECT_MIN_AREA` connected pixels, grown by :data:`DETECT_GROW_PX`, are sources.
    Median and MAD resist the bright parts of sources but not their faint wings, which shift and
    widen them: the detection is repeated (:data:`DETECT_PASSES` passes in all) with the median
    and MAD of the smoothed annulus pixels outside the sources found by the previous pass.

    Parameters
    ----------
    cutouts : ndarray, shape (n, S, S)
        Pixel values (e-/s per pixel), NaN where unusable.
    values : ndarray, shape (n, m)
        The annulus pixels of each cutout (e-/s per pixel; NaN outside the annulus or unusable),
        float32 or float64; their level and noise are measured in float64.
    rows, cols : ndarray of int, shape (m,)
        Position in the cutouts of the annulus pixels (all inside the cutout grid).

    Returns
    -------
    ndarray of bool, shape (n, m)
        True for annulus pixels in a source.
    """
    level, pixel_noise = _robust_centre_and_scale(values, in_float64=True)
    data = np.asarray(cutouts, dtype=np.float32)
    finite = np.isfinite(data)
    holes = np.flatnonzero(~finite.all(axis=(1, 2)))
    spread = (0.0, DETECT_SMOOTH_PX, DETECT_SMOOTH_PX)
    # The level only keeps float32 rounding small: normalised smoothing shifts by a constant.
    level32 = np.nan_to_num(level).astype(np.float32)
    excess = data - level32[:, None, None]
    if holes.size:
        excess[holes] = np.where(finite[holes], excess[holes], np.float32(0.0))
    excess = ndimage.gaussian_filter(excess, spread, mode="constant", truncate=3.0)
    # The kernel weight on finite pixels: one plane for all the complete cutouts (the filter works
    # plane by plane), the others filtered one by one.
    plain = ndimage.gaussian_filter(np.ones(cutouts.shape[1:], np.float32), spread[1:], mode="constant", truncate=3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if holes.size:
            weight = ndimage.gaussian_filter(finite[holes].astype(np.float32), spread, mode="constant", truncate=3.0)
            smooth_holes = np.where(weight >= 0.5, excess[holes] / weight, np.float32(np.nan))
        smooth = np.divide(excess, plain, out=excess)
        smooth[:, ~(plain >= 0.5)] = np.nan
        if holes.size:
            smooth[holes] = smooth_holes
    # The smoothed image is correlated over a few pixels: one annulus pixel in four (every other
    # row and column) measures its level and noise as well as all of them, four times faster.
    sample = (rows % 2 == 0) & (cols % 2 == 0)
    n, size = smooth.shape[0], smooth.shape[-1]
    pixel = rows * size + cols  # flat index of the annulus pixels in a cutout
    smooth_sample = np.where(np.isfinite(values[:, sample]), np.take(smooth.reshape(n, -1), pixel[sample], axis=1), np.nan)
    floor = pixel_noise * white_smoothing_gain()
    sources = np.zeros(values.shape, dtype=bool)
    for _ in range(DETECT_PASSES):
        median, smooth_noise = _robust_centre_and_scale(np.where(sources[:, sample], np.nan, smooth_sample))
        with np.errstate(invalid="ignore"):
            threshold = median + DETECT_SIGMA * np.fmax(smooth_noise, floor)
        detected = smooth > _float32_below(threshold)[:, None, None]
        # Detected pixels are few: count and pack them from their flat indices.
        where = np.flatnonzero(detected)
        packed = _pack_planes(where[_component_areas(detected) >= DETECT_MIN_AREA], detected.shape)
        if DETECT_GROW_PX > 0:
            packed = _grow_packed(packed, DETECT_GROW_PX)
        sources = _unpack_planes(np.take(packed.reshape(packed.shape[0], -1), pixel, axis=1), n)
    return sources


def _within_radii(x: np.ndarray, y: np.ndarray, r_in: float, r_out: float) -> np.ndarray:
    """``(np.hypot(x, y) >= r_in) & (np.hypot(x, y) <= r_out)``, with ``hypot`` only where the
    squared distance lies within 1e-9 (relative) of a squared radius: elsewhere both decide alike."""
    d2 = x * x
    d2 += y * y
    inside = (d2 >= r_in * r_in) & (d2 <= r_out * r_out)
    close = np.flatnonzero((np.abs(d2 - r_in * r_in) <= 1e-9 * r_in * r_in) | (np.abs(d2 - r_out * r_out) <= 1e-9 * r_out * r_out))
    if close.size:
        exact = np.hypot(np.take(x, close), np.take(y, close))
        inside.reshape(-1)[close] = (exact >= r_in) & (exact <= r_out)
    return inside


def annulus_background(
    cutouts: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    *,
    r_in: float = ANNULUS_RADII[0],
    r_out: float = ANNULUS_RADII[1],
    estimator: BackgroundEstimator = "masked_mean",
    sigma: float | None = None,
    maxiters: int | None = None,
    source_mask: np.ndarray | None = None,
) -> AnnulusBackground:
    """Mean and variance of the sky pixels in an annulus centred on each target.

    Parameters
    ----------
    cutouts : ndarray, shape (n, S, S)
        Pixel values (e-/s per pixel); NaN marks masked or off-image pixels, which are ignored.
        The target sits at ``(S//2 + dx, S//2 + dy)``; the annulus needs ``S >= 2 * r_out + 2``
        to be complete.
    dx, dy : array_like, shape (n,)
        Sub-pixel offsets of the targets (pixels).
    r_in, r_out : float, keyword-only
        Annulus radii (pixels) measured from the target to the pixel centres; PAUS uses 30 and 45.
    estimator : {"masked_mean", "clipped_mean", "median_clip"}, keyword-only
        ``"masked_mean"`` (default): sources detected in the cutouts are left out of the annulus,
        then a mean-centred clip at ``sigma`` standard deviations (:func:`clipped_mean`); unbiased
        for the mean of skewed sky noise and free of the faint wings of sources.
        ``"clipped_mean"``: the clip alone, without the source mask.
        ``"median_clip"``: the historical median-centred ``astropy.stats.sigma_clip``, biased low
        by about ``0.045 g`` standard deviations for sky noise of skewness ``g``.
    sigma : float or None, keyword-only
        Clipping threshold (standard deviations); None: 6 for ``"masked_mean"``, 5 for
        ``"clipped_mean"``, 3 for ``"median_clip"``. The variance correction uses the same value.
    maxiters : int or None, keyword-only
        Most clipping iterations; None: 10 for ``"masked_mean"`` and ``"clipped_mean"``, 5 for
        ``"median_clip"``.
    source_mask : ndarray of bool, shape (n, S, S), or None, keyword-only
        For ``"masked_mean"``: the pixels of sources detected on the whole frame
        (:func:`lumos_ops.photometry.frame_sources.frame_sources`, cut like ``cutouts``), left out
        instead of detecting sources in each cutout. None: detect them in the cutouts.

    Returns
    -------
    AnnulusBackground
        Mean (e-/s per pixel) and variance ((e-/s)^2 per pixel) of the kept pixels; ``n_used``
        leaves out the pixels of detected sources.
    """
    if estimator not in BACKGROUND_ESTIMATORS:
        raise LumosValueError(f"estimator must be one of {BACKGROUND_ESTIMATORS}, got {estimator!r}")
    if cutouts.ndim != 3 or cutouts.shape[1] != cutouts.shape[2]:
        raise LumosValueError(f"cutouts must have shape (n, S, S), got {cutouts.shape}")
    if not 0 <= r_in < r_out:
        raise LumosValueError(f"annulus radii must satisfy 0 <= r_in < r_out, got r_in={r_in}, r_out={r_out}")
    sigma = _DEFAULT_SIGMA[estimator] if sigma is None else float(sigma)
    maxiters = _DEFAULT_MAXITERS[estimator] if maxiters is None else int(maxiters)
    n, size = cutouts.shape[0], cutouts.shape[-1]
    if n == 0:
        none = np.zeros(0, dtype=np.int64)
        return AnnulusBackground(mean=np.zeros(0), variance=np.zeros(0), n_used=none, n_total=none, n_masked=none)
    dx = np.broadcast_to(np.asarray(dx, dtype=np.float64), (n,))
    dy = np.broadcast_to(np.asarray(dy, dtype=np.float64), (n,))
    centre = size // 2
    # Pixels that can fall in the annulus for any offset in [-0.5, 0.5]^2, as offsets from the centre.
    offsets = np.arange(-int(np.ceil(r_out + 1)), int(np.ceil(r_out + 1)) + 1)
    oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
    r0 = np.hypot(ox, oy)
    keep = (r0 >= r_in - 0.75) & (r0 <= r_out + 0.75)
    ox, oy, r0 = ox[keep], oy[keep], r0[keep]
    # Pixels farther than the largest offset from both radii are in the annulus whatever the
    # offset; the exact radius is needed for the others only.
    reach = float(np.hypot(np.max(np.abs(dx), initial=0.0), np.max(np.abs(dy), initial=0.0))) + 1e-6
    edge = np.flatnonzero((r0 - reach <= r_in) | (r0 + reach >= r_out))
    ring = _within_radii(ox[None, edge] - dx[:, None], oy[None, edge] - dy[:, None], r_in, r_out)
    n_total = ox.size - np.count_nonzero(~ring, axis=1)
    n_masked = np.zeros(n, dtype=np.int64)
    rows, cols = centre + oy, centre + ox
    inside_grid = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    rows, cols = rows[inside_grid], cols[inside_grid]
    # float32 cutouts stay float32 (exact); sums are accumulated in float64
    flat = rows * size + cols
    values = np.take(cutouts.reshape(n, size * size), flat, axis=1)
    if values.dtype != np.float32:
        values = values.astype(np.float64)
    # pixels outside the annulus (only edge pixels can be) by flat index into values
    column = np.cumsum(inside_grid) - 1
    on_grid = inside_grid[edge]
    target, pixel = np.nonzero(~ring[:, on_grid])
    values.reshape(-1)[target * values.shape[1] + column[edge[on_grid]][pixel]] = np.nan
    if estimator == "median_clip":
        values = values.astype(np.float64)
        kept = _median_clip(values, sigma=sigma, maxiters=maxiters)
        n_used = kept.sum(axis=1)
        mean = _row_mean(values, kept)
        sq = _row_squares(values, kept, mean)[0]
    else:
        if estimator == "masked_mean":
            finite = np.isfinite(values)
            if source_mask is not None:
                if source_mask.shape != cutouts.shape:
                    raise LumosValueError(f"source_mask must have the shape of cutouts {cutouts.shape}, got {source_mask.shape}")
                sources = np.take(source_mask.reshape(n, size * size), flat, axis=1)
                sources &= finite
            else:
                sources = _annulus_sources(cutouts, values, rows, cols) & finite
            # An annulus (nearly) covered by sources keeps its clipped mean, not an empty one.
            enough = np.count_nonzero(finite & ~sources, axis=1) >= MIN_SKY_FRACTION * np.count_nonzero(finite, axis=1)
            sources &= enough[:, None]
            n_masked = np.count_nonzero(sources, axis=1)
            values[sources] = np.nan
        _, n_used, mean, sq = _clip(values, sigma, maxiters, mask=False)
    variance = sq / np.maximum(n_used - 1, 1) / _truncated_normal_variance(sigma)
    mean = np.where(n_used > 0, mean, np.nan)
    variance = np.where(n_used > 1, variance, np.nan)
    return AnnulusBackground(
        mean=mean,
        variance=variance,
        n_used=n_used.astype(np.int64),
        n_total=n_total.astype(np.int64),
        n_masked=n_masked.astype(np.int64),
    )
