"""The flux error no exposure's pixels show: the models' own error, as a fraction of the flux.

Every method measures a target through its catalogue model convolved with the exposure's PSF
model (the optimal weighted sum and the profile fit weigh the pixels with it, the aperture corrects
its light with it, LUMOS reads it as its second channel and anchors on its matched filter). Neither
model is the truth: a real PSF is not the Moffat of the header's FWHM, a real galaxy is not the
catalogue's Sérsic profile. The flux error that follows is a fraction of the flux that differs from
galaxy to galaxy and is the same in every exposure of one galaxy with a like PSF. It is below the
noise at low SNR and dominates it at high SNR, where the pulls of every method then grow with the
flux (``reports/lumos/error-floor``).

The survey's ``flux_error_floor`` ``e`` (:attr:`lumos_ops.survey.Survey.flux_error_floor`) adds
``e |flux|`` in quadrature to every method's per-exposure error (:func:`apply_error_floor`), and
its ``neighbour_error_floor`` ``e_n`` adds ``e_n c`` for a blended target, ``c`` the light of the
catalogued neighbours a joint fit took out of its stamps as the target's weights read it. The
part of the variance it adds is shared by every exposure of the source, so the co-adds count it
once: each row's ``floor_rho`` (``((e f)^2 + (e_n c)^2) / flux_err^2``) is the correlation it gives two
exposures.
The LUMOS co-adds take the larger of it and the model's recorded shared error, which measures the
same correlation by injection (:func:`lumos_ops.lumos.shared_error.coadd_rho`,
:mod:`lumos_ops.pipeline.coadd`); the classical co-adds weigh the exposures with ``flux_err_stat``
and add the floor's part of the error once (:func:`coadd_with_floor`). Statistics of differences
between exposures (the pair statistic D) use ``flux_err_stat``, the error before the floor, which
is what a difference sees. :func:`estimate_error_floor` measures ``e`` and
:func:`estimate_neighbour_floor` ``e_n`` on an injection (``lumos inject`` prints them per population).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from lumos_ops.constants import DEFAULT_FLUX_ERROR_FLOOR
from lumos_ops.exceptions import LumosValueError
from lumos_ops.stats import block_resamples, sigma68

__all__ = ["DEFAULT_FLUX_ERROR_FLOOR", "FloorEstimate", "apply_error_floor", "coadd_with_floor", "estimate_error_floor",
           "estimate_neighbour_floor", "statistical_error", "NEIGHBOUR_SHARE"]

_MIN_ROWS = 30

FLOOR_BOOTSTRAP_DRAWS = 200
"""Resamples of the galaxies behind :attr:`FloorEstimate.floor_err`."""

NEIGHBOUR_SHARE: float = 0.1
"""Rows whose fitted neighbours' light (``neighbour_light``) is at least this share of their flux
measure the neighbour floor (:func:`estimate_neighbour_floor`); the others the flux floor."""


def apply_error_floor(frame: pd.DataFrame, floor: float, *, neighbour_light: ArrayLike | None = None,
                      neighbour_floor: float | None = None) -> pd.DataFrame:
    """One method's rows with ``floor * |flux|`` added in quadrature to ``flux_err``.

    ``neighbour_light`` (shape (n,), e-/s): the light of catalogued neighbours that a joint fit took
    out of each row's stamps, as its matched filter would have read it
    (:attr:`lumos_ops.target_context.TargetContext.neighbour_light`). Their models are off too, so
    ``neighbour_floor * neighbour_light`` is added in quadrature as well (``neighbour_floor`` None:
    ``floor``). It is larger than ``floor``: the neighbour's model misses mostly in its core and
    wings, and the target sits in the wings, where the target's weights read that miss more than
    the neighbour's light in proportion (the survey's ``neighbour_error_floor``).

    Adds ``flux_err_stat`` (the error before the floor), ``error_floor`` (``floor``),
    ``neighbour_error_floor`` (``neighbour_floor``) and ``floor_rho`` (the share of the variance
    the floors add, which every exposure of the source shares). ``flux`` is unchanged; LUMOS mixtures are stretched about their median by the same
    factor (:func:`lumos_ops.noise_calibration.widen_likelihoods`), so their sigma68 is the new
    ``flux_err``.
    """
    if not (np.isfinite(floor) and 0.0 <= floor < 1.0):
        raise LumosValueError(f"flux_error_floor must lie in [0, 1) (a fraction of the flux), got {floor}")
    neighbour_floor = float(floor) if neighbour_floor is None else float(neighbour_floor)
    if not (np.isfinite(neighbour_floor) and 0.0 <= neighbour_floor < 1.0):
        raise LumosValueError(f"neighbour_error_floor must lie in [0, 1) (a fraction of the light), got {neighbour_floor}")
    from lumos_ops.noise_calibration import widen_likelihoods

    frame = frame.copy()
    stat = frame["flux_err"].to_numpy(np.float64)
    extra = float(floor) * np.abs(np.nan_to_num(frame["flux"].to_numpy(np.float64)))
    if neighbour_light is not None:
        extra = np.hypot(extra, neighbour_floor * np.nan_to_num(np.asarray(neighbour_light, dtype=np.float64)))
    total = np.sqrt(stat**2 + extra**2)
    usable = np.isfinite(stat) & (stat > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(usable, total / stat, 1.0)
        rho = np.where(usable, extra**2 / total**2, 0.0)
    frame["flux_err_stat"] = stat
    frame["error_floor"] = float(floor)
    frame["neighbour_error_floor"] = neighbour_floor
    frame["floor_rho"] = rho
    if not np.any(extra > 0):
        return frame
    frame["flux_err"] = np.where(usable, total, stat)
    return widen_likelihoods(frame, factor)


def statistical_error(frame: pd.DataFrame) -> np.ndarray:
    """The error of each row before the floor: ``flux_err_stat`` where recorded, else ``flux_err``."""
    err = frame["flux_err"].to_numpy(np.float64)
    if "flux_err_stat" not in frame:
        return err
    stat = frame["flux_err_stat"].to_numpy(np.float64)
    return np.where(np.isfinite(stat), stat, err)


def coadd_with_floor(flux: np.ndarray, flux_err: np.ndarray, err_stat: np.ndarray,
                     valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance co-add (eq. 21) of exposures whose errors share the error floor.

    Each exposure's error is ``flux_err² = err_stat² + a²``, ``a`` the floor's part
    (:func:`apply_error_floor`), the same error in every exposure of the source. The co-add weighs
    with ``w = 1 / err_stat²`` and its variance is ``1 / Σ w + (Σ w a / Σ w)²``: the shared part
    counted once.

    Parameters
    ----------
    flux, flux_err, err_stat : ndarray, shape (n, m)
        Per-exposure flux, error and error before the floor (one unit) of the ``m`` exposures of
        ``n`` sources.
    valid : ndarray of bool, shape (n, m), optional
        Exposures in the co-add (default: finite flux and errors, ``err_stat > 0``).

    Returns
    -------
    flux, err : ndarray, shape (n,)
        The weighted mean and its error; NaN for sources without a valid exposure.
    """
    f = np.asarray(flux, dtype=np.float64)
    total = np.asarray(flux_err, dtype=np.float64)
    e = np.asarray(err_stat, dtype=np.float64)
    ok = np.isfinite(f) & np.isfinite(e) & np.isfinite(total) & (e > 0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    w = np.where(ok, 1.0 / np.where(ok, e, 1.0) ** 2, 0.0)
    shared = np.sqrt(np.clip(np.where(ok, total**2 - e**2, 0.0), 0.0, None))
    weight = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(weight > 0, (w * np.where(ok, f, 0.0)).sum(axis=1) / weight, np.nan)
        err = np.where(weight > 0, np.sqrt(1.0 / weight + ((w * shared).sum(axis=1) / weight) ** 2), np.nan)
    return mean, err


@dataclasses.dataclass(frozen=True)
class FloorEstimate:
    """The floor an injection asks for.

    Attributes
    ----------
    floor : float
        Smallest fraction ``e`` at which the pull sigma68 of the rows is at most 1 (0 when it is
        without a floor; NaN with fewer than 30 rows).
    n : int
        Rows with measured SNR >= ``min_snr``.
    pull_before, pull_after : float
        Their pull sigma68 without a floor and with ``floor``.
    min_snr : float
    floor_err : float
        Standard error of ``floor``: its spread over resamples of the rows' galaxies
        (:func:`estimate_error_floor` with ``groups``; NaN when not computed).
    """

    floor: float
    n: int
    pull_before: float
    pull_after: float
    min_snr: float
    floor_err: float = float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def estimate_error_floor(flux: ArrayLike, flux_err: ArrayLike, true_flux: ArrayLike, *,
                         min_snr: float = 50.0, groups: ArrayLike | None = None,
                         n_boot: int = FLOOR_BOOTSTRAP_DRAWS) -> FloorEstimate:
    """The fractional floor that makes the pulls of an injection's bright rows sigma68 = 1.

    Parameters
    ----------
    flux, flux_err, true_flux : array_like, shape (n,)
        Measured flux, its error before any floor (``flux_err_stat``) and the injected flux (e-/s).
    min_snr : float, keyword-only
        Only rows with measured SNR (``flux / flux_err``) at least this count: below it the floor
        is lost in the noise.
    groups : array_like, shape (n,), keyword-only
        The galaxy of each row. Given, ``floor_err`` is the standard deviation of the floor over
        ``n_boot`` resamples of the galaxies with replacement (seeded: the same rows give the same
        error); a galaxy's placements share its profile, so galaxies are the independent draws.
    """
    keep = _bright_mask(flux, flux_err, true_flux, None, min_snr)
    f, e, t = (np.asarray(v, dtype=np.float64)[keep] for v in (flux, flux_err, true_flux))

    def solve(f, e, t) -> FloorEstimate:
        return _smallest(lambda floor: float(sigma68((f - t) / np.sqrt(e**2 + (floor * f) ** 2))), f.size, min_snr)

    found = solve(f, e, t)
    if groups is None or not np.isfinite(found.floor):
        return found
    resamples = block_resamples(np.asarray(groups)[keep], f.size, np.random.default_rng(0), n_boot)
    draws = np.array([solve(f[rows], e[rows], t[rows]).floor for rows in resamples])
    return dataclasses.replace(found, floor_err=float(np.nanstd(draws)))


def estimate_neighbour_floor(flux: ArrayLike, flux_err: ArrayLike, true_flux: ArrayLike, neighbour_light: ArrayLike,
                             *, floor: float, min_snr: float = 50.0,
                             min_share: float = NEIGHBOUR_SHARE) -> FloorEstimate:
    """The fraction ``e_n`` of the fitted neighbours' light that makes the pulls of an injection's
    bright blended rows sigma68 = 1, given the flux floor ``floor``.

    Rows whose ``neighbour_light`` (e-/s) is at least ``min_share`` of their flux and whose measured
    SNR (``flux / flux_err``, the error before any floor) is at least ``min_snr`` count (a faint
    neighbour's error is lost in the target's own); their error is ``sqrt(flux_err^2 +
    (floor flux)^2 + (e_n neighbour_light)^2)`` (:func:`apply_error_floor`). ``pull_before`` is
    with ``e_n = 0``.
    """
    f, e, t, c = _bright_rows(flux, flux_err, true_flux, neighbour_light, min_snr)
    share = c >= float(min_share) * np.abs(f)
    f, e, t, c = f[share], e[share], t[share], c[share]
    base = e**2 + (float(floor) * f) ** 2
    return _smallest(lambda en: float(sigma68((f - t) / np.sqrt(base + (en * c) ** 2))), f.size, min_snr)


def _bright_mask(flux: ArrayLike, flux_err: ArrayLike, true_flux: ArrayLike, light: ArrayLike | None,
                 min_snr: float) -> np.ndarray:
    """Finite rows at measured SNR >= ``min_snr`` (with ``light`` given: those with ``light > 0``)."""
    f = np.asarray(flux, dtype=np.float64)
    e = np.asarray(flux_err, dtype=np.float64)
    t = np.asarray(true_flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = np.isfinite(f) & np.isfinite(t) & (e > 0) & (f / e >= min_snr)
    if light is not None:
        keep &= np.nan_to_num(np.asarray(light, dtype=np.float64)) > 0
    return keep


def _bright_rows(flux: ArrayLike, flux_err: ArrayLike, true_flux: ArrayLike, light: ArrayLike | None,
                 min_snr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``flux``, ``flux_err``, ``true_flux`` and ``light`` (zeros when None) of :func:`_bright_mask`'s rows."""
    keep = _bright_mask(flux, flux_err, true_flux, light, min_snr)
    c = np.zeros(np.shape(flux)) if light is None else np.nan_to_num(np.asarray(light, dtype=np.float64))
    return (np.asarray(flux, dtype=np.float64)[keep], np.asarray(flux_err, dtype=np.float64)[keep],
            np.asarray(true_flux, dtype=np.float64)[keep], c[keep])


def _smallest(pull, n: int, min_snr: float) -> FloorEstimate:
    """The smallest fraction in [0, 0.5] at which ``pull(fraction)`` (decreasing) is at most 1, by bisection."""
    if n < _MIN_ROWS:
        return FloorEstimate(float("nan"), int(n), float("nan"), float("nan"), float(min_snr))
    before = pull(0.0)
    if before <= 1.0:
        return FloorEstimate(0.0, int(n), before, before, float(min_snr))
    lo, hi = 0.0, 0.5
    if pull(hi) > 1.0:
        return FloorEstimate(hi, int(n), before, pull(hi), float(min_snr))
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if pull(mid) > 1.0 else (lo, mid)
    return FloorEstimate(hi, int(n), before, pull(hi), float(min_snr))
