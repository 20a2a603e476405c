"""Per-exposure calibration of the reported flux errors on blank-sky positions ("empty apertures").

Every method reports an error from a noise model: the classical methods from the pixel variance of
the background annulus, LUMOS from the noise the network reads in the stamp. On real frames the
noise of a *sum* of pixels is not the pixel variance times the weights squared: resampled or
co-added frames have correlated pixels, the sky has structure and faint undetected sources, noise
has non-Gaussian tails, headers describe it imperfectly. A pixel-variance error model cannot see
any of that. The standard remedy needs no truth and works on any survey: measure each method at
positions with no source (true flux 0) through the same code and compare the scatter of the
measured fluxes with the reported errors (docs/likelihood.md, "Error calibration on real pixels").

For an exposure and its methods, :func:`calibrate_noise`

1. chooses up to ``n_positions`` (default 200) blank-sky positions (:func:`blank_sky_positions`):
   at least ``clearance`` px (the reach ``FWHM + 3 r50`` of the catalogue's median target, >= 5 px)
   from the frame's detected sources grown by the FWHM (the detection the targets' background
   masks, :func:`lumos_ops.photometry.frame_sources.frame_sources`, made once per frame: 4 sigma
   of the image smoothed by a Gaussian of 2 px in groups of >= 5 pixels, which noise alone almost
   never triggers, so the positions are not selected on the noise they will measure), at least
   ``clearance`` plus its own reach from every catalogue target, half a stamp inside the CCD and
   ``clearance`` apart; a seeded RNG makes them reproducible. Where fewer than
   ``4 * min_positions`` (120) are found (a small frame, or one crowded with targets), positions
   half as far apart are tried, down to 2 px (:func:`_denser_positions`; ``NoiseCalibration.separation``
   records the spacing used): correlated neighbours scatter the scale more than ``1 / sqrt(N)``
   but do not bias it, where too few positions would leave the errors uncalibrated;
2. gives each position the shape (``r50``, ``sersic_n``, ``q``, ``pa``, ``i_auto``) of a catalogue
   row drawn at random, so that apertures, weights and stamps have the targets' sizes;
3. measures these zero-flux pseudo-targets with the method instances of the run
   (:func:`lumos_ops.measure.prepare_targets` then ``method.measure``: the same code as the
   targets);
4. fits, per method, the error scale as a function of the target's matched-filter area
   ``A = 1 / sum(R^2)`` (:func:`model_area`; correlated noise adds up more over a larger
   footprint): ``k(A) = scale (A / A_ref) ** slope`` (:func:`fit_error_scale`), ``scale`` the
   sigma68 of the pulls ``flux / flux_err`` (for LUMOS the likelihood median over its 68 %
   half-width), the slope kept only when significant. ``k`` measured on fewer than
   ``min_positions`` (30) usable positions is not trusted: ``k = 1`` with a warning.

:func:`apply_error_scale` applies ``k`` to the *background* part of the variance only:

    flux_err^2 = k^2 * bkg_term + source_term

A blank position has no source term, so ``k`` measures the background part alone; the source's
own Poisson noise is what the error model already describes. ``source_term`` is
``max(F, 0) / (L t)`` for the aperture (``L`` the model light in the aperture, ``t`` the exposure
time: exactly the method's own term) and ``sum w^2 max(F R, 0) / t`` for the model-weighted
estimates (optimal, modelfit: ``w`` the inverse-variance weights of eq. 6 at the measured flux,
exactly the terms of their reported error). LUMOS reports no split: its 68 % half-width is scaled
by ``sqrt(1 + phi (k^2 - 1))`` with ``phi`` the background fraction of the variance of the optimal
weighted sum of the same target at the LUMOS flux (the ideal linear estimator's split), and the
whole likelihood is widened about its median (:func:`widen_mixture`): every component's distance
to the median and its sigma scale by that factor, so the median stays and every quantile's
distance to it (sigma68, sigma95) scales by it. Faint targets (``phi`` ~ 1) get the full ``k``,
Poisson-dominated bright ones little of it.

**With a source present** (:func:`measure_source_present`, methods that return a likelihood mixture,
i.e. LUMOS). A zero-flux position calibrates only what LUMOS does with an empty stamp; the network
reads its width from the pixels, and how that width holds with a galaxy in the stamp is not a
noise-model question. At the same blank-sky positions, each position gets the unit-flux model of
its pseudo-target (the model channel itself: Sersic convolved with the exposure's PSF) times a flux
``F`` of true SNR ``S`` drawn log-uniformly over :data:`SOURCE_SNR_BANDS` (``S`` over the calibrated
blank-sky error there), plus its Poisson noise, added to the stamp's real pixels. LUMOS measures
them through its own code; with the blank-sky ``k`` applied, ``u = (median - F) / flux_err`` should
have sigma68 1. In each SNR band its sigma68 ``r`` (:class:`SourceBand`) is kept when at least
``min_positions`` positions are usable and ``r - 1`` is at least 2 bootstrap standard errors (the
check only widens: a perfect model measured narrower than its width says nothing about real targets,
which are not perfect models);
each LUMOS likelihood is then widened by a further factor, the ``r`` of the band that holds the
row's own SNR (its median over its blank-calibrated width), and below the first band a linear
ramp from 1 at zero flux, where the blank-sky ``k`` holds by construction (:class:`SourceScale`).
The galaxies are perfect models, so ``r`` carries no profile mismatch: it is the part of the
error that the real background adds once a source is there.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lumos_ops.constants import PIXEL_SCALE, STAMP_SIZE
from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.lumos.mixture_table import Mixtures, has_mixture, mixture_columns, mixtures_from_table

if TYPE_CHECKING:
    from lumos_ops.io.exposure import Exposure
    from lumos_ops.target_context import MeasureMethod, TargetContext

__all__ = [
    "NoiseCalibration",
    "robust_sigma",
    "source_clearance",
    "source_mask",
    "subtract_sky",
    "detect_sources",
    "blank_sky_positions",
    "blank_sky_catalog",
    "measure_blank_sky",
    "model_area",
    "context_model_area",
    "fit_error_scale",
    "fit_error_scales",
    "calibrate_noise",
    "background_fraction",
    "SourceBand",
    "SourceScale",
    "measure_source_present",
    "SOURCE_SNR_BANDS",
    "widen_mixture",
    "widen_likelihoods",
    "apply_error_scale",
    "BAD_BLANK_FLAGS",
    "MIN_POSITIONS",
]

log = logging.getLogger(__name__)

MIN_POSITIONS: int = 30
"""Fewest usable blank-sky positions from which ``k`` is trusted (sigma68 to about +-17 %)."""

BAD_BLANK_FLAGS: int = int(
    Flag.OFF_IMAGE | Flag.EDGE | Flag.MASKED | Flag.SATURATED | Flag.ANNULUS_INCOMPLETE | Flag.FIT_FAILED | Flag.PRIOR_EDGE
)
"""Blank-sky measurements with any of these flags are left out of ``k`` (NEGATIVE_MODEL is kept:
half of the blank-sky fluxes are negative)."""

_SHAPE_COLUMNS: tuple[str, ...] = ("r50", "sersic_n", "q", "pa", "i_auto")

SOURCE_SNR_BANDS: tuple[tuple[float, float], ...] = ((1.0, 5.0), (5.0, 100.0))
"""True-SNR bands of :func:`measure_source_present` (flux over the calibrated blank-sky error at the
position): the injected SNRs are drawn log-uniformly over their whole range, and each band gets its
own scale."""


@dataclasses.dataclass(frozen=True)
class SourceBand:
    """The source-present check of one true-SNR band (module docstring).

    Attributes
    ----------
    snr_range : (float, float)
        The band's true SNRs.
    scale : float
        sigma68 of ``(median - F) / flux_err`` of the injected model galaxies in the band, blank-sky
        ``k`` applied (NaN when none was usable).
    scale_err : float
        Its bootstrap standard error (200 seeded resamples).
    n_positions : int
        Usable injected positions in the band (finite, none of :data:`BAD_BLANK_FLAGS`).
    median_pull : float
        Median of the same pulls (diagnostic: a bias in units of the error; not corrected).
    reliable : bool
        ``n_positions >= min_positions`` and ``scale - 1 >= 2 scale_err`` (widening only): otherwise its
        factor is 1.
    """

    snr_range: tuple[float, float]
    scale: float
    scale_err: float
    n_positions: int
    median_pull: float
    reliable: bool

    @property
    def factor(self) -> float:
        """The band's width factor: ``scale`` when reliable, else 1."""
        return float(self.scale) if self.reliable else 1.0


@dataclasses.dataclass(frozen=True)
class SourceScale:
    """How much wider than its blank-sky-calibrated width a likelihood method's error is with a
    source present (module docstring), on one exposure: one :class:`SourceBand` per SNR band.

    A row of (blank-calibrated) SNR ``S`` gets the factor of the band holding ``S`` (the last band
    also above its range); below the first band, ``1 + (f_1 - 1) S / S_1`` from 1 at zero flux,
    where the blank-sky ``k`` holds by construction, to that band's factor ``f_1`` at its lower
    edge ``S_1``.
    """

    bands: tuple[SourceBand, ...]

    @property
    def reliable(self) -> bool:
        """Whether any band changes the width."""
        return any(band.reliable for band in self.bands)

    def factor(self, snr: np.ndarray) -> np.ndarray:
        """Width factor at (blank-calibrated) SNR ``snr`` (NaN and negative SNR count as 0)."""
        snr = np.clip(np.nan_to_num(np.asarray(snr, dtype=np.float64), nan=0.0), 0.0, None)
        if not self.bands:
            return np.ones(snr.shape)
        first = self.bands[0]
        out = 1.0 + (first.factor - 1.0) * np.minimum(snr / first.snr_range[0], 1.0)
        for band in self.bands[1:]:
            out = np.where(snr >= band.snr_range[0], band.factor, out)
        return out


@dataclasses.dataclass(frozen=True)
class NoiseCalibration:
    """The blank-sky error calibration of one method on one exposure.

    The error scale of a target of matched-filter area ``A`` (:func:`model_area`) is
    ``k(A) = scale * (A / area_ref) ** slope`` with ``A`` clipped to ``area_range`` (no
    extrapolation beyond the sizes measured on blank sky); 1 when not ``reliable``.

    Attributes
    ----------
    method : str
        Registry name of the method.
    scale : float
        ``k`` at ``area_ref``: the sigma68 of the blank-sky pulls ``flux / flux_err`` brought to that
        size with the fitted slope (NaN when nothing was measured).
    slope : float
        ``d log k / d log A`` (:func:`fit_error_scale`): 0 with fewer than ``2 * min_positions``
        positions or when the fit is within 2 standard errors of 0.
    slope_err : float
        Bootstrap standard error of the fitted slope (NaN when not fitted).
    area_ref : float
        Geometric mean of ``A`` (pixels) over the usable blank-sky positions.
    area_range : (float, float)
        Smallest and largest ``A`` of the usable positions.
    n_positions : int
        Usable blank-sky measurements (finite, none of :data:`BAD_BLANK_FLAGS`).
    median_pull : float
        Median blank-sky pull: a background bias in units of the error (diagnostic; not corrected).
    reliable : bool
        ``n_positions >= min_positions``: otherwise no calibration is applied (``k = 1``).
    bins : tuple of (A, k, n)
        The binned measurement the fit used: median ``A``, sigma68 of the pulls, count.
    source : SourceScale or None
        The source-present check (methods returning a likelihood mixture); None when not run.
    separation : float
        Spacing (pixels) of the blank-sky positions measured: the clearance, or less on a small or
        crowded frame (:func:`calibrate_noise`); NaN when not set.
    """

    method: str
    scale: float
    slope: float
    slope_err: float
    area_ref: float
    area_range: tuple[float, float]
    n_positions: int
    median_pull: float
    reliable: bool
    bins: tuple[tuple[float, float, int], ...] = ()
    source: SourceScale | None = None
    separation: float = float("nan")

    def k(self, area: np.ndarray | float) -> np.ndarray:
        """Error scale of targets of matched-filter area ``area`` (pixels); 1 when not reliable."""
        area = np.asarray(area, dtype=np.float64)
        if not self.reliable:
            return np.ones(area.shape)
        lo, hi = self.area_range
        clipped = np.clip(np.nan_to_num(area, nan=self.area_ref), lo, hi)
        return self.scale * (clipped / self.area_ref) ** self.slope

    @classmethod
    def identity(cls, method: str) -> NoiseCalibration:
        """No calibration (``k = 1``)."""
        return cls(method=method, scale=1.0, slope=0.0, slope_err=float("nan"), area_ref=1.0, area_range=(1.0, 1.0),
                   n_positions=0, median_pull=float("nan"), reliable=False)


# --------------------------------------------------------------------------------------- masks


def robust_sigma(data: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 x MAD) of the finite pixels after 3 rounds of 4-sigma clipping (counts)."""
    values = np.asarray(data, dtype=np.float64).reshape(1, -1)
    if values.size == 0:
        return float("nan"), float("nan")
    median, sigma = _robust_rows(values)
    return float(median[0]), float(sigma[0])


def _robust_rows(values: np.ndarray, rounds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """:func:`robust_sigma` of every row of ``values`` (n, m), from one sort per row.

    Each round keeps the values within 4 sigma of the median, a contiguous run of the sorted row:
    the rounds move the ends of that run, and every median and MAD is taken on it
    (:func:`lumos_ops.photometry.background.sorted_median_and_mad`), so the numbers are those of
    the clipping loop on the values themselves.
    """
    from lumos_ops.photometry.background import sorted_median_and_mad

    n, m = values.shape
    ordered = np.sort(values, axis=1)  # -inf first, NaN last
    infinite = np.isinf(values)
    start = (infinite & (values < 0)).sum(axis=1) if infinite.any() else np.zeros(n, dtype=np.int64)
    stop = start + np.isfinite(values).sum(axis=1)
    row = np.arange(n)
    last = max(m - 1, 0)
    active = np.ones(n, dtype=bool)
    for _ in range(rounds):
        median, mad = sorted_median_and_mad(ordered, start, stop)
        sigma = 1.4826 * mad
        active &= sigma > 0
        if not active.any():
            break
        limit = 4.0 * sigma
        with np.errstate(invalid="ignore"):
            # first kept: the first element >= median or within the limit below it
            lo, hi = start.copy(), stop.copy()
            while (open_ := active & (lo < hi)).any():
                mid = (lo + hi) // 2
                value = ordered[row, np.clip(mid, 0, last)]
                drop = open_ & (value < median) & ~(np.abs(value - median) < limit)
                lo = np.where(drop, mid + 1, lo)
                hi = np.where(open_ & ~drop, mid, hi)
            first = lo
            # end of the kept run: the first element > median beyond the limit
            lo, hi = first.copy(), stop.copy()
            while (open_ := active & (lo < hi)).any():
                mid = (lo + hi) // 2
                value = ordered[row, np.clip(mid, 0, last)]
                keep = open_ & ~((value > median) & ~(np.abs(value - median) < limit))
                lo = np.where(keep, mid + 1, lo)
                hi = np.where(open_ & ~keep, mid, hi)
        start = np.where(active, first, start)
        stop = np.where(active, lo, stop)
    median, mad = sorted_median_and_mad(ordered, start, stop)
    return median, 1.4826 * mad


def source_mask(data: np.ndarray, *, mask_sigma: float = 3.0, grow: int = 4) -> np.ndarray:
    """Pixels of a frame's own sources: above ``mask_sigma`` robust sigmas, grown by ``grow`` px (and NaNs).

    Single pixels above 3 sigma are also noise (0.13 % of white-noise pixels): this mask leaves
    real light out of a noise statistic (:func:`lumos_ops.evaluation.injection.noise_autocovariance`);
    it chooses no positions (:func:`source_clearance`, :func:`detect_sources`).
    """
    from scipy import ndimage

    med, sig = robust_sigma(data)
    resid = np.nan_to_num(data - med, nan=np.inf)
    return ndimage.binary_dilation(resid >= mask_sigma * sig, iterations=grow)


def source_clearance(data: np.ndarray, *, fwhm_px: float) -> np.ndarray:
    """Distance (pixels) of every pixel from the nearest pixel of the frame's detected sources (0 on
    them): those of :func:`detect_sources` with the PSF's FWHM ``fwhm_px`` in pixels, and those the
    measurement itself detects (:func:`lumos_ops.photometry.frame_sources.detect_frame_sources`).

    The one placement rule for synthetic targets: ``lumos inject`` and ``lumos adapt`` put
    injected galaxies where it is at least their ``min_clearance``, and TEAHUPOO
    (``TeahupooConfig.target_clearance``) cuts its training backgrounds around positions where it
    is at least the same value, so training and test stamps hold the same sky at their centres.

    The sources are detected on smoothed frames, so the rule does not choose positions by their
    own noise. A cut on single pixels above 3 sigma (:func:`source_mask`) rejects about half of a
    pure-noise frame within 10 px and keeps the places where the noise happens to be low: there the
    local sky reads below the annulus mean and scatters less than the errors say
    (``reports/lumos/placement-noise``). The measurement's detections count too because a
    PSF-matched filter is no wider than the PSF: where the PSF is undersampled (0.65 px FWHM on
    SDSS frames resampled to 1.188 arcsec) it barely smooths and misses faint extended sources
    that the measurement's 2 px Gaussian finds. A target put on one is, for the measurement, one
    source with it, and reads its light (``reports/adapt/placement-detections``).
    """
    from scipy import ndimage

    from lumos_ops.photometry.frame_sources import detect_frame_sources

    sources = detect_sources(data, fwhm_px=fwhm_px) | detect_frame_sources(data).detected
    return ndimage.distance_transform_edt(~sources)


def subtract_sky(data: np.ndarray, *, box: int = 64, extrapolate: bool = False) -> np.ndarray:
    """``data`` minus its coarse sky (clipped medians of ``box`` px blocks, bilinearly interpolated;
    NaN pixels stay NaN): frame-wide noise statistics then see the noise, not a sky gradient or a
    pedestal (a frame that is not sky-subtracted, scattered light, vignetting).

    Between the frame's edges and its outer block centres (half a block) the sky is held at the
    outer blocks' values, or, with ``extrapolate``, continued along the line through the last two:
    a gradient then leaves no ramp of up to half a block's step in the edge strips, which statistics
    over large lags (:func:`lumos_ops.evaluation.injection.noise_autocovariance`) would read as
    correlated noise."""
    data = np.asarray(data, dtype=np.float64)
    return data - _coarse_background(data, box, extrapolate=extrapolate)


def _block_positions(n: int, centres: np.ndarray, extrapolate: bool) -> tuple[np.ndarray, np.ndarray]:
    """For pixels 0..n-1, the index of the block centre at or before each (int64) and the fraction
    of the way to the next; held at the outer centres, or continued beyond them with ``extrapolate``."""
    pos = np.interp(np.arange(n), centres, np.arange(centres.size))
    if extrapolate and centres.size > 1:
        pixels = np.arange(n)
        below, above = pixels < centres[0], pixels > centres[-1]
        pos[below] = (pixels[below] - centres[0]) / (centres[1] - centres[0])
        pos[above] = centres.size - 1 + (pixels[above] - centres[-1]) / (centres[-1] - centres[-2])
    start = np.clip(np.floor(pos), 0, max(centres.size - 2, 0)).astype(np.int64)
    return start, pos - start


def _coarse_background(data: np.ndarray, box: int, *, extrapolate: bool = False) -> np.ndarray:
    """Sky level from clipped medians of ``box`` x ``box`` blocks, bilinearly interpolated
    (beyond the outer block centres held, or with ``extrapolate`` continued linearly)."""
    ny, nx = data.shape
    by, bx = max(ny // box, 1), max(nx // box, 1)
    grid = np.full((by, bx), np.nan)
    ys = np.linspace(0, ny, by + 1).astype(int)
    xs = np.linspace(0, nx, bx + 1).astype(int)
    heights, widths = np.diff(ys), np.diff(xs)
    # blocks of one shape at a time, one row of values per block
    for h in np.unique(heights):
        bi = np.flatnonzero(heights == h)
        rows = data[(ys[bi][:, None] + np.arange(h)).ravel()].reshape(bi.size, h, nx)
        for w in np.unique(widths):
            bj = np.flatnonzero(widths == w)
            if bj.size * w == nx:  # equal blocks across the row: a reshape
                blocks = rows.reshape(bi.size, h, bj.size, w)
            else:
                blocks = rows[:, :, (xs[bj][:, None] + np.arange(w)).ravel()].reshape(bi.size, h, bj.size, w)
            values = blocks.transpose(0, 2, 1, 3).reshape(bi.size * bj.size, h * w)
            grid[np.ix_(bi, bj)] = _robust_rows(values)[0].reshape(bi.size, bj.size)
    fill = np.nanmedian(grid) if np.isfinite(grid).any() else 0.0
    grid = np.where(np.isfinite(grid), grid, fill)
    if grid.size == 1:
        return np.full(data.shape, grid[0, 0])
    # block centres -> pixel grid, bilinear between block centres
    cy = 0.5 * (ys[:-1] + ys[1:]) - 0.5
    cx = 0.5 * (xs[:-1] + xs[1:]) - 0.5
    y0, ty = _block_positions(ny, cy, extrapolate)
    x0, tx = _block_positions(nx, cx, extrapolate)
    y1, x1 = np.minimum(y0 + 1, by - 1), np.minimum(x0 + 1, bx - 1)
    along_x = grid[:, x0] * (1.0 - tx) + grid[:, x1] * tx
    sky = np.empty((ny, nx))
    # rows between the same two block centres share their two rows of along_x
    cuts = np.flatnonzero(np.diff(y0)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, ny]):
        t = ty[lo:hi, None]
        sky[lo:hi] = along_x[y0[lo]] * (1.0 - t) + along_x[y1[lo]] * t
    return sky


def _dilate_disc(mask: np.ndarray, radius: float, *, strict: bool = False) -> np.ndarray:
    """Pixels within ``radius`` (``< radius`` when ``strict``) of a True pixel of ``mask`` (2-D).

    The same pixels as ``distance_transform_edt(~mask) <= radius`` (``< radius``): the disc of
    integer offsets with ``sqrt(dx**2 + dy**2)`` within ``radius``, as a union of horizontal runs
    (one per row offset, :func:`lumos_ops.photometry.row_runs.dilate_by_runs`), nothing beyond the
    image.
    """
    from lumos_ops.photometry.row_runs import dilate_by_runs

    reach = int(np.floor(radius)) if radius >= 0 else -1
    if reach < 0 or (strict and radius <= 0):
        return np.zeros(mask.shape, dtype=bool)
    offsets = np.arange(reach + 1)
    distance = np.sqrt(offsets[:, None].astype(np.float64) ** 2 + offsets[None, :].astype(np.float64) ** 2)
    inside = distance < radius if strict else distance <= radius
    half_width = np.where(inside.any(axis=1), inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1), -1)
    return dilate_by_runs(mask, half_width.tolist())


def detect_sources(
    data: np.ndarray,
    *,
    fwhm_px: float,
    threshold: float = 4.0,
    min_area: int = 5,
    grow: float | None = None,
    box: int = 64,
) -> np.ndarray:
    """Pixels of a frame's detected sources (and NaN pixels), for choosing blank sky.

    The frame minus a coarse sky (clipped medians of ``box`` px blocks) is smoothed with a Gaussian
    of the PSF's FWHM (the matched filter of a point source); pixels above ``threshold`` times the
    robust noise *of the smoothed image* (so correlated noise sets its own threshold) in groups of
    at least ``min_area`` pixels are sources, grown by ``grow`` px (default: the FWHM). At 4 sigma
    a PSF-smoothed noise field has about one false detection per 3e4 PSF areas, so blank positions
    are not chosen on their own noise (a single-pixel 3-sigma cut, :func:`source_mask`, rejects
    about half of pure-noise positions within 10 px and biases their scatter low).
    """
    from scipy import ndimage

    data = np.asarray(data, dtype=np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.ones(data.shape, dtype=bool)
    sky = _coarse_background(np.where(finite, data, np.nan), box)
    resid = np.where(finite, data - sky, 0.0)
    sigma = max(float(fwhm_px), 0.5) / 2.3548
    if finite.all():  # the filtered ones are one number: that of any all-ones image
        weight = ndimage.gaussian_filter(np.ones((1, 1)), sigma)[0, 0]
    else:
        weight = ndimage.gaussian_filter(finite.astype(np.float64), sigma)
    smooth = ndimage.gaussian_filter(resid, sigma) / np.maximum(weight, 1e-3)
    smooth[~finite] = np.nan
    _, noise = robust_sigma(smooth)
    if not noise > 0:
        return ~finite
    above = np.nan_to_num(smooth, nan=0.0) > threshold * noise
    labels, count = ndimage.label(above)
    if count:
        where = np.flatnonzero(above)
        label_of = labels.ravel()[where]
        sizes = np.bincount(label_of, minlength=count + 1)
        above = np.zeros(above.shape, dtype=bool)
        above.ravel()[where[sizes[label_of] >= min_area]] = True
    mask = above | ~finite
    radius = float(fwhm_px if grow is None else grow)
    if radius > 0 and mask.any():
        mask = _dilate_disc(mask, radius)
    return mask


def _frame_detections(exposure: Exposure) -> np.ndarray:
    """The sources the targets' background leaves out (one detection per frame,
    :func:`lumos_ops.photometry.frame_sources.frame_sources`) and the NaN pixels, grown by the FWHM."""
    from lumos_ops.photometry.frame_sources import frame_sources

    mask = frame_sources(exposure.data).detected | ~np.isfinite(exposure.data)
    radius = float(exposure.psf_fwhm) / exposure.pixel_scale
    return _dilate_disc(mask, radius) if radius > 0 and mask.any() else mask


# ----------------------------------------------------------------------------------- positions


def _reach_px(r50_arcsec: np.ndarray, fwhm_px: float, pixel_scale: float = PIXEL_SCALE) -> np.ndarray:
    """Radius (px) holding nearly all of a target's light: the FWHM plus 3 half-light radii
    (arcsec at ``pixel_scale`` arcsec / pixel)."""
    return fwhm_px + 3.0 * np.asarray(r50_arcsec, dtype=np.float64) / pixel_scale


def blank_sky_positions(
    exposure: Exposure,
    x_targets: np.ndarray,
    y_targets: np.ndarray,
    r50_targets: np.ndarray,
    *,
    n_positions: int = 200,
    margin: int = STAMP_SIZE // 2,
    seed: int = 0,
    mask: np.ndarray | None = None,
    clearance: float | None = None,
    separation: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_positions`` blank-sky pixel positions (x, y) on an exposure.

    A position is blank when it lies ``margin`` px inside the CCD, at least ``clearance`` px from
    every pixel of ``mask`` (default :func:`detect_sources`), and at least ``clearance`` plus the
    target's own reach (:func:`_reach_px`) from every catalogue target. ``clearance`` defaults to
    the reach of the catalogue's median target (>= 5 px). Positions are drawn at random (``seed``)
    from the blank pixels, at least ``separation`` px apart (default ``clearance``), with a uniform
    sub-pixel offset. Fewer are returned on small or crowded frames.
    """
    if n_positions < 1:
        raise LumosValueError(f"n_positions must be >= 1, got {n_positions}")

    rng = np.random.default_rng(seed)
    ny, nx = exposure.shape
    scale = exposure.pixel_scale
    fwhm_px = float(exposure.psf_fwhm) / scale
    r50_targets = np.asarray(r50_targets, dtype=np.float64)
    typical = float(np.median(r50_targets)) if r50_targets.size else 0.5
    reach = (max(float(_reach_px(np.array([typical]), fwhm_px, scale)[0]), 5.0) if clearance is None
             else float(clearance))
    separation = reach if separation is None else float(separation)
    if mask is None:
        mask = detect_sources(exposure.data, fwhm_px=fwhm_px)
    free = ~_dilate_disc(mask, reach, strict=True) if mask.any() else np.ones((ny, nx), dtype=bool)
    inner = np.zeros((ny, nx), dtype=bool)
    if ny > 2 * margin and nx > 2 * margin:
        inner[margin : ny - margin, margin : nx - margin] = True
    free &= inner
    x_t = np.asarray(x_targets, dtype=np.float64)
    y_t = np.asarray(y_targets, dtype=np.float64)
    ok = np.isfinite(x_t) & np.isfinite(y_t)
    if ok.any() and free.any():
        # exclusion disk of radius clearance + reach(target) around every target
        own = _reach_px(r50_targets[ok], fwhm_px, scale) if r50_targets.size == x_t.size else np.full(int(ok.sum()), reach)
        _exclude_discs(free, x_t[ok], y_t[ok], reach + own)
    cand = np.flatnonzero(free.ravel())
    if cand.size == 0:
        return np.zeros(0), np.zeros(0)
    # a random order of (at most) the candidates the greedy pass below can use, without shuffling
    # the millions of blank pixels of a CCD
    cand = cand[rng.choice(cand.size, size=min(cand.size, max(50 * n_positions, 1000)), replace=False)]
    taken = np.zeros((ny, nx), dtype=bool)
    r = int(math.ceil(separation))
    disk_y, disk_x = np.mgrid[-r : r + 1, -r : r + 1]
    disk = disk_x**2 + disk_y**2 < separation**2
    xs, ys = [], []
    for flat in cand:
        yc, xc = divmod(int(flat), nx)
        if taken[yc, xc]:
            continue
        xs.append(xc)
        ys.append(yc)
        if len(xs) >= n_positions:
            break
        y0, y1, x0, x1 = yc - r, yc + r + 1, xc - r, xc + r + 1
        sy0, sx0 = max(-y0, 0), max(-x0, 0)
        sy1, sx1 = disk.shape[0] - max(y1 - ny, 0), disk.shape[1] - max(x1 - nx, 0)
        taken[max(y0, 0) : min(y1, ny), max(x0, 0) : min(x1, nx)] |= disk[sy0:sy1, sx0:sx1]
    jitter = rng.uniform(-0.5, 0.5, size=(2, len(xs)))
    return np.asarray(xs, dtype=np.float64) + jitter[0], np.asarray(ys, dtype=np.float64) + jitter[1]


def _exclude_discs(free: np.ndarray, x: np.ndarray, y: np.ndarray, radius: np.ndarray) -> None:
    """Set False the pixels of ``free`` (ny, nx) with ``(px - x)**2 + (py - y)**2 < radius**2`` for any disc.

    On each pixel row a disc covers one run of columns (the left side of the test, rounded as
    written, only grows away from the centre column), found from ``sqrt(radius**2 - dy**2)`` and
    moved pixel by pixel until its ends pass the test exactly and their outer neighbours fail it;
    then the pixels of all runs are set at once. Pixels beyond the image are ignored.
    """
    ny, nx = free.shape
    r2 = radius * radius
    y0 = np.maximum(np.floor(y - radius).astype(np.int64), 0)
    y1 = np.minimum(np.ceil(y + radius).astype(np.int64) + 1, ny)
    x0 = np.maximum(np.floor(x - radius).astype(np.int64), 0)
    x1 = np.minimum(np.ceil(x + radius).astype(np.int64) + 1, nx)
    rows = np.where(x1 > x0, np.maximum(y1 - y0, 0), 0)
    # one entry per (disc, pixel row of its bounding box)
    disc = np.repeat(np.arange(x.size), rows)
    row = y0[disc] + np.arange(disc.size) - np.repeat(np.cumsum(rows) - rows, rows)
    cx, cr2, first, last = x[disc], r2[disc], x0[disc], x1[disc] - 1
    dy2 = (row - y[disc]) ** 2

    def covered(col: np.ndarray) -> np.ndarray:
        return (col - cx) ** 2 + dy2 < cr2

    half = np.sqrt(np.maximum(cr2 - dy2, 0.0))
    lo = np.clip(np.ceil(cx - half).astype(np.int64), first, last + 1)
    hi = np.clip(np.floor(cx + half).astype(np.int64), first - 1, last)
    while (move := (lo > first) & covered(lo - 1)).any():
        lo -= move
    while (move := (lo <= hi) & ~covered(np.minimum(lo, last))).any():
        lo += move
    while (move := (hi < last) & covered(hi + 1)).any():
        hi += move
    while (move := (hi >= lo) & ~covered(np.maximum(hi, first))).any():
        hi -= move
    length = np.maximum(hi - lo + 1, 0)
    start = row * nx + lo
    # flat indices of every run's pixels (int32 where they fit: half the memory traffic)
    index = np.int32 if free.size < 2**31 else np.int64
    pixels = np.repeat((start - np.cumsum(length) + length).astype(index), length)
    pixels += np.arange(int(length.sum()), dtype=index)
    if free.flags.c_contiguous:
        free.reshape(-1)[pixels] = False
    else:
        np.put(free, pixels, False)


def blank_sky_catalog(catalog: pd.DataFrame, x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> pd.DataFrame:
    """Pseudo-targets at (x, y), each with the shape of a catalogue row drawn at random (pixel positions)."""
    rng = np.random.default_rng(seed + 1)
    n = len(x)
    if len(catalog) == 0:
        raise LumosValueError("the catalogue has no rows to draw blank-sky shapes from")
    rows = rng.integers(0, len(catalog), size=n)
    out = pd.DataFrame({"ref_id": np.arange(n, dtype=np.int64), "x": np.asarray(x, np.float64), "y": np.asarray(y, np.float64)})
    for column in _SHAPE_COLUMNS:
        out[column] = catalog[column].to_numpy()[rows]
    return out


# --------------------------------------------------------------------------------- calibration


def _sigma68(values: np.ndarray) -> float:
    q16, q84 = np.percentile(values, [16.0, 84.0])
    return 0.5 * float(q84 - q16)


def measure_blank_sky(
    exposure: Exposure,
    catalog: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    methods: Mapping[str, MeasureMethod],
    *,
    stamp_size: int = STAMP_SIZE,
    chunk_size: int = 512,
    seed: int = 0,
    mask_other_sources: bool = True,
) -> dict[str, pd.DataFrame]:
    """Measure zero-flux pseudo-targets at (x, y) with every method (shapes drawn from ``catalog``).

    Returns, per method, its result table plus the pseudo-targets' ``x``, ``y``, ``r50``, ``area``
    (:func:`model_area`), ``pull = flux / flux_err`` and ``usable`` (finite, none of :data:`BAD_BLANK_FLAGS`).
    ``mask_other_sources``: as the targets are measured (``TargetContext.mask_other_sources``).
    """
    return _measure_blank(exposure, catalog, x, y, methods, stamp_size=stamp_size, chunk_size=chunk_size, seed=seed,
                          mask_other_sources=mask_other_sources)[0]


def _measure_blank(
    exposure: Exposure,
    catalog: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    methods: Mapping[str, MeasureMethod],
    *,
    stamp_size: int,
    chunk_size: int,
    seed: int,
    mask_other_sources: bool = True,
) -> tuple[dict[str, pd.DataFrame], TargetContext | None]:
    """:func:`measure_blank_sky` and the context of its pseudo-targets (None when there are none)."""
    from lumos_ops.measure import _check_result, prepare_targets

    if len(x) == 0 or len(catalog) == 0:
        empty = pd.DataFrame(columns=["flux", "flux_err", "flag", "pull", "usable", "area"])
        return {name: empty.copy() for name in methods}, None
    blank = blank_sky_catalog(catalog, x, y, seed=seed)
    ctx = prepare_targets(exposure, blank, stamp_size=stamp_size, neighbours=False, mask_other_sources=mask_other_sources)
    out: dict[str, pd.DataFrame] = {}
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in methods}
    for start in range(0, ctx.n, chunk_size):
        sub = ctx.take(slice(start, min(start + chunk_size, ctx.n)))
        for name, method in methods.items():
            parts[name].append(_check_result(name, method.measure(sub), sub.n))
    area = model_area(ctx.models)
    for name in methods:
        frame = pd.concat(parts[name], ignore_index=True)
        flux = frame["flux"].to_numpy(np.float64)
        err = frame["flux_err"].to_numpy(np.float64)
        flag = frame["flag"].to_numpy(np.int64) | ctx.base_flags
        with np.errstate(divide="ignore", invalid="ignore"):
            pull = flux / err
        frame["pull"] = pull
        frame["usable"] = np.isfinite(pull) & (err > 0) & ((flag & BAD_BLANK_FLAGS) == 0)
        frame["x"], frame["y"], frame["r50"] = ctx.x, ctx.y, blank["r50"].to_numpy()
        frame["area"] = area.copy()
        out[name] = frame
    return out, ctx


def measure_source_present(
    ctx: TargetContext,
    blank: pd.DataFrame,
    name: str,
    method: MeasureMethod,
    calibration: NoiseCalibration,
    *,
    snr_bands: tuple[tuple[float, float], ...] = SOURCE_SNR_BANDS,
    min_positions: int = MIN_POSITIONS,
    chunk_size: int = 512,
    seed: int = 0,
) -> SourceScale:
    """The source-present width check of one likelihood method (module docstring).

    The method must measure from ``ctx.stamps`` and ``ctx.models`` (LUMOS does): the model galaxies
    are added to the stamps, not to the exposure that the classical methods cut their wider
    background cutouts from.

    Parameters
    ----------
    ctx : TargetContext
        The blank-sky pseudo-targets (stamps of real pixels, their unit-flux models).
    blank : DataFrame
        ``method``'s blank-sky result on ``ctx`` (:func:`measure_blank_sky`: ``flux_err`` raw,
        ``usable``, ``area``).
    name, method
        Registry name and the instance that measures the targets.
    calibration : NoiseCalibration
        The method's blank-sky calibration on this exposure (applied to the injected galaxies).
    snr_bands, min_positions, chunk_size, seed : keyword-only
        True-SNR bands (contiguous; the SNRs are drawn log-uniformly over their whole range), fewest
        usable positions per band, targets per method call, RNG seed (fluxes and Poisson noise).
    """
    from lumos_ops.measure import _check_result

    def band(lo: float, hi: float, pull: np.ndarray) -> SourceBand:
        n = int(pull.size)
        if n < max(min_positions, 2):
            return SourceBand((lo, hi), float("nan"), float("nan"), n, float("nan"), False)
        scale = _sigma68(pull)
        resample = np.random.default_rng([seed, 8, n]).integers(0, n, size=(200, n))
        q16, q84 = np.percentile(pull[resample], [16.0, 84.0], axis=1)
        scale_err = float(np.std(0.5 * (q84 - q16)))
        reliable = bool(np.isfinite(scale) and scale - 1.0 >= 2.0 * scale_err)
        return SourceBand((lo, hi), float(scale), scale_err, n, float(np.median(pull)), reliable)

    use = np.flatnonzero(blank["usable"].to_numpy(bool)) if len(blank) else np.zeros(0, dtype=np.int64)
    if use.size == 0 or not calibration.reliable:
        return SourceScale(tuple(band(lo, hi, np.zeros(0)) for lo, hi in snr_bands))
    sub = ctx.take(use)
    rng = np.random.default_rng([seed, 7])
    width = blank["flux_err"].to_numpy(np.float64)[use] * calibration.k(blank["area"].to_numpy(np.float64)[use])
    low, high = snr_bands[0][0], snr_bands[-1][1]
    snr = np.exp(rng.uniform(np.log(low), np.log(high), use.size))
    flux = snr * width
    light = flux[:, None, None] * sub.models.astype(np.float64)
    noise = rng.standard_normal(light.shape) * np.sqrt(np.maximum(light, 0.0) / float(sub.exposure.exptime))
    injected = (sub.stamps.data + light + noise).astype(sub.stamps.data.dtype)
    placed = dataclasses.replace(sub, stamps=dataclasses.replace(sub.stamps, data=injected))
    parts = []
    for start in range(0, use.size, chunk_size):
        chunk = slice(start, min(start + chunk_size, use.size))
        result = _check_result(name, method.measure(placed.take(chunk)), chunk.stop - chunk.start)
        # the blank-sky k, applied as to the targets; ctx only gives the model and the noise there
        parts.append(apply_error_scale(result, name, calibration, sub.take(chunk)))
    frame = pd.concat(parts, ignore_index=True)
    err = frame["flux_err"].to_numpy(np.float64)
    flag = frame["flag"].to_numpy(np.int64) | sub.base_flags
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = (frame["flux"].to_numpy(np.float64) - flux) / err
    good = np.isfinite(pull) & (err > 0) & ((flag & BAD_BLANK_FLAGS) == 0)
    return SourceScale(tuple(band(lo, hi, pull[good & (snr >= lo) & (snr < hi)]) for lo, hi in snr_bands))


def model_area(models: np.ndarray) -> np.ndarray:
    """Matched-filter area ``1 / sum(R^2)`` (pixels) of unit-flux models ``R`` (n, S, S); NaN for empty models.

    The number of pixels a profile-weighted flux effectively sums (``4 pi sigma^2`` for a Gaussian
    of ``sigma`` px): the size that sets how correlated noise adds up in every method's estimate.
    """
    models = np.asarray(models, dtype=np.float64)
    if not np.isfinite(models).all():
        models = np.nan_to_num(models, nan=0.0)
    power = np.einsum("nij,nij->n", models, models)
    with np.errstate(divide="ignore"):
        return np.where(power > 0, 1.0 / power, np.nan)


def context_model_area(ctx: TargetContext) -> np.ndarray:
    """:func:`model_area` of a context's target models, computed once and kept on the context (every
    method measuring it, and every correction of their results, reads the same areas)."""
    area = ctx.__dict__.get("_model_area")
    if area is None:
        area = ctx.__dict__["_model_area"] = model_area(ctx.models)
    return area


_SLOPE_RANGE = (-0.5, 1.0)
"""Bounds of the fitted ``d log k / d log A`` (white noise 0; noise correlated over the whole
footprint 0.5): a safety net against a wild fit on few positions."""


_BOOTSTRAP = 50
"""Bootstrap resamples that give the standard error of the fitted slope."""

_T_DOF = 4.0
"""Degrees of freedom of the Student-t density of the slope fit (robust to contaminated positions)."""


def _fit_slope(pull: np.ndarray, log_a: np.ndarray) -> float:
    """Maximum-likelihood slope of ``pull ~ mu + s exp(slope log_a) t_4`` (Nelder-Mead), clipped to ``_SLOPE_RANGE``."""
    return float(_fit_slopes(pull[None, :], log_a[None, :])[0])


def _fit_slopes(pull: np.ndarray, log_a: np.ndarray) -> np.ndarray:
    """:func:`_fit_slope` of every row of ``pull``, ``log_a`` (B, n), all minimised together; rows
    shorter than ``n`` are padded with NaN.

    The minimiser is :func:`_nelder_mead_rows`: scipy's Nelder-Mead (``xatol=1e-3``,
    ``fatol=1e-4``, ``maxiter=600``) step for step on each row, with the likelihood of all the
    rows that need it evaluated in one array operation.
    """
    nu = _T_DOF

    padded = bool(np.isnan(pull).any())

    every = np.arange(pull.shape[0])

    def nll(theta: np.ndarray, rows: np.ndarray) -> np.ndarray:
        # 0.5 (nu + 1) log1p(z^2 / nu) + log_scale, z = (pull - mu) exp(-log_scale): in place
        mu, log_s, slope = theta[:, 0, None], theta[:, 1, None], theta[:, 2, None]
        whole = rows.size == every.size and np.array_equal(rows, every)  # views, not copies
        log_scale = slope * (log_a if whole else log_a[rows])
        log_scale += log_s
        z = np.subtract(pull if whole else pull[rows], mu)
        z *= np.exp(np.negative(log_scale))
        z *= z
        z /= nu
        terms = np.log1p(z, out=z)
        terms *= 0.5 * (nu + 1.0)
        terms += log_scale
        return np.nansum(terms, axis=1) if padded else np.sum(terms, axis=1)

    start = _start_points(pull)
    best = _nelder_mead_rows(nll, start, xatol=1e-3, fatol=1e-4, maxiter=600)
    return np.clip(best[:, 2], *_SLOPE_RANGE)


def _start_points(pull: np.ndarray) -> np.ndarray:
    """Start of each row's slope fit (B, 3): the median and log sigma68 (at least 1e-6) of its finite
    pulls, slope 0.

    Rows whose finite pulls are the first ``c`` values (the padded rows of :func:`fit_error_scales`)
    are taken ``c`` at a time by ``np.median`` and ``np.percentile`` along the rows, which give
    each row's own numbers; other rows one by one.
    """
    finite = np.isfinite(pull)
    count = finite.sum(axis=1)
    prefix = finite.argmin(axis=1) == np.where(count == pull.shape[1], 0, count)
    median, sigma = np.empty(pull.shape[0]), np.empty(pull.shape[0])
    for c in np.unique(count[prefix]):
        rows = np.flatnonzero(prefix & (count == c))
        if c == 0:
            median[rows] = sigma[rows] = np.nan
            continue
        block = pull[rows, :c]
        median[rows] = np.median(block, axis=1)
        q16, q84 = np.percentile(block, [16.0, 84.0], axis=1)
        sigma[rows] = 0.5 * (q84 - q16)
    for row in np.flatnonzero(~prefix):
        values = pull[row][finite[row]]
        median[row], sigma[row] = float(np.median(values)), _sigma68(values)
    log_sigma = [np.log(max(float(v), 1e-6)) for v in sigma]  # one at a time, as before
    return np.column_stack([median, log_sigma, np.zeros(pull.shape[0])])


def _nelder_mead_rows(fun, x0: np.ndarray, *, xatol: float, fatol: float, maxiter: int) -> np.ndarray:
    """Minimise ``fun`` from each row of ``x0`` (B, N) with the steps of ``scipy.optimize.minimize(method="Nelder-Mead")``.

    ``fun(x, rows)`` returns the values (k,) at the points ``x`` (k, N) of problems ``rows``. Each
    problem goes through scipy's iteration (standard coefficients, initial simplex, the same
    arithmetic and sorting, the same stopping rule), so its result is the one scipy returns for
    it alone; the problems still running are stepped together. Returns the best vertices (B, N).
    """
    rho, chi, psi, sigma = 1, 2, 0.5, 0.5
    n_prob, dim = x0.shape
    sim = np.empty((n_prob, dim + 1, dim), dtype=np.float64)
    sim[:, 0] = x0
    for k in range(dim):
        y = x0.copy()
        y[:, k] = np.where(y[:, k] != 0, (1 + 0.05) * y[:, k], 0.00025)
        sim[:, k + 1] = y
    every = np.arange(n_prob)
    fsim = np.stack([fun(sim[:, k], every) for k in range(dim + 1)], axis=1)
    for _ in range(2):
        order = np.argsort(fsim, axis=1)
        sim = np.take_along_axis(sim, order[:, :, None], axis=1)
        fsim = np.take_along_axis(fsim, order, axis=1)
    active = every
    iterations = 1
    while active.size and iterations < maxiter:
        s, f = sim[active], fsim[active]
        done = (np.abs(s[:, 1:] - s[:, :1]).reshape(active.size, -1).max(axis=1) <= xatol) & (
            np.abs(f[:, :1] - f[:, 1:]).max(axis=1) <= fatol)
        active, s, f = active[~done], s[~done], f[~done]
        if active.size == 0:
            break
        worst = s[:, -1]
        xbar = np.add.reduce(s[:, :-1], 1) / dim
        xr = (1 + rho) * xbar - rho * worst
        fxr = fun(xr, active)
        new_x, new_f = xr.copy(), fxr.copy()
        # The reflection decides each problem's next point: expansion, outside or inside
        # contraction; the three kinds are evaluated in one call (each row's value is its own).
        expand = fxr < f[:, 0]
        replace = expand | (fxr < f[:, -2])
        outside = ~replace & (fxr < f[:, -1])
        inside = ~replace & ~outside
        i_e, i_o, i_i = np.flatnonzero(expand), np.flatnonzero(outside), np.flatnonzero(inside)
        trial = np.concatenate([(1 + rho * chi) * xbar[i_e] - rho * chi * worst[i_e],
                                (1 + psi * rho) * xbar[i_o] - psi * rho * worst[i_o],
                                (1 - psi) * xbar[i_i] + psi * worst[i_i]])
        every_trial = np.concatenate([i_e, i_o, i_i])
        f_trial = fun(trial, active[every_trial]) if every_trial.size else np.zeros(0)
        cut_o, cut_i = i_e.size, i_e.size + i_o.size
        xe, fxe = trial[:cut_o], f_trial[:cut_o]
        better = fxe < fxr[i_e]
        new_x[i_e[better]], new_f[i_e[better]] = xe[better], fxe[better]
        shrink = np.zeros(active.size, dtype=bool)
        xc, fxc = trial[cut_o:cut_i], f_trial[cut_o:cut_i]
        ok = fxc <= fxr[i_o]
        new_x[i_o[ok]], new_f[i_o[ok]] = xc[ok], fxc[ok]
        replace[i_o[ok]] = True
        shrink[i_o[~ok]] = True
        xcc, fxcc = trial[cut_i:], f_trial[cut_i:]
        ok = fxcc < f[i_i, -1]
        new_x[i_i[ok]], new_f[i_i[ok]] = xcc[ok], fxcc[ok]
        replace[i_i[ok]] = True
        shrink[i_i[~ok]] = True
        s[replace, -1], f[replace, -1] = new_x[replace], new_f[replace]
        if shrink.any():
            i = np.flatnonzero(shrink)
            for j in range(1, dim + 1):
                s[i, j] = s[i, 0] + sigma * (s[i, j] - s[i, 0])
                f[i, j] = fun(s[i, j], active[i])
        order = np.argsort(f, axis=1)
        sim[active] = np.take_along_axis(s, order[:, :, None], axis=1)
        fsim[active] = np.take_along_axis(f, order, axis=1)
        iterations += 1
    return sim[:, 0].copy()


def fit_error_scale(method: str, pull: np.ndarray, area: np.ndarray, *, min_positions: int = MIN_POSITIONS,
                    n_bins: int = 5) -> NoiseCalibration:
    """Fit ``k(A) = scale (A / A_ref) ** slope`` to blank-sky pulls ``flux / flux_err`` at sizes ``A``.

    The slope is the maximum-likelihood one of ``pull_i ~ mu + s (A_i / A_ref) ** slope t_4``
    (a Student-t with 4 degrees of freedom: Gaussian in the core, robust to the few positions
    that catch light of undetected sources), clipped to ``[-0.5, 1]`` (0 for white noise, 0.5 for
    noise correlated over the whole footprint). It is kept only when it differs from 0 by at least
    2 bootstrap standard errors (50 seeded resamples), and is 0 below ``2 * min_positions``
    positions. ``scale`` is the sigma68 of ``u_i = pull_i / (A_i / A_ref) ** slope`` (``A_ref``
    the geometric mean of ``A``): the 68 % interval, which coverage and pull sigma68 measure.
    ``bins`` (``n_bins`` quantile bins of ``A``: median ``A``, sigma68 of the pulls, count)
    are a diagnostic.
    """
    return fit_error_scales({method: (pull, area)}, min_positions=min_positions, n_bins=n_bins)[method]


def fit_error_scales(samples: Mapping[str, tuple[np.ndarray, np.ndarray]], *, min_positions: int = MIN_POSITIONS,
                     n_bins: int = 5) -> dict[str, NoiseCalibration]:
    """:func:`fit_error_scale` of several methods (name -> (pull, area)); their slope fits and
    bootstrap resamples are minimised together (each problem takes the steps it takes alone)."""
    clean: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for method, (pull, area) in samples.items():
        pull = np.asarray(pull, dtype=np.float64)
        area = np.asarray(area, dtype=np.float64)
        good = np.isfinite(pull) & np.isfinite(area) & (area > 0)
        clean[method] = (pull[good], area[good])
    fits = [m for m, (pull, _) in clean.items() if pull.size >= max(2 * min_positions, 2)]
    slopes: dict[str, np.ndarray] = {}
    if fits:
        width = max(clean[m][0].size for m in fits)
        rows_pull, rows_log_a = [], []
        for method in fits:
            pull, area = clean[method]
            n = pull.size
            log_a = np.log(area / np.exp(np.mean(np.log(area))))
            resample = np.random.default_rng(0).integers(0, n, size=(_BOOTSTRAP, n))
            block = np.full((_BOOTSTRAP + 1, 2, width), np.nan)
            block[:, 0, :n] = np.vstack([pull[None, :], pull[resample]])
            block[:, 1, :n] = np.vstack([log_a[None, :], log_a[resample]])
            rows_pull.append(block[:, 0])
            rows_log_a.append(block[:, 1])
        fitted = _fit_slopes(np.vstack(rows_pull), np.vstack(rows_log_a))
        for i, method in enumerate(fits):
            slopes[method] = fitted[i * (_BOOTSTRAP + 1) : (i + 1) * (_BOOTSTRAP + 1)]
    out: dict[str, NoiseCalibration] = {}
    for method, (pull, area) in clean.items():
        n = int(pull.size)
        if n < 2:
            out[method] = dataclasses.replace(NoiseCalibration.identity(method), scale=float("nan"), n_positions=n)
            continue
        median = float(np.median(pull))
        a_ref = float(np.exp(np.mean(np.log(area))))
        log_a = np.log(area / a_ref)
        slope, slope_err = 0.0, float("nan")
        if method in slopes:
            fitted_slope, boot = float(slopes[method][0]), [float(v) for v in slopes[method][1:]]
            slope_err = float(np.std(boot))
            # a slope within 2 standard errors of 0 is noise: k does not depend on size
            slope = fitted_slope if abs(fitted_slope) >= 2.0 * slope_err else 0.0
        scale = _sigma68(pull * np.exp(-slope * log_a))
        order = np.argsort(area, kind="stable")
        bins = tuple((float(np.median(area[part])), _sigma68(pull[part]), int(part.size))
                     for part in np.array_split(order, max(1, min(n_bins, n // 20))) if part.size >= 2)
        reliable = bool(n >= min_positions and np.isfinite(scale) and scale > 0)
        out[method] = NoiseCalibration(method=method, scale=float(scale), slope=slope, slope_err=slope_err,
                                       area_ref=a_ref, area_range=(float(area.min()), float(area.max())),
                                       n_positions=n, median_pull=median, reliable=reliable, bins=bins)
    return out


_MIN_SEPARATION: float = 2.0
"""Closest spacing (pixels) of blank-sky positions on a crowded or small frame (:func:`_denser_positions`)."""


def _denser_positions(exposure: Exposure, x: np.ndarray, y: np.ndarray, r50: np.ndarray, *, n_positions: int,
                      margin: int, seed: int, clearance: float, mask: np.ndarray,
                      wanted: int) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`blank_sky_positions` ``clearance`` px apart, then, while fewer than ``wanted`` are found,
    half as far apart (down to :data:`_MIN_SEPARATION` px); the largest set and its spacing (px).

    Every position keeps its clearance from the frame's sources and the catalogue's targets: only
    the positions come closer to one another. Two positions closer than a footprint measure partly
    the same pixels, so their pulls are correlated: the scale they give has the same expectation
    and a larger scatter than ``1 / sqrt(N)`` says, which beats no calibration (``k = 1``) on a
    small frame (a 256 x 256 frame whose free sky an injection has filled holds about 20 positions
    ``clearance`` apart).
    """
    separation = float(clearance)
    bx, by = blank_sky_positions(exposure, x, y, r50, n_positions=n_positions, margin=margin, seed=seed,
                                 clearance=clearance, mask=mask, separation=separation)
    used = separation
    while bx.size < wanted and separation > _MIN_SEPARATION:
        separation = max(separation / 2.0, _MIN_SEPARATION)
        cx, cy = blank_sky_positions(exposure, x, y, r50, n_positions=n_positions, margin=margin, seed=seed,
                                     clearance=clearance, mask=mask, separation=separation)
        if cx.size > bx.size:
            bx, by, used = cx, cy, separation
    return bx, by, used


def position_setup(exposure: Exposure, catalog: pd.DataFrame, x: np.ndarray,
                   y: np.ndarray) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray, np.ndarray], float]:
    """What every choice of blank-sky positions on ``exposure`` starts from: the catalogue rows on
    the image (all rows when none is), whose shapes the pseudo-targets get; the pixel positions
    (x, y) and ``r50`` (arcsec) of the targets whose light may reach the image (within 100 px of
    it), which the positions keep clear of; and the clearance (px), the reach ``FWHM + 3 r50`` of the
    median target on the image, at least 5 px."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    r50 = catalog["r50"].to_numpy(np.float64)
    ny, nx = exposure.shape
    with np.errstate(invalid="ignore"):
        on = np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
        near = np.isfinite(x) & np.isfinite(y) & (x > -100) & (x < nx + 100) & (y > -100) & (y < ny + 100)
    shapes = catalog[on] if on.any() else catalog
    typical = float(np.median(shapes["r50"].to_numpy(np.float64))) if len(shapes) else 0.5
    scale = exposure.pixel_scale
    clearance = max(float(_reach_px(np.array([typical]), float(exposure.psf_fwhm) / scale, scale)[0]), 5.0)
    return shapes, (x[near], y[near], r50[near]), clearance


def calibrate_noise(
    exposure: Exposure,
    catalog: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    methods: Mapping[str, MeasureMethod],
    *,
    n_positions: int = 200,
    min_positions: int = MIN_POSITIONS,
    stamp_size: int = STAMP_SIZE,
    chunk_size: int = 512,
    seed: int = 0,
    source_check: bool = True,
    mask_other_sources: bool = True,
) -> dict[str, NoiseCalibration]:
    """Blank-sky error scale ``k(A)`` of every method on one exposure (module docstring), and for
    methods that return a likelihood mixture the source-present check (:func:`measure_source_present`).

    Parameters
    ----------
    exposure : Exposure
        The CCD image in e-/s per pixel.
    catalog : DataFrame
        Validated catalogue (``r50``, ``sersic_n``, ``q``, ``pa``, ``i_auto``); the blank-sky shapes
        are drawn from its rows on the image (all rows when none is).
    x, y : ndarray
        Pixel positions of the catalogue's targets, aligned with ``catalog`` (kept clear of).
    methods : mapping name -> method instance
        The instances that measure the targets (same options, same loaded model).
    n_positions, min_positions, stamp_size, chunk_size, seed : keyword-only
        Blank positions wanted, fewest usable for a trusted ``k``, stamp side, targets per method
        call, RNG seed (positions and shapes).
    source_check : bool, keyword-only
        Run the source-present check (``NoiseCalibration.source``); False leaves it None.
    mask_other_sources : bool, keyword-only
        Measure the positions as the targets are measured (``TargetContext.mask_other_sources``).

    Returns
    -------
    dict name -> NoiseCalibration
        ``reliable = False`` (and ``k = 1``) with a warning when fewer than ``min_positions``
        positions were usable.
    """
    shapes, (x, y, r50), clearance = position_setup(exposure, catalog, x, y)
    bx, by, separation = _denser_positions(exposure, x, y, r50, n_positions=n_positions,
                                           margin=stamp_size // 2, seed=seed, clearance=clearance,
                                           mask=_frame_detections(exposure), wanted=min(n_positions, 4 * min_positions))
    frames, ctx = _measure_blank(exposure, shapes, bx, by, methods, stamp_size=stamp_size, chunk_size=chunk_size,
                                 seed=seed, mask_other_sources=mask_other_sources)
    samples: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in methods:
        frame = frames[name]
        use = frame["usable"].to_numpy(bool) if len(frame) else np.zeros(0, dtype=bool)
        pull = frame["pull"].to_numpy(np.float64)[use] if len(frame) else np.zeros(0)
        area = frame["area"].to_numpy(np.float64)[use] if len(frame) else np.zeros(0)
        samples[name] = (pull, area)
    result = {name: dataclasses.replace(c, separation=separation)
              for name, c in fit_error_scales(samples, min_positions=min_positions).items()}
    for name, calibration in result.items():
        if not calibration.reliable:
            log.warning("%s: only %d usable blank-sky positions for method %s (need %d), even %.1f px apart: its "
                        "errors are not calibrated (error_scale 1)", exposure.path, calibration.n_positions, name,
                        min_positions, separation)
        elif source_check and ctx is not None and has_mixture(frames[name]):
            check = measure_source_present(ctx, frames[name], name, methods[name], calibration,
                                           min_positions=min_positions, chunk_size=chunk_size, seed=seed)
            result[name] = dataclasses.replace(calibration, source=check)
    return result


# ------------------------------------------------------------------------------------ applying


def background_fraction(ctx: TargetContext, flux: np.ndarray) -> np.ndarray:
    """Background share of the variance of the optimal weighted sum at flux ``flux`` (shape (n,)).

    ``bkg = sum w^2 s^2 + var(b) (sum w)^2`` and ``src = sum w^2 max(F R, 0) / t`` with the eq. (6)
    weights ``w = (R / v) / sum(R^2 / v)``, ``v = s^2 + max(F R, 0) / t``: the split of the error the
    optimal method reports. 1 where it cannot be computed.
    """
    from lumos_ops.photometry.modelfit import fit_pixels

    pixels = fit_pixels(ctx.photometry_inputs)
    flux = np.nan_to_num(np.asarray(flux, dtype=np.float64), nan=0.0)
    phi = np.full(flux.shape, np.nan)
    # rows in groups of similar footprint size (unused pixels add nothing to the sums)
    for rows, sub in pixels.groups(np.arange(flux.size), 128):
        # each array below is reused in place once its values are no longer needed (same numbers)
        source = flux[rows, None] * sub.model
        np.maximum(source, 0.0, out=source)
        source /= sub.exptime[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.add(source, sub.noise_var[:, None])  # the variance v
            np.divide(sub.model, raw, out=raw)
            np.copyto(raw, 0.0, where=~(sub.model > 0))
            product = np.multiply(raw, sub.model)
            w = np.divide(raw, np.sum(product, axis=1, keepdims=True), out=raw)
            sum_w = np.sum(w, axis=1)
            w2 = np.multiply(w, w, out=w)
            bkg = np.sum(w2, axis=1) * sub.noise_var + sub.background_var * sum_w**2
            src = np.sum(np.multiply(w2, source, out=w2), axis=1)
            phi[rows] = bkg / (bkg + src)
    return np.where(np.isfinite(phi), np.clip(phi, 0.0, 1.0), 1.0)


def widen_mixture(alpha: np.ndarray, mu: np.ndarray, sigma: np.ndarray, centre: np.ndarray,
                  factor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stretch Gaussian mixtures (n, K) about ``centre`` (n,) by ``factor`` (n,).

    ``mu' = c + s (mu - c)``, ``sigma' = s sigma``: the density of ``c + s (f - c)`` for ``f`` drawn
    from the mixture, so every quantile ``q`` becomes ``c + s (q - c)``; about the median, the
    median stays and sigma68, sigma95 scale by ``s``. Weights are unchanged.
    """
    centre = np.asarray(centre, dtype=np.float64)[:, None]
    factor = np.asarray(factor, dtype=np.float64)[:, None]
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    return np.asarray(alpha, dtype=np.float64).copy(), centre + factor * (mu - centre), factor * sigma


def widen_likelihoods(frame: pd.DataFrame, factor: np.ndarray) -> pd.DataFrame:
    """``frame`` (one method's rows, already a copy) with its LUMOS mixtures stretched about their
    median by ``factor`` (shape (n,), >= 1) and every summary mapped with them; ``flux_err`` of
    likelihood rows becomes the widened sigma68 (posterior rows: the widened std). Rows without a
    mixture are returned unchanged (their ``flux_err`` is the caller's).
    """
    if has_mixture(frame) and "median" in frame:
        mix = mixtures_from_table(frame)
        centre = frame["median"].to_numpy(np.float64)
        finite = np.isfinite(centre) & np.isfinite(factor)
        fac = np.where(finite, factor, 1.0)
        cen = np.where(finite, centre, 0.0)
        mix = Mixtures(*widen_mixture(mix.alpha, mix.mu, mix.sigma, cen, fac), truncated=mix.truncated)
        for name, values in mixture_columns(mix).items():
            frame[name] = values
        # untruncated rows: an affine map of the density, every summary maps exactly
        for name in ("mean", "mode"):
            if name in frame:
                frame[name] = cen + fac * (frame[name].to_numpy(np.float64) - cen)
        for name in ("std", "sigma68", "sigma95"):
            if name in frame:
                frame[name] = frame[name].to_numpy(np.float64) * fac
        redo = np.flatnonzero(mix.truncated & finite)
        if redo.size:
            # truncated at f = 0 (population-prior models): the map is not affine there; recompute
            from lumos_ops.lumos.mixture import summarize

            stats = summarize(*mix[redo].args)
            for name, values in stats.items():
                if name in frame:
                    frame.loc[frame.index[redo], name] = values
        if "likelihood" in frame and "sigma68" in frame and "std" in frame:
            like = frame["likelihood"].to_numpy(bool)
            frame["flux_err"] = np.where(like, frame["sigma68"].to_numpy(np.float64), frame["std"].to_numpy(np.float64))
    return frame


def apply_error_scale(frame: pd.DataFrame, method: str, calibration: NoiseCalibration | float,
                      ctx: TargetContext, *, variance_factor: np.ndarray | None = None) -> pd.DataFrame:
    """Calibrated copy of one method's result on ``ctx``: errors, and for LUMOS the mixtures, widened.

    ``k`` of each target is ``calibration.k(A)`` at its model's matched-filter area (or the number
    given). Adds ``error_scale`` (that ``k``) and ``flux_err_raw`` (the error before calibration);
    ``k`` scales the background part of the variance (module docstring), so the row's own factor
    ``flux_err / flux_err_raw`` lies between 1 and ``k``, times, where ``calibration.source`` is
    set (LUMOS), the source-present factor of the row (column ``source_scale``). ``flux`` is never
    changed (for LUMOS the median stays; the mean and mode of the widened likelihood move away from
    it by the factor). ``variance_factor`` (shape (n,), >= 1) multiplies the background part of
    each row's variance as well: the joint fit with catalogued neighbours
    (``TargetContext.variance_factor``).
    """
    frame = frame.copy()
    raw = frame["flux_err"].to_numpy(np.float64)
    flux = frame["flux"].to_numpy(np.float64)
    if isinstance(calibration, NoiseCalibration):
        k = calibration.k(context_model_area(ctx))
    else:
        k = np.full(len(frame), float(calibration))
    frame["flux_err_raw"] = raw
    frame["error_scale"] = k
    if variance_factor is not None:
        k = k * np.sqrt(np.asarray(variance_factor, dtype=np.float64))
    source = calibration.source if isinstance(calibration, NoiseCalibration) else None
    if np.all(k == 1.0) and (source is None or not source.reliable):
        if source is not None:
            frame["source_scale"] = 1.0
        return frame
    t = float(ctx.exposure.exptime)
    if method == "aperture" and "aperture_light" in frame:
        light = frame["aperture_light"].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            source = np.where(light > 0, np.maximum(flux, 0.0) / (light * t), 0.0)
        source = np.minimum(np.nan_to_num(source), raw**2)
        frame["flux_err"] = np.sqrt(k * k * (raw**2 - source) + source)
        return frame
    phi = background_fraction(ctx, flux)
    factor = np.sqrt(1.0 + phi * (k * k - 1.0))
    if source is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.maximum(flux, 0.0) / (raw * factor)
        extra = source.factor(snr)
        frame["source_scale"] = extra
        factor = factor * extra
    frame["flux_err"] = raw * factor
    return widen_likelihoods(frame, factor)


def describe(calibrations: Mapping[str, NoiseCalibration]) -> dict[str, Any]:
    """JSON-ready summary of :func:`calibrate_noise`'s result."""
    return {name: dataclasses.asdict(c) for name, c in calibrations.items()}
