"""Per-exposure flux correction of the PSF model: galaxies drawn with the exposure's own stars.

Every method reads a target's flux through its catalogue model convolved with the exposure's PSF
model, a Moffat of the FWHM and β the header or the stars give. A real PSF is not that Moffat, and
the difference moves the flux of every galaxy on the exposure the same way: on the SDSS sub-frames
the adapted LUMOS model read Sérsic galaxies drawn with each sub-frame's own star PSF between
−1.3 % and +3.3 % off at true SNR ≥ 50, a different offset per sub-frame, stable from one injection
to the next (``reports/adapt/stars-training/flux-correction``). Mixed over exposures, such offsets
look like an error floor of 0.8–1.8 % that no single survey-wide floor fits, and they do not
average out of a co-add. Survey pipelines correct the same error for point sources with an
aperture correction measured on each exposure's stars; this is its counterpart for galaxies.

:func:`measure_flux_corrections`, on one exposure and for every method of the run:

1. builds the exposure's effective PSF from its stars (:func:`lumos_ops.evaluation.star_psf.star_psf`,
   the PSF the injections of ``lumos adapt`` and TEAHUPOO draw galaxies with), leaving out every peak
   within 3 px of a catalogue target: the targets are galaxies, and on an undersampled frame a compact
   one sits on the stellar locus and widens the stack. A target catalogued as unresolved on the
   exposure (``r50`` at most :data:`POINT_SOURCE_FWHM_FRACTION` of the PSF FWHM: a star, or a
   galaxy no survey could tell from one) is not left out: a catalogue that lists the field's stars
   as targets keeps them for its PSF. The stellar locus still decides what a star is. An exposure
   with too few stars gets no correction (a warning names it);
2. chooses blank-sky positions as the error calibration does
   (:func:`lumos_ops.noise_calibration.blank_sky_positions`: clear of the frame's detected sources
   and of every catalogue target), one stamp side apart so that no injected galaxy reaches
   another's stamp or background, in up to :data:`MAX_ROUNDS` rounds of positions on copies of the
   exposure until ``n_galaxies`` are placed;
3. gives each position the shape of a random resolved catalogue row and a flux of true SNR drawn
   log-uniformly in :data:`CORRECTION_SNR_RANGE` (over the white-noise matched-filter error
   ``sigma_pix sqrt(A)``), draws the galaxy with the star PSF (GalSim), adds it with its Poisson
   noise to the exposure's real pixels, and measures every position through the run's own method
   instances (:func:`lumos_ops.measure.prepare_targets`, ``method.measure``: the code of the targets);
4. fits, per method, measured over injected flux as a line in the log of the galaxy's matched-filter
   area ``A`` (:func:`lumos_ops.noise_calibration.model_area`, pixels; the model's size with the PSF):

       ratio(A) = ratio + slope · ln(A / A_ref)      (A_ref: geometric mean of the galaxies' A)

   A PSF model's error is largest for the galaxies that are mostly PSF: on the SDSS frames, one
   factor per exposure left the most compact quarter of the galaxies 0.4-1.1 % low and the most
   extended 0.9-1.2 % high (``reports/lumos/flux-correction-size``). The slope is Theil-Sen's and is
   kept only where it lies at least 2 bootstrap standard errors from 0; ``ratio`` is then the median of
   ``measured / injected - slope · ln(A / A_ref)``. The correction is applied when at least
   :data:`MIN_CORRECTION_GALAXIES` galaxies were usable, ``ratio`` differs from 1 by at least 2
   bootstrap standard errors or the slope was kept, and the factor stays within
   :data:`MAX_CORRECTION` of 1 over the measured range of ``A`` (a larger one means a wrong star PSF).

:func:`apply_flux_correction` divides ``flux``, ``flux_err`` and, for LUMOS, the whole likelihood
(every component's mean and width, every summary) by each target's factor,
:meth:`FluxCorrection.factor_at` its ``A`` (clipped to the measured range): a change of flux unit,
so the likelihood's shape and its SNR are unchanged. The column ``flux_correction`` records it.

What it does not correct: the catalogue profile's own error (a galaxy that is not a Sérsic profile)
is the same with any PSF and stays in the survey's error floor; the star PSF's own error is shared
by the correction and by any injection that draws with it. It is off unless the survey asks for it
(``"psf_flux_correction": true`` in its file, :attr:`lumos_ops.survey.Survey.psf_flux_correction`)
or ``measure_exposure(flux_correction=True)``: it needs real stars on the exposure, and a test that
injects galaxies with a PSF unrelated to the frame's stars (``lumos inject``'s Kolmogorov) must not
have them corrected for those stars.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lumos_ops.constants import STAMP_SIZE
from lumos_ops.exceptions import LumosValueError

if TYPE_CHECKING:
    from lumos_ops.io.exposure import Exposure
    from lumos_ops.measure import MeasureMethod

__all__ = ["CORRECTION_SNR_RANGE", "MIN_CORRECTION_GALAXIES", "MAX_CORRECTION", "MAX_ROUNDS",
           "POINT_SOURCE_FWHM_FRACTION", "FluxCorrection", "measure_flux_corrections", "apply_flux_correction",
           "describe", "resolved_targets", "fit_correction", "weighted_median"]

log = logging.getLogger(__name__)

CORRECTION_SNR_RANGE: tuple[float, float] = (50.0, 150.0)
"""True SNRs of the injected galaxies: bright, so each reads the PSF model's error to 1-2 % and 150
galaxies give the median to about 0.2 %."""

MIN_CORRECTION_GALAXIES: int = 30
"""Fewest usable injected galaxies from which a correction is applied."""

MAX_CORRECTION: float = 0.1
"""Largest correction applied, ``|ratio - 1|``: a PSF model that misreads galaxies by more is not a
model to correct but a wrong PSF, most often an "ePSF" stacked from compact galaxies on an exposure
with too few stars (a warning names the exposure; nothing is corrected)."""

POINT_SOURCE_FWHM_FRACTION: float = 0.1
"""A catalogue target whose ``r50`` (arcsec) is at most this fraction of the exposure's PSF FWHM
(arcsec) is unresolved there: convolved with the PSF its width is the PSF's to about 2 %, less than
the spread of a stellar locus (5-10 % on real frames), so it may join the stars the PSF is built from."""

MAX_ROUNDS: int = 8
"""Most copies of the exposure the galaxies are spread over (a small frame holds few positions one
stamp apart)."""

_BOOTSTRAP = 200

_FLUX_COLUMNS: tuple[str, ...] = ("flux", "flux_err", "mean", "std", "median", "mode", "sigma68", "sigma95", "q16", "q84",
                                   "flux_err_stat", "flux_err_raw", "neighbour_light")
"""Result columns in flux units (e-/s), divided by the factor (those of a calibrated result too:
the aperture correction is applied to the finished rows)."""

_LOCATION_COLUMNS: tuple[str, ...] = ("flux", "mean", "median", "mode", "q16", "q84")
"""The columns of :data:`_FLUX_COLUMNS` that are points of the flux axis (the others are widths):
a fitted neighbour's light given back moves them (:func:`apply_flux_correction`)."""


@dataclasses.dataclass(frozen=True)
class FluxCorrection:
    """The PSF model's flux error of one method on one exposure (module docstring).

    Attributes
    ----------
    method : str
        Registry name of the method.
    ratio : float
        Measured over injected flux of the galaxies drawn with the star PSF at ``A_ref``: the median
        of ``measured / injected - slope ln(A / A_ref)`` (NaN when none was usable).
    ratio_err : float
        Its bootstrap standard error (200 seeded resamples of the galaxies).
    n_galaxies : int
        Usable injected galaxies (finite flux, none of the bad blank-sky flags).
    reliable : bool
        ``n_galaxies >= MIN_CORRECTION_GALAXIES``, ``|ratio - 1| >= 2 ratio_err`` or a kept slope,
        and the factor within ``MAX_CORRECTION`` of 1 over the measured areas.
    star_psf : bool
        Whether the exposure had the stars for a PSF (False: nothing was measured).
    slope : float
        ``d ratio / d ln A`` (0 where not measured or not significant).
    slope_err : float
        Its bootstrap standard error (NaN where not measured).
    log_area_ref : float
        ``ln A_ref`` (A in pixels): the mean ``ln A`` of the usable galaxies (NaN where not measured).
    log_area_span : tuple of float
        ``ln(A / A_ref)`` of the smallest and largest usable galaxy: the factor is not extrapolated
        beyond them.
    leak : float
        Fraction of a blended target's fitted neighbours' light that the joint fit left in its
        stamps, measured on the exposure's isolated targets
        (:mod:`lumos_ops.photometry.crosstalk`); NaN: not measured, the model ``-(1 - 1/k)``.
    leak_err : float
        Its bootstrap standard error (NaN where not measured; 0 for a leak given from elsewhere).
    """

    method: str
    ratio: float
    ratio_err: float
    n_galaxies: int
    reliable: bool
    star_psf: bool = True
    slope: float = 0.0
    slope_err: float = float("nan")
    log_area_ref: float = float("nan")
    log_area_span: tuple[float, float] = (0.0, 0.0)
    leak: float = float("nan")
    leak_err: float = float("nan")

    @property
    def factor(self) -> float:
        """What the method's fluxes are divided by at ``A_ref``: ``ratio`` when reliable, else 1."""
        return float(self.ratio) if self.reliable else 1.0

    def factor_at(self, area: np.ndarray | float) -> np.ndarray:
        """The factor of targets whose models have matched-filter area ``area`` (pixels): ``ratio +
        slope ln(A / A_ref)``, ``ln(A / A_ref)`` clipped to :attr:`log_area_span` (a NaN area takes
        ``A_ref``); 1 where not reliable."""
        area = np.asarray(area, dtype=np.float64)
        if not self.reliable:
            return np.ones(area.shape)
        if self.slope == 0.0:
            return np.full(area.shape, float(self.ratio))
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.log(area) - self.log_area_ref
        u = np.clip(np.nan_to_num(u, nan=0.0, posinf=self.log_area_span[1], neginf=self.log_area_span[0]),
                    *self.log_area_span)
        return float(self.ratio) + float(self.slope) * u

    @classmethod
    def identity(cls, method: str, *, star_psf: bool = False) -> FluxCorrection:
        """No correction (factor 1)."""
        return cls(method=method, ratio=float("nan"), ratio_err=float("nan"), n_galaxies=0, reliable=False,
                   star_psf=star_psf)


_MAX_PAIRS = 50_000
"""Pairs the Theil-Sen slope takes at most (a seeded random sample of them beyond ~320 galaxies, drawn
with replacement; a pair of one galaxy with itself has no slope and is left out)."""


def _theil_sen(u: np.ndarray, r: np.ndarray) -> float:
    """Theil-Sen slope of ``r`` on ``u``: the median of the pairwise slopes (robust to the few
    galaxies that catch another source's light), over at most :data:`_MAX_PAIRS` pairs."""
    if u.size * (u.size - 1) // 2 > _MAX_PAIRS:  # a seeded random sample of the pairs
        rng = np.random.default_rng(u.size)
        i, j = rng.integers(0, u.size, _MAX_PAIRS), rng.integers(0, u.size, _MAX_PAIRS)
    else:
        i, j = np.triu_indices(u.size, k=1)
    du = u[j] - u[i]
    ok = du != 0
    return float(np.median((r[j] - r[i])[ok] / du[ok])) if ok.any() else 0.0


def fit_correction(method: str, ratio: np.ndarray, *, min_galaxies: int, seed: int,
                   log_area: np.ndarray | None = None, weights: np.ndarray | None = None) -> FluxCorrection:
    """The correction of one method from its galaxies' measured / injected fluxes (``ratio``) and,
    given, the log of their matched-filter areas (module docstring, step 4); ``weights`` (one per
    galaxy, e.g. the inverse variance of its ratio) make the centre a weighted median."""
    n = int(ratio.size)
    if n < max(min_galaxies, 2):
        return FluxCorrection(method, float(np.median(ratio)) if n else float("nan"), float("nan"), n, False)
    from lumos_ops.stats import block_resamples

    draws = np.asarray(block_resamples(None, n, np.random.default_rng([seed, 11, n]), _BOOTSTRAP))
    slope, slope_err, ref, span = 0.0, float("nan"), float("nan"), (0.0, 0.0)
    u = np.zeros(n)
    if log_area is not None and np.isfinite(log_area).all() and np.ptp(log_area) > 0:
        ref = float(np.mean(log_area))
        u = np.asarray(log_area, dtype=np.float64) - ref
        span = (float(u.min()), float(u.max()))
        fitted = _theil_sen(u, ratio)
        slope_err = float(np.std([_theil_sen(u[d], ratio[d]) for d in draws]))
        slope = fitted if abs(fitted) >= 2.0 * slope_err else 0.0
    if weights is None:
        centre = float(np.median(ratio - slope * u))
        err = float(np.std(np.median(ratio[draws] - slope * u[draws], axis=1)))
    else:
        w = np.asarray(weights, dtype=np.float64)
        centre = weighted_median(ratio - slope * u, w)
        err = float(np.std([weighted_median(ratio[d] - slope * u[d], w[d]) for d in draws]))
    reliable = bool(abs(centre - 1.0) >= 2.0 * err or slope != 0.0)
    return FluxCorrection(method, centre, err, n, reliable, slope=slope, slope_err=slope_err, log_area_ref=ref,
                          log_area_span=span)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value below which half of the total weight lies (the mean of the two middle values where
    the halves meet exactly)."""
    order = np.argsort(values)
    v, cum = values[order], np.cumsum(weights[order])
    half = 0.5 * cum[-1]
    k = int(np.searchsorted(cum, half))
    if np.isclose(cum[k], half) and k + 1 < v.size:
        return float(0.5 * (v[k] + v[k + 1]))
    return float(v[k])


def _inject(data: np.ndarray, images: np.ndarray, x: np.ndarray, y: np.ndarray, exptime: float,
            rng: np.random.Generator) -> np.ndarray:
    """A copy of ``data`` (e-/s) with each image (e-/s, central pixel on (round(x), round(y))) and
    its Poisson noise over ``exptime`` s added."""
    out = np.array(data, dtype=np.float64, copy=True)
    ny, nx = out.shape
    half = images.shape[1] // 2
    for image, cx, cy in zip(images, x, y):
        x0, y0 = int(round(cx)) - half, int(round(cy)) - half
        ys = slice(max(y0, 0), min(y0 + image.shape[0], ny))
        xs = slice(max(x0, 0), min(x0 + image.shape[1], nx))
        light = np.clip(image[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0], 0.0, None)
        out[ys, xs] += rng.poisson(light * exptime) / exptime
    return out.astype(data.dtype, copy=False)


def resolved_targets(catalog: pd.DataFrame, psf_fwhm: float) -> np.ndarray:
    """Boolean mask of the catalogue rows that are resolved on an exposure of PSF FWHM ``psf_fwhm``
    (arcsec): ``r50`` (arcsec) above :data:`POINT_SOURCE_FWHM_FRACTION` of it, or not finite."""
    r50 = pd.to_numeric(catalog["r50"], errors="coerce").to_numpy(np.float64)
    return ~(r50 <= POINT_SOURCE_FWHM_FRACTION * psf_fwhm)


def measure_flux_corrections(
    exposure: Exposure,
    catalog: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    methods: Mapping[str, MeasureMethod],
    *,
    psf: Any = None,
    n_galaxies: int = 150,
    snr_range: tuple[float, float] = CORRECTION_SNR_RANGE,
    min_galaxies: int = MIN_CORRECTION_GALAXIES,
    stamp_size: int = STAMP_SIZE,
    chunk_size: int = 512,
    seed: int = 0,
    mask_other_sources: bool = True,
) -> dict[str, FluxCorrection]:
    """The flux correction of every method on one exposure (module docstring).

    Parameters
    ----------
    exposure : Exposure
        The CCD image in e-/s per pixel.
    catalog : DataFrame
        Validated catalogue (``r50`` arcsec, ``sersic_n``, ``q``, ``pa`` degrees, ``i_auto``): the
        injected galaxies get the shapes of its rows on the image.
    x, y : ndarray
        Pixel positions of the catalogue's targets (kept clear of).
    methods : mapping name -> method instance
        The instances that measure the targets.
    psf : StarPsfImage or GalSim object, optional
        The PSF to draw the galaxies with; default: built from the exposure's stars (not the targets).
    n_galaxies, snr_range, min_galaxies, stamp_size, chunk_size, seed, mask_other_sources : keyword-only
        Galaxies wanted, their true SNRs, fewest usable for a correction, stamp side (px), targets
        per method call, RNG seed, and the targets' ``mask_other_sources``.

    Returns
    -------
    dict name -> FluxCorrection
        Identity corrections (factor 1) with a warning when the exposure has too few stars or
        too little blank sky.
    """
    from lumos_ops.measure import _check_result, prepare_targets, render_target_models
    from lumos_ops.noise_calibration import (
        BAD_BLANK_FLAGS,
        _frame_detections,
        blank_sky_catalog,
        blank_sky_positions,
        model_area,
        position_setup,
        robust_sigma,
    )
    from lumos_ops.sim.star_truth import draw_with_star_psf, exposure_star_psf

    if n_galaxies < 1 or not (0 < snr_range[0] < snr_range[1]):
        raise LumosValueError(f"n_galaxies must be >= 1 and snr_range (lo, hi) with 0 < lo < hi, got {n_galaxies}, {snr_range}")
    if psf is None:
        resolved = resolved_targets(catalog, float(exposure.psf_fwhm))
        psf = exposure_star_psf(exposure.data, exposure.path,
                                exclude=(np.asarray(x)[resolved], np.asarray(y)[resolved]))
        if psf is None:
            log.warning("%s: no flux correction (too few stars for its PSF)", exposure.path)
            return {name: FluxCorrection.identity(name) for name in methods}
    shapes, (tx, ty, tr50), clearance = position_setup(exposure, catalog, x, y)
    galaxies = resolved_targets(shapes, float(exposure.psf_fwhm))
    if galaxies.any():  # the injected galaxies take the shapes of the catalogue's galaxies, not its stars'
        shapes = shapes[galaxies]
    mask = _frame_detections(exposure)
    sky = robust_sigma(exposure.data[np.isfinite(exposure.data)])[1]
    rng = np.random.default_rng([seed, 13])
    ratios: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    log_areas: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    placed = 0
    for round_ in range(MAX_ROUNDS):
        bx, by = blank_sky_positions(exposure, tx, ty, tr50, n_positions=n_galaxies - placed, margin=stamp_size // 2,
                                     seed=seed + 101 * round_, mask=mask, clearance=clearance,
                                     separation=float(stamp_size))
        if bx.size == 0:
            break
        blank = blank_sky_catalog(shapes, bx, by, seed=seed + round_)
        dx, dy = bx - np.round(bx), by - np.round(by)
        models, _ = render_target_models(blank, dx, dy, psf_fwhm=float(exposure.psf_fwhm), psf_beta=exposure.psf_beta,
                                         size=stamp_size, pixel_scale=exposure.pixel_scale)
        snr = np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]), bx.size))
        area = model_area(models)
        flux = snr * sky * np.sqrt(np.nan_to_num(area, nan=1.0))
        images = draw_with_star_psf(psf, r50=blank["r50"].to_numpy(np.float64),
                                    sersic_n=blank["sersic_n"].to_numpy(np.float64), q=blank["q"].to_numpy(np.float64),
                                    pa=blank["pa"].to_numpy(np.float64), dx=dx, dy=dy, size=stamp_size + 1,
                                    pixel_scale=exposure.pixel_scale, flux=flux)
        data = _inject(exposure.data, images, bx, by, float(exposure.exptime), rng)
        injected = dataclasses.replace(exposure, data=data)
        ctx = prepare_targets(injected, blank, stamp_size=stamp_size, neighbours=False,
                              mask_other_sources=mask_other_sources)
        for name, method in methods.items():
            parts = [_check_result(name, method.measure(ctx.take(slice(s, min(s + chunk_size, ctx.n)))),
                                   min(s + chunk_size, ctx.n) - s) for s in range(0, ctx.n, chunk_size)]
            frame = pd.concat(parts, ignore_index=True)
            measured = frame["flux"].to_numpy(np.float64)
            flag = frame["flag"].to_numpy(np.int64) | ctx.base_flags
            good = np.isfinite(measured) & np.isfinite(area) & ((flag & BAD_BLANK_FLAGS) == 0)
            ratios[name].append(measured[good] / flux[good])
            log_areas[name].append(np.log(area[good]))
        placed += bx.size
        if placed >= n_galaxies:
            break
    out = {name: fit_correction(name, np.concatenate(parts) if parts else np.zeros(0), min_galaxies=min_galaxies, seed=seed,
                        log_area=np.concatenate(log_areas[name]) if parts else None)
           for name, parts in ratios.items()}
    for name, correction in out.items():
        extremes = correction.ratio + correction.slope * np.asarray(correction.log_area_span)
        worst = float(extremes[np.argmax(np.abs(extremes - 1.0))])
        if correction.reliable and abs(worst - 1.0) > MAX_CORRECTION:
            log.warning("%s: galaxies drawn with its stars' PSF read %.3f of their flux with %s, beyond the %.0f %% a PSF "
                        "model's error can be: the stars' PSF is taken to be wrong (too few stars, or compact galaxies "
                        "among them), not corrected", exposure.path, worst, name, 100 * MAX_CORRECTION)
            out[name] = dataclasses.replace(correction, reliable=False)
        elif correction.n_galaxies < min_galaxies:
            log.warning("%s: only %d usable galaxies for the flux correction of %s (need %d): not corrected",
                        exposure.path, correction.n_galaxies, name, min_galaxies)
    return out


def apply_flux_correction(frame: pd.DataFrame, correction: FluxCorrection | float | np.ndarray,
                          area: np.ndarray | None = None, *, column: str = "flux_correction",
                          neighbour_light: np.ndarray | None = None) -> pd.DataFrame:
    """A copy of one method's result with each row's fluxes divided by its correction factor.

    The factor of a row is :meth:`FluxCorrection.factor_at` its target model's matched-filter area
    ``area`` (pixels, shape (n,); None: every row gets the factor at ``A_ref``), the number given,
    or the row's entry of an array of factors (shape (n,)).
    Every column in flux units (``flux``, ``flux_err`` and the likelihood summaries) and, for LUMOS,
    every mixture component's mean and width are divided by it: the likelihood of the corrected
    flux, the same shape in a new unit. Adds ``column`` (the factor; ``flux_correction``, or
    ``aperture_correction`` for :mod:`lumos_ops.aperture_correction`'s).

    ``neighbour_light`` (shape (n,), e-/s in the rows' unit before the correction; NaN read as 0):
    the light of catalogued neighbours that a joint fit took out of each row's stamps
    (:attr:`lumos_ops.target_context.TargetContext.neighbour_light`). The fit leaves a fraction
    ``κ`` of it in the target's flux, so ``-κ c`` is given back to every point of the flux axis
    (``flux``, the likelihood's median, mode, mean, quantiles and the mixture's means) before the
    division; the widths are only divided. ``κ`` is the correction's measured ``leak``
    (:mod:`lumos_ops.photometry.crosstalk`) where it has one, else ``-(1 - 1/k)``: the fit's
    amplitudes are in the same unit as the target's, ``k`` times the flux, so it took out ``k``
    times the neighbours' light (docs/neighbours.md, "The exposure's flux unit"). Adds
    ``neighbour_leak`` (``κ``) and ``neighbour_leak_err`` (the measurement's error, NaN for the
    model) with it.
    """
    from lumos_ops.lumos.mixture_table import Mixtures, has_mixture, mixture_columns, mixtures_from_table

    if isinstance(correction, FluxCorrection):
        factor = (np.full(len(frame), correction.factor) if area is None
                  else correction.factor_at(np.asarray(area, dtype=np.float64)))
    elif np.ndim(correction):
        factor = np.asarray(correction, dtype=np.float64)
    else:
        factor = np.full(len(frame), float(correction))
    if factor.shape != (len(frame),):
        raise LumosValueError(f"apply_flux_correction: {factor.size} areas for {len(frame)} rows")
    if not (np.isfinite(factor).all() and (factor > 0).all()):
        raise LumosValueError(f"a flux correction factor must be finite and > 0, got {factor[~(factor > 0)][:3]}")
    shift = np.zeros(len(frame))
    frame = frame.copy()
    frame[column] = factor
    if neighbour_light is not None:
        light = np.nan_to_num(np.asarray(neighbour_light, dtype=np.float64))
        if light.shape != (len(frame),):
            raise LumosValueError(f"apply_flux_correction: {light.size} neighbour lights for {len(frame)} rows")
        measured = getattr(correction, "leak", float("nan"))
        kappa = np.full(len(frame), float(measured)) if np.isfinite(measured) else -(1.0 - 1.0 / factor)
        shift = -kappa * light
        frame["neighbour_leak"] = kappa
        frame["neighbour_leak_err"] = getattr(correction, "leak_err", float("nan")) if np.isfinite(measured) else np.nan
    if (factor == 1.0).all() and not shift.any():
        return frame
    for name in _FLUX_COLUMNS:
        if name in frame:
            values = frame[name].to_numpy(np.float64)
            frame[name] = ((values + shift) if name in _LOCATION_COLUMNS else values) / factor
    if has_mixture(frame):
        mix = mixtures_from_table(frame)
        scaled = Mixtures(mix.alpha, (mix.mu + shift[:, None]) / factor[:, None], mix.sigma / factor[:, None],
                          truncated=mix.truncated)
        for name, values in mixture_columns(scaled).items():
            frame[name] = values
    return frame


def describe(corrections: Mapping[str, FluxCorrection]) -> dict[str, Any]:
    """JSON-ready summary of :func:`measure_flux_corrections`' result."""
    return {name: {**dataclasses.asdict(c), "factor": c.factor} for name, c in corrections.items()}
