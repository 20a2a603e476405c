"""Per-exposure aperture correction from the targets themselves: every method on a large aperture's scale.

Every method reads a target's total flux through its catalogue model convolved with the exposure's
PSF model (the optimal weighted sum and the profile fit weigh the pixels with it, the aperture
corrects its 62.5 % of the light with it, LUMOS reads it as its second channel). The total flux
then hangs on the model's wings, where the pixels say little, and on their shape. A PSF whose
profile is not the model's Moffat, or a galaxy that is not its catalogue's Sérsic profile, moves
the flux of every target on the exposure one way. Noiselessly, with a FWHM of 3 px and the
measurement's Moffat of beta 3.5, the optimal sum's weights read Sérsic galaxies drawn with a
Kolmogorov PSF of the same FWHM +2.1 % high, with a Gaussian +11.6 %, with a Moffat of beta 2.5
−7.5 %. Bulge + disk + knots galaxies catalogued as one Sérsic profile read a further +3 %
(``reports/lumos/aperture-correction``).

An aperture that holds 98 % of the model light reads the same galaxies within 0.6-1.3 %: the model
only corrects the 2 % of the light beyond it. Survey pipelines put their model fluxes on the scale
of a large aperture the same way, an aperture correction measured on each exposure's own sources.
:func:`measure_aperture_corrections` does it with the exposure's catalogue targets, without any truth:

1. **The reference.** Every target is measured with the matched filter (the optimal weighted sum
   on the cutouts of the methods), and the targets that may calibrate (no fitted catalogued
   neighbour, matched-filter SNR at least :data:`REFERENCE_SNR_SHARE` of :data:`MIN_CALIBRATOR_SNR`)
   also in the catalogue-shaped elliptical aperture that holds :data:`REFERENCE_LIGHT_FRACTION` of
   their model light, with the aperture method's annulus background and masks
   (:func:`lumos_ops.photometry.aperture.elliptical_aperture_photometry`); the others' reference
   flux is NaN.
2. **The calibrators** of an estimator are the targets it measures at SNR (``flux / flux_err_stat``,
   the error before the error floor) at least :data:`MIN_CALIBRATOR_SNR`, with no fitted catalogued
   neighbour, none of :data:`BAD_CALIBRATOR_FLAGS` in either measurement, and a reference aperture
   whose semi-major axis stays :data:`ANNULUS_MARGIN_PX` inside the background annulus and holds at
   least :data:`MIN_REFERENCE_LIGHT` of the model light on usable pixels. Selecting on the
   estimator's own SNR keeps the ratio unbiased: the large aperture's extra noise is nearly
   independent of the matched filter's.
3. **The fit.** One factor per exposure and method: the median of the calibrators' ``flux /
   reference`` (:func:`~lumos_ops.flux_correction.fit_correction`), weighted by each ratio's inverse
   variance (the reference's variance beyond the estimator's, over the flux squared: the brightest
   calibrators count most). No slope in the target's size: on real sky a large aperture also
   collects light its model does not hold (faint undetected sources, the sky's structure), more
   the larger it is, and a slope fitted to that moved each galaxy's factor by up to ±5 % and
   widened the bright galaxies' scatter by half on the real frames
   (``reports/lumos/aperture-correction``). It is applied when at least :data:`MIN_CALIBRATORS`
   targets were usable, it differs from 1 by at least 2 bootstrap standard errors, and it stays
   within :data:`MAX_APERTURE_CORRECTION` of 1.
4. **Which ratio.** The methods that weigh the pixels with the model (the optimal sum, the profile
   fit, LUMOS, which anchors on its matched filter) take the matched filter's, the least noisy; a
   method whose median flux over the matched filter's on the same calibrators departs from 1 by
   more than :data:`MATCHED_TOLERANCE` (LUMOS with a PSF far from its training) takes the matched
   filter's times that median. The aperture (:data:`OWN_CORRECTION`) takes its own.

:func:`lumos_ops.flux_correction.apply_flux_correction` then divides each method's finished fluxes,
errors and LUMOS likelihoods by the factor at each target's ``A``: a change of flux unit, recorded in
the column ``aperture_correction``. A target fitted jointly with catalogued neighbours first gets
back ``(1 - 1/k)`` of their light under its weights (``neighbour_light``): the fit's amplitudes were
in the same unit and took out ``k`` times the neighbours' light (docs/neighbours.md, "The exposure's
flux unit"). It corrects what the targets of one exposure share (the PSF
model's error, and the catalogue models' mean error over the exposure's galaxies), not one galaxy's
own departure from its model. It is on by default (:attr:`lumos_ops.survey.Survey.aperture_correction`;
``measure_exposure(aperture_correction=False)`` turns it off), and a survey that corrects its
exposures with their stars' PSF (``psf_flux_correction``) keeps that one instead.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lumos_ops.constants import ANNULUS_RADII
from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.flux_correction import (
    MIN_CORRECTION_GALAXIES,
    FluxCorrection,
    apply_flux_correction,
    fit_correction,
    weighted_median,
)
from lumos_ops.photometry.error_floor import statistical_error

if TYPE_CHECKING:
    from lumos_ops.target_context import TargetContext

__all__ = ["REFERENCE_LIGHT_FRACTION", "MIN_CALIBRATOR_SNR", "MIN_CALIBRATORS", "MAX_APERTURE_CORRECTION",
           "BAD_CALIBRATOR_FLAGS", "OWN_CORRECTION", "MATCHED_TOLERANCE", "CALIBRATION_COLUMNS", "matched_rows",
           "reference_fluxes", "chunk_reference", "calibrators", "ratio_weights", "calibration_columns",
           "measure_aperture_corrections", "fit_aperture_corrections", "apply_aperture_corrections", "correct_pooled"]

log = logging.getLogger(__name__)

REFERENCE_LIGHT_FRACTION: float = 0.98
"""Model light held by the reference aperture. Noiselessly (Sérsic and bulge + disk + knots galaxies,
Kolmogorov, Gaussian and Moffat beta 2.5 and 3.5 PSFs read through the Moffat beta 3.5 model) it reads
0.994-1.013 of the true flux where the optimal weights read 0.925-1.144 (0.95 reads 0.986-1.033 in an
aperture of half the area; on compact galaxies with a beta 2.5 PSF it left 3 %)."""

MIN_CALIBRATOR_SNR: float = 40.0
"""Least SNR (the estimator's ``flux / flux_err_stat``) of a calibrator: its large aperture, about 2.7
times as noisy as the matched filter, then reads its flux to about 6 %."""

REFERENCE_SNR_SHARE: float = 0.5
"""The reference aperture is measured on the isolated targets whose matched-filter SNR is at least this
share of :data:`MIN_CALIBRATOR_SNR`, and a calibrator must have one. No other target can calibrate: the
matched filter is the least noisy of the estimators, and an estimator reading a target at SNR 40 where
the matched filter reads under 20 would need its flux twice the matched filter's. On a bench CCD it
leaves 3 in 4 targets out of the large apertures (``benchmarks/README.md``)."""

MAX_APERTURE_CORRECTION: float = 0.2
"""Largest correction applied, ``|factor - 1|``. A PSF of another profile than the model's at the same
FWHM moves fluxes by up to about 12 % (a Gaussian, noiselessly; more for compact galaxies); beyond
20 % the PSF FWHM or the catalogue is wrong, or the apertures are crowded, and nothing is corrected
(a warning names the exposure)."""

MIN_CALIBRATORS: int = MIN_CORRECTION_GALAXIES
"""Fewest calibrators from which a correction is applied."""

MATCHED_TOLERANCE: float = 0.02
"""A model-weighted method whose median flux over the matched filter's, on the calibrators, lies within
this of 1 takes the matched filter's factor as it is. The ratio then reflects how the method reads
galaxies of the calibrators' SNR against the matched filter, which differs at other SNRs, not how it
reads this exposure's profile. LUMOS reads 0.5-0.8 % above the matched filter at SNR >= 40 on the
simulated CCDs: applying that made its bias -1.6 % at SNR 10-20 and its PIT 0.054 (0.029 without;
``reports/lumos/aperture-correction``). With a Gaussian PSF, far from its training, it reads about 5 %
above, and that is applied."""

OWN_CORRECTION: frozenset[str] = frozenset({"aperture"})
"""Methods corrected by their own ratios to the reference. Every other method weighs the pixels with
the model (the optimal sum, the profile fit, LUMOS anchored on its matched filter) and goes through
the matched filter's ratio, the least noisy (on two simulated CCDs LUMOS's own ratio to the
reference left its bright-end sigma68 at 1.07 times the optimal sum's, through the matched filter
0.99). The aperture reads the model's wings through another weighting: its own ratio."""

MIN_REFERENCE_LIGHT: float = 0.9 * REFERENCE_LIGHT_FRACTION
"""Least model light on the reference aperture's usable pixels (masks and other sources leave
some out; the model corrects for them, less well the more they take)."""

ANNULUS_MARGIN_PX: float = 3.0
"""Least gap (pixels) between a calibrator's reference aperture (semi-major axis) and the inner
radius of the background annulus."""

BAD_CALIBRATOR_FLAGS: int = int(Flag.OFF_IMAGE | Flag.EDGE | Flag.MASKED | Flag.SATURATED | Flag.ANNULUS_INCOMPLETE
                                | Flag.FIT_FAILED | Flag.BLENDED)
"""A target with any of these flags in its method's or its reference measurement calibrates nothing."""

CALIBRATION_COLUMNS: tuple[str, ...] = ("reference_flux", "reference_flux_err", "matched_flux", "matched_flux_err",
                                        "aperture_calibrator", "leak_num", "leak_den")
"""The columns :func:`calibration_columns` adds to a method's rows, from which
:func:`fit_aperture_corrections` fits its correction (``leak_num`` and ``leak_den``: the matched-filter
calibrators' synthetic blends, :func:`lumos_ops.photometry.crosstalk.leak_sums`; 0 for the others)."""

LEAK_COLUMNS: tuple[str, ...] = ("leak_num", "leak_den")
"""The columns of :data:`CALIBRATION_COLUMNS` that measure the neighbour leak; rows without them keep
the model ``-(1 - 1/k)``."""

INTERNAL_COLUMNS: tuple[str, ...] = ("matched_flux", "matched_flux_err", *LEAK_COLUMNS)
"""The columns of :data:`CALIBRATION_COLUMNS` dropped once the correction is applied."""


def reference_fluxes(ctx: TargetContext, *, chunk_size: int = 512) -> pd.DataFrame:
    """The reference aperture's measurement of the targets of ``ctx`` that may calibrate (one row per
    target, the columns of :func:`~lumos_ops.photometry.aperture.elliptical_aperture_photometry`; fluxes
    e-/s; NaN for the others, :data:`REFERENCE_SNR_SHARE`), and every target's
    matched filter's (the optimal weighted sum's ``flux``, ``flux_err`` and ``flag`` on the same
    cutouts, before any error calibration) as ``matched_flux``, ``matched_flux_err``, ``matched_flag``."""
    parts = [chunk_reference(ctx.take(slice(start, min(start + chunk_size, ctx.n))))
             for start in range(0, ctx.n, chunk_size)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["flux", "flux_err", "flag"])


def chunk_reference(ctx: TargetContext) -> pd.DataFrame:
    """:func:`reference_fluxes` of one context, on its cached wide cutouts and matched filter
    (``ctx.photometry_inputs``, :func:`lumos_ops.photometry.optimal.cached_optimal`): called on the
    chunks the methods have just measured, it costs the large apertures of the targets that may
    calibrate (:data:`REFERENCE_SNR_SHARE`) alone."""
    from lumos_ops.photometry.optimal import cached_optimal

    matched = cached_optimal(ctx)
    matched_flux = matched["flux"].to_numpy(np.float64)
    matched_err = matched["flux_err"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = matched_flux / matched_err
    candidates = np.flatnonzero(np.isfinite(snr) & (snr >= REFERENCE_SNR_SHARE * MIN_CALIBRATOR_SNR)
                                & (ctx.neighbour_light == 0))
    frame = _reference_apertures(ctx, candidates)
    frame["matched_flux"] = matched_flux
    frame["matched_flux_err"] = matched_err
    frame["matched_flag"] = matched["flag"].to_numpy(np.int64) | ctx.base_flags
    frame["leak_num"], frame["leak_den"] = _synthetic_blends(ctx, frame)
    return frame


def _reference_apertures(ctx: TargetContext, rows: np.ndarray) -> pd.DataFrame:
    """The reference aperture's measurement (the columns of
    :func:`~lumos_ops.photometry.aperture.elliptical_aperture_photometry`) of the targets ``rows`` of
    ``ctx``, one row per target of ``ctx``: NaN for the others, whose ``flag`` holds the base flags."""
    from lumos_ops.photometry.aperture import elliptical_aperture_photometry

    inputs = ctx.photometry_inputs
    part = elliptical_aperture_photometry(inputs if rows.size == ctx.n else inputs.take(rows),
                                          light_fraction=REFERENCE_LIGHT_FRACTION)
    frame = part.set_axis(rows).reindex(np.arange(ctx.n))
    flag = np.zeros(ctx.n, dtype=np.int64)
    flag[rows] = part["flag"].to_numpy(np.int64)
    frame["flag"] = flag | ctx.base_flags
    return frame.reset_index(drop=True)


def _synthetic_blends(ctx: TargetContext, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lumos_ops.photometry.crosstalk.leak_sums` of the targets that may calibrate the matched
    filter's correction (isolated, matched-filter SNR >= :data:`MIN_CALIBRATOR_SNR`, none of
    :data:`BAD_CALIBRATOR_FLAGS`), on their LUMOS-size stamps with the masked-annulus sky, under
    the frame's noise correlation and their own photon noise; zeros for the others."""
    from lumos_ops.photometry.crosstalk import leak_sums
    from lumos_ops.photometry.noise_correlation import frame_noise_correlation

    num, den = np.zeros(ctx.n), np.zeros(ctx.n)
    flux = frame["matched_flux"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / frame["matched_flux_err"].to_numpy(np.float64)
    rows = np.flatnonzero(np.isfinite(snr) & (snr >= MIN_CALIBRATOR_SNR) & (ctx.neighbour_light == 0)
                          & ((frame["matched_flag"].to_numpy(np.int64) & BAD_CALIBRATOR_FLAGS) == 0))
    if rows.size == 0:
        return num, den
    sky = ctx.stamp_sky
    data = ctx.stamps.data[rows]
    num[rows], den[rows] = leak_sums(data, np.isfinite(data) & ~ctx.other_source_pixels[rows], ctx.models[rows],
                                     np.nan_to_num(np.asarray(sky.mean, dtype=np.float64)[rows]),
                                     np.asarray(sky.variance, dtype=np.float64)[rows],
                                     correlation=frame_noise_correlation(ctx.exposure.data),
                                     exptime=ctx.exposure.exptime)
    return num, den


def matched_rows(reference: pd.DataFrame) -> pd.DataFrame:
    """The matched filter's rows of :func:`reference_fluxes` as a method's result (``flux``,
    ``flux_err``, ``flag``)."""
    return pd.DataFrame({"flux": reference["matched_flux"].to_numpy(np.float64),
                         "flux_err": reference["matched_flux_err"].to_numpy(np.float64),
                         "flag": reference["matched_flag"].to_numpy(np.int64)})


def calibrators(ctx: TargetContext, reference: pd.DataFrame, result: pd.DataFrame, *,
                min_snr: float = MIN_CALIBRATOR_SNR) -> np.ndarray:
    """Boolean (n,): the targets whose ``result`` (one method's rows, the order of ``ctx``) and
    ``reference`` rows may calibrate the method's correction (module docstring, step 2)."""
    flux = result["flux"].to_numpy(np.float64)
    err = statistical_error(result)
    ref = reference["flux"].to_numpy(np.float64)
    flags = result["flag"].to_numpy(np.int64) | reference["flag"].to_numpy(np.int64)
    semi_major = reference["aperture_a"].to_numpy(np.float64)
    light = reference["aperture_light"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / err
        return (np.isfinite(flux) & np.isfinite(ref) & (ref > 0) & (snr >= float(min_snr))
                & ((flags & BAD_CALIBRATOR_FLAGS) == 0) & (ctx.neighbour_light == 0)
                & (semi_major <= ANNULUS_RADII[0] - ANNULUS_MARGIN_PX) & (light >= MIN_REFERENCE_LIGHT))


def ratio_weights(flux: np.ndarray, flux_err: np.ndarray, reference_flux_err: np.ndarray) -> np.ndarray:
    """Inverse variance of ``flux / reference`` per target, from the estimator's flux and its error
    before the floor and the reference's error (e-/s): the reference's variance beyond the estimator's
    (the matched filter's noise is nearly all shared by the larger aperture), over the flux squared;
    floored at a tenth of the reference's own variance. The estimator's flux, not the reference's, sets
    the scale: a reference that caught another source's light reads high, and would otherwise weigh
    the most."""
    ref_var = np.asarray(reference_flux_err, dtype=np.float64) ** 2
    extra = np.maximum(ref_var - np.asarray(flux_err, dtype=np.float64) ** 2, 0.1 * ref_var)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(flux, dtype=np.float64) ** 2 / extra


def calibration_columns(ctx: TargetContext, reference: pd.DataFrame, result: pd.DataFrame, *,
                        name: str) -> dict[str, np.ndarray]:
    """What :func:`fit_aperture_corrections` needs of method ``name``'s rows ``result`` (the order of
    ``ctx``'s targets), besides their ``flux``, ``flux_err_stat`` and ``flag`` (:data:`CALIBRATION_COLUMNS`):
    the reference aperture's flux and error and the matched filter's (e-/s, not corrected), and whether
    the target calibrates the method's factor (the method's own calibrators for :data:`OWN_CORRECTION`,
    the matched filter's for the others)."""
    own = name in OWN_CORRECTION
    matched = calibrators(ctx, reference, matched_rows(reference))
    return {"reference_flux": reference["flux"].to_numpy(np.float64),
            "reference_flux_err": reference["flux_err"].to_numpy(np.float64),
            "matched_flux": reference["matched_flux"].to_numpy(np.float64),
            "matched_flux_err": reference["matched_flux_err"].to_numpy(np.float64),
            "aperture_calibrator": calibrators(ctx, reference, result) if own else matched,
            "leak_num": np.where(matched, reference["leak_num"].to_numpy(np.float64), 0.0),
            "leak_den": np.where(matched, reference["leak_den"].to_numpy(np.float64), 0.0)}


def measure_aperture_corrections(ctx: TargetContext, results: Mapping[str, pd.DataFrame], *,
                                 chunk_size: int = 512, seed: int = 0, min_calibrators: int = MIN_CALIBRATORS,
                                 reference: pd.DataFrame | None = None) -> dict[str, FluxCorrection]:
    """The aperture correction of every method of ``results`` (method name -> its rows, in the order
    of ``ctx``'s targets) on one exposure (module docstring): :func:`fit_aperture_corrections` of the
    rows with their :func:`calibration_columns`. ``reference``: :func:`reference_fluxes` of ``ctx``,
    when already measured."""
    if reference is None:
        reference = reference_fluxes(ctx, chunk_size=chunk_size)
    rows = {name: result.assign(**calibration_columns(ctx, reference, result, name=name))
            for name, result in results.items()}
    return fit_aperture_corrections(rows, label=str(ctx.exposure.path), seed=seed, min_calibrators=min_calibrators)


def fit_aperture_corrections(results: Mapping[str, pd.DataFrame], *, label: str = "", seed: int = 0,
                             min_calibrators: int = MIN_CALIBRATORS) -> dict[str, FluxCorrection]:
    """The aperture correction of every method of ``results`` (method name -> its rows with their
    ``flux``, ``flux_err`` (``flux_err_stat`` where floored), ``flag`` and :data:`CALIBRATION_COLUMNS`)
    from the calibrators among those rows (module docstring, steps 3-4): a
    :class:`~lumos_ops.flux_correction.FluxCorrection` whose ``ratio`` is the weighted median flux over
    the reference aperture's (one factor for every target); ``star_psf`` is False (no stars
    involved). The rows may be one exposure's (:func:`measure_aperture_corrections`) or several
    exposures' that share one PSF (:func:`correct_pooled`). ``label`` names them in the log.
    The model-weighted methods' corrections also carry the leak of their neighbours' light measured
    on the matched filter's calibrators (``leak``, :mod:`lumos_ops.photometry.crosstalk`) where it
    is reliable; the aperture's keep the model ``-(1 - 1/k)``."""
    matched = None
    out = {}
    for name, rows in results.items():
        if name in OWN_CORRECTION:
            out[name] = _correction(label, name, rows["flux"].to_numpy(np.float64), statistical_error(rows), rows,
                                    seed=seed, min_calibrators=min_calibrators)
            continue
        if matched is None:
            matched = _correction(label, "matched filter", rows["matched_flux"].to_numpy(np.float64),
                                  rows["matched_flux_err"].to_numpy(np.float64), rows, seed=seed,
                                  min_calibrators=min_calibrators)
        out[name] = _through_matched(name, rows, matched, min_calibrators=min_calibrators)
    if matched is not None and all(c in part for part in results.values() for c in LEAK_COLUMNS):
        from lumos_ops.photometry.crosstalk import fit_leak

        # every method's rows carry the same matched-filter calibrators' sums
        sums = next(part for name, part in results.items() if name not in OWN_CORRECTION)
        leak = fit_leak(sums["leak_num"].to_numpy(np.float64), sums["leak_den"].to_numpy(np.float64),
                        min_calibrators=min_calibrators, seed=seed)
        log.info("%s: neighbour leak %.4f +- %.4f from %d targets%s", label, leak.kappa, leak.kappa_err,
                 leak.n_calibrators, "" if leak.reliable else ", not applied")
        if leak.reliable:
            out = {name: correction if name in OWN_CORRECTION else dataclasses.replace(correction, leak=leak.kappa,
                                                                                           leak_err=leak.kappa_err)
                   for name, correction in out.items()}
    for name, correction in out.items():
        log.info("%s: aperture correction of %s: %.4f +- %.4f from %d targets%s", label, name, correction.ratio,
                 correction.ratio_err, correction.n_galaxies, "" if correction.reliable else ", not applied")
    return out


def apply_aperture_corrections(results: Mapping[str, pd.DataFrame],
                               corrections: Mapping[str, FluxCorrection]) -> dict[str, pd.DataFrame]:
    """Every method's rows divided by its correction
    (:func:`lumos_ops.flux_correction.apply_flux_correction`; column ``aperture_correction``).
    A row fitted jointly with catalogued neighbours (``neighbour_light`` > 0) first gets back the
    share of their light that the correction says the fit took out in excess."""
    return {name: apply_flux_correction(rows, corrections[name], column="aperture_correction",
                                        neighbour_light=rows["neighbour_light"].to_numpy(np.float64)
                                        if "neighbour_light" in rows else None)
            for name, rows in results.items()}


def correct_pooled(table: pd.DataFrame, by: str | Sequence[str], *, seed: int = 0,
                   min_calibrators: int = MIN_CALIBRATORS,
                   fallback: Mapping[tuple[Any, str], float] | None = None) -> pd.DataFrame:
    """``measure_exposure(..., aperture_correction="columns")`` rows of several exposures (a long table,
    one row per target and ``method``), each group of ``by`` (e.g. the copies of one frame that
    ``lumos inject`` measures one at a time) corrected as one exposure: the factor fitted on the
    calibrators of all its rows, then applied to them. The result keeps the table's rows and order,
    drops ``matched_flux`` and ``matched_flux_err`` and adds ``aperture_correction`` and
    ``aperture_correction_borrowed``.

    ``fallback`` maps ``(group, method)`` (``group`` the value of ``by``, a tuple for several
    columns) to a factor, or a factor and a neighbour leak, for a group with fewer than
    ``min_calibrators`` calibrators of its own: those of the exposure's other targets, as an
    exposure's blended targets, none of which calibrates, take its isolated targets'
    (``aperture_correction_borrowed`` True)."""
    required = [c for c in CALIBRATION_COLUMNS if c not in LEAK_COLUMNS]
    missing = [c for c in (*required, "method", "flux", "flux_err", "flag") if c not in table]
    if missing:
        raise LumosValueError(f"correct_pooled: the table has no column(s) {', '.join(missing)}; measure it with "
                              "measure_exposure(..., aperture_correction='columns')")
    keys = [by] if isinstance(by, str) else list(by)
    table = table.assign(aperture_calibrator=table["aperture_calibrator"].astype("boolean").fillna(False)
                         .to_numpy(bool), _row=np.arange(len(table)))
    parts = []
    for key, group in table.groupby(keys, sort=False, dropna=False):
        results = {str(name): rows for name, rows in group.groupby("method", sort=False)}
        label = ", ".join(f"{k} {v}" for k, v in zip(keys, np.atleast_1d(key)))
        corrections = fit_aperture_corrections(results, label=label, seed=seed, min_calibrators=min_calibrators)
        group = key[0] if isinstance(by, str) and isinstance(key, tuple) else key
        borrowed = {name: (fallback or {}).get((group, name)) for name in results
                    if corrections[name].n_galaxies < min_calibrators}
        borrowed = {name: _given(name, given) for name, given in borrowed.items() if given is not None}
        if borrowed:
            log.info("%s: too few calibrators; aperture correction borrowed: %s", label,
                     ", ".join(f"{name} {c.ratio:.4f} (leak {c.leak:.4f})" for name, c in borrowed.items()))
        corrections = {**corrections, **borrowed}
        for name, rows in apply_aperture_corrections(results, corrections).items():
            parts.append(rows.assign(aperture_correction_borrowed=name in borrowed))
    out = pd.concat(parts).sort_values("_row").drop(columns=["_row", *INTERNAL_COLUMNS], errors="ignore")
    return out.reset_index(drop=True)


def _given(name: str, given: float | tuple[float, float]) -> FluxCorrection:
    """A correction for method ``name`` measured elsewhere (applied as it is): its factor, or its
    factor and neighbour leak (NaN: the model ``-(1 - 1/k)``)."""
    factor, leak = given if isinstance(given, tuple) else (given, float("nan"))
    return FluxCorrection(method=name, ratio=float(factor), ratio_err=0.0, n_galaxies=0, reliable=True, star_psf=False,
                          leak=float(leak), leak_err=0.0)


def _through_matched(name: str, rows: pd.DataFrame, matched: FluxCorrection, *,
                     min_calibrators: int) -> FluxCorrection:
    """A model-weighted method's correction: the matched filter's times the method's weighted median
    flux over the matched filter's on the same calibrators (module docstring, step 4)."""
    if not matched.reliable:
        return dataclasses.replace(matched, method=name)
    flux = rows["flux"].to_numpy(np.float64)
    use = (rows["aperture_calibrator"].to_numpy(bool) & np.isfinite(flux)
           & ((rows["flag"].to_numpy(np.int64) & BAD_CALIBRATOR_FLAGS) == 0))
    if use.sum() < min_calibrators:
        return dataclasses.replace(matched, method=name, reliable=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = (flux[use] / statistical_error(rows)[use]) ** 2
    ok = np.isfinite(weights) & (weights > 0)
    relative = weighted_median(flux[use][ok] / rows["matched_flux"].to_numpy(np.float64)[use][ok], weights[ok])
    if abs(relative - 1.0) <= MATCHED_TOLERANCE:
        relative = 1.0
    return dataclasses.replace(matched, method=name, ratio=matched.ratio * relative,
                               ratio_err=matched.ratio_err * relative)


def _correction(label: str, name: str, flux: np.ndarray, flux_err: np.ndarray, rows: pd.DataFrame, *, seed: int,
                min_calibrators: int) -> FluxCorrection:
    """One estimator's correction from its fluxes and errors before the floor (e-/s) on ``rows``
    (module docstring, step 3)."""
    use = rows["aperture_calibrator"].to_numpy(bool)
    ref = rows["reference_flux"].to_numpy(np.float64)
    weights = ratio_weights(flux, flux_err, rows["reference_flux_err"].to_numpy(np.float64))
    correction = dataclasses.replace(fit_correction(name, flux[use] / ref[use], min_galaxies=min_calibrators,
                                                    seed=seed, weights=weights[use]), star_psf=False)
    worst = correction.ratio
    if correction.reliable and abs(worst - 1.0) > MAX_APERTURE_CORRECTION:
        log.warning("%s: %s reads its targets %.3f of their large-aperture flux, beyond the %.0f %% a model's "
                    "error can be (crowded apertures, or a wrong PSF FWHM): not corrected", label, name, worst,
                    100 * MAX_APERTURE_CORRECTION)
        correction = dataclasses.replace(correction, reliable=False)
    elif correction.n_galaxies < min_calibrators:
        log.info("%s: %d calibrators for the aperture correction of %s (need %d): not corrected",
                 label, correction.n_galaxies, name, min_calibrators)
    return correction
