"""The PSF FWHM of an exposure read from its own stars: a pixel-integrated Moffat fitted to each.

Many surveys' reduced frames carry no seeing keyword, and a survey-wide default is wrong on most
nights. :func:`measure_psf_fwhm` finds the frame's bright, isolated, unsaturated point-like peaks
(:func:`bright_compact_peaks`), fits each ``2 radius + 1`` px cutout with a Moffat of the
measurement's ``beta`` integrated over the pixels (amplitude, centre, FWHM and a constant
background free; least squares, a soft-L1 loss so that a faint neighbour in the cutout does not
drag the fit) and returns the FWHM of the stellar locus: stars are the most compact sources, so the
locus is found from the lower quartile of the fitted widths and refined to the median of the fits
within 15 % of it (galaxies are wider).

The profile is the one the photometry models use (:mod:`lumos_ops.render.psf`, unit flux,
untruncated), integrated over each pixel on a sub-grid of 3 x 3 to 9 x 9 (finer for sharper
stars). A survey selects it per header quantity (``"psf_fwhm": {"keyword": "SEEING", "from_stars":
true}``, :mod:`lumos_ops.survey`): :func:`lumos_ops.io.exposure.read_exposure` then measures the
FWHM where the keyword is absent (fits below 0.6 px FWHM, cosmic rays, are left out).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage, optimize

from lumos_ops.exceptions import LumosValueError
from lumos_ops.render.psf import (
    DEFAULT_MOFFAT_BETA,
    MOFFAT_BETA_MAX,
    MOFFAT_BETA_MIN,
    PsfKind,
    psf_log_surface_brightness,
    psf_scale_radius,
)

__all__ = ["StarPsf", "StarFit", "bright_compact_peaks", "fit_star", "fit_stars", "stellar_locus", "measure_psf_fwhm",
           "MIN_STARS"]

MIN_STARS: int = 5
"""Fewest stars on the locus from which the FWHM is trusted."""

_SUB_BY_FWHM: tuple[tuple[float, int], ...] = ((4.0, 3), (1.6, 5), (0.0, 9))
"""Sub-pixels per pixel side of the pixel integration, by the FWHM (px) they serve from: the
midpoint rule on them reads a GalSim Moffat's FWHM within 0.3 % from 1.6 px, 0.8 % at 0.8 px."""


_LOCUS_WIDTH: float = 0.15
"""Half-width of the stellar locus, as a fraction of its FWHM."""


def _sub_pixels(fwhm: float) -> int:
    """Sub-pixels per pixel side for a star of ``fwhm`` px (:data:`_SUB_BY_FWHM`)."""
    return next(n for least, n in _SUB_BY_FWHM if fwhm >= least)


@dataclasses.dataclass(frozen=True)
class StarPsf:
    """The PSF measured on a frame's stars.

    Attributes
    ----------
    fwhm_px : float
        FWHM (pixels) of the Moffat of ``beta`` that fits the stellar locus (median of its stars).
    beta : float
        The Moffat ``beta``: the one the fits used, or the median of the locus stars' fitted ones.
    n_stars : int
        Stars on the locus.
    spread : float
        sigma68 of the locus stars' FWHMs over ``fwhm_px`` (how much the PSF varies over the frame,
        plus the fits' noise).
    """

    fwhm_px: float
    beta: float
    n_stars: int
    spread: float


def bright_compact_peaks(img: np.ndarray, sigma: float, *, min_snr: float = 30.0, radius: int = 5) -> np.ndarray:
    """Positions (row, column), shape (n, 2), of the bright isolated unsaturated peaks of ``img``.

    ``img``: a sky-subtracted frame (NaN allowed, never a peak); ``sigma``: its pixel noise. A peak
    is a pixel above ``min_snr * sigma`` that is the maximum within ``2 radius`` px, at least
    ``radius`` px from the edges, whose ``2 radius + 1`` px cutout is finite and not flat-topped
    (more than two pixels within 2 % of the peak: saturated).
    """
    finite = np.nan_to_num(img, nan=-np.inf)
    peaks = (finite == ndimage.maximum_filter(finite, size=4 * radius + 1)) & (finite > min_snr * sigma)
    ys, xs = np.nonzero(peaks)
    ny, nx = img.shape
    keep = (ys >= radius) & (ys < ny - radius) & (xs >= radius) & (xs < nx - radius)
    out = []
    for y, x in zip(ys[keep], xs[keep]):
        cut = img[y - radius : y + radius + 1, x - radius : x + radius + 1]
        if not np.isfinite(cut).all() or np.count_nonzero(cut >= 0.98 * cut.max()) > 2:
            continue
        out.append((int(y), int(x)))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _moffat_pixels(size: int, x0: float, y0: float, fwhm: float, beta: float, n_sub: int) -> np.ndarray:
    """Unit-flux Moffat of ``fwhm`` px centred on (x0, y0) (pixels from the cutout's centre),
    integrated over the pixels of a ``size`` x ``size`` cutout (``n_sub`` x ``n_sub`` sub-pixels each)."""
    half = size // 2
    sub = (np.arange(size * n_sub) + 0.5) / n_sub - 0.5 - half
    r2 = (sub[None, :] - x0) ** 2 + (sub[:, None] - y0) ** 2
    scale = psf_scale_radius(PsfKind.MOFFAT, np.float64(fwhm), np.float64(beta))
    surface = np.exp(psf_log_surface_brightness(PsfKind.MOFFAT, np.sqrt(r2), scale, np.float64(beta)))
    return surface.reshape(size, n_sub, size, n_sub).mean(axis=(1, 3))


def _moffat_pixels_and_gradient(size: int, x0: float, y0: float, fwhm: float, beta: float,
                                n_sub: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_moffat_pixels` (size, size) and its derivatives with respect to ``x0``, ``y0`` and
    ``fwhm`` (3, size, size; per pixel), from the Moffat ``I = (beta - 1) / (pi a^2) (1 + u)^-beta``
    with ``u = r^2 / a^2`` and ``a`` proportional to ``fwhm``: ``dI/dx0 = 2 beta I (x - x0) / (a^2 (1 + u))``
    and ``dI/dfwhm = I (2 beta u / (1 + u) - 2) / fwhm``, averaged over each pixel's sub-pixels."""
    half = size // 2
    sub = (np.arange(size * n_sub) + 0.5) / n_sub - 0.5 - half
    dx = sub[None, :] - x0
    dy = sub[:, None] - y0
    a = float(psf_scale_radius(PsfKind.MOFFAT, np.float64(fwhm), np.float64(beta)))
    one_u = 1.0 + (dx**2 + dy**2) / a**2
    surface = (beta - 1.0) / (np.pi * a**2) * one_u ** (-beta)
    radial = 2.0 * beta * surface / (a**2 * one_u)
    stack = np.stack([surface, radial * dx, radial * dy, surface * (2.0 * beta * (1.0 - 1.0 / one_u) - 2.0) / fwhm])
    pixels = stack.reshape(4, size, n_sub, size, n_sub).mean(axis=(2, 4))
    return pixels[0], pixels[1:]


class StarFit(NamedTuple):
    """One star's Moffat fit: FWHM (px), flux (the cutout's unit times pixels), centre (px from the
    central pixel's centre) and ``beta`` (fitted, or the fixed one)."""

    fwhm_px: float
    flux: float
    dx: float
    dy: float
    beta: float


def fit_star(cut: np.ndarray, *, beta: float | None = DEFAULT_MOFFAT_BETA,
             fwhm_guess: float | None = None) -> StarFit | None:
    """Fit a pixel-integrated Moffat to a star centred in ``cut`` (odd square, sky-subtracted).

    ``beta``: the Moffat's, fixed; None fits it too (within the renderer's 1.5-10). ``fwhm_guess``
    (px): where the fit starts; None: the diameter of a disc of the area of the pixels above half
    the peak. Returns None when the fit fails or runs to its bounds (FWHM 0.3 px or the cutout's
    side, ``beta`` 1.5 or 10).
    """
    size = cut.shape[0]
    total = float(np.nansum(cut))
    if not total > 0:
        return None
    cut = np.asarray(cut, dtype=np.float64) / total  # unit flux: the fit's path must not depend on the frame's units
    if fwhm_guess is None:
        fwhm_guess = 2.0 * float(np.sqrt(np.count_nonzero(cut >= 0.5 * np.nanmax(cut)) / np.pi))
    free = beta is None
    lo = [0.0, -1.5, -1.5, 0.3, -np.inf] + ([MOFFAT_BETA_MIN] if free else [])
    hi = [np.inf, 1.5, 1.5, float(size), np.inf] + ([MOFFAT_BETA_MAX] if free else [])
    start = np.array([1.0, 0.0, 0.0, float(np.clip(fwhm_guess, 0.5, size - 1.0)), 0.0]
                     + ([DEFAULT_MOFFAT_BETA] if free else []))
    n_sub = _sub_pixels(start[3])
    for _ in range(3):  # refit on a finer sub-grid when the fit lands where it is needed
        def residual(p: np.ndarray, n_sub: int = n_sub) -> np.ndarray:
            flux, x0, y0, fwhm, sky = p[:5]
            model = _moffat_pixels(size, x0, y0, fwhm, p[5] if free else beta, n_sub)
            return (flux * model + sky - cut).ravel()

        def jacobian(p: np.ndarray, n_sub: int = n_sub) -> np.ndarray:
            flux, x0, y0, fwhm, _ = p
            model, gradient = _moffat_pixels_and_gradient(size, x0, y0, fwhm, float(beta), n_sub)
            return np.column_stack([model.ravel(), flux * gradient.reshape(3, -1).T, np.ones(model.size)])

        try:
            fit = optimize.least_squares(residual, start, jac="2-point" if free else jacobian, bounds=(lo, hi),
                                         loss="soft_l1", f_scale=max(float(np.nanstd(cut[[0, -1], :])), 1e-12),
                                         x_scale="jac")
        except (ValueError, np.linalg.LinAlgError):
            return None
        if _sub_pixels(fit.x[3]) <= n_sub:
            break
        start, n_sub = np.clip(fit.x, lo, hi), _sub_pixels(fit.x[3])
    flux, x0, y0, fwhm, _ = fit.x[:5]
    fitted_beta = float(fit.x[5]) if free else float(beta)
    if not fit.success or not 0.31 < fwhm < size - 0.01 or flux <= 0:
        return None
    if free and not MOFFAT_BETA_MIN + 0.01 < fitted_beta < MOFFAT_BETA_MAX - 0.01:
        return None
    return StarFit(float(fwhm), float(flux * total), float(x0), float(y0), fitted_beta)


def flatten_frame(data: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame less its coarse sky and the remaining median (:func:`lumos_ops.noise_calibration.subtract_sky`,
    then :func:`~lumos_ops.noise_calibration.robust_sigma`), and its pixel noise (robust sigma, the
    frame's unit): what :func:`fit_stars` fits, computed once for a caller that also cuts the stars out."""
    from lumos_ops.noise_calibration import robust_sigma, subtract_sky

    img = subtract_sky(np.asarray(data, dtype=np.float64))
    med, sigma = robust_sigma(img)
    return img - med, sigma


def fit_stars(data: np.ndarray, *, beta: float | None = DEFAULT_MOFFAT_BETA, min_snr: float = 30.0, radius: int = 7,
              max_stars: int = 100, flat: tuple[np.ndarray, float] | None = None) -> pd.DataFrame:
    """Moffat fits (:func:`fit_star`; ``beta`` None fits it) of a frame's bright isolated peaks (the
    ``max_stars`` brightest of :func:`bright_compact_peaks`, after the frame's coarse sky is subtracted).
    ``flat``: :func:`flatten_frame` of ``data`` when the caller has it (``data`` is then not read).

    Returns one row per successful fit of FWHM >= 0.6 px: ``x``, ``y`` (pixels, sub-pixel centre,
    0-based frame coordinates), ``fwhm_px``, ``flux`` (the frame's unit times pixels), ``beta``.
    Galaxies and stars alike: :func:`stellar_locus` tells them apart.
    """
    img, sigma = flatten_frame(data) if flat is None else flat
    peaks = bright_compact_peaks(img, sigma, min_snr=min_snr, radius=radius) if sigma > 0 else np.zeros((0, 2), int)
    if len(peaks) > max_stars:
        peaks = peaks[np.argsort(img[peaks[:, 0], peaks[:, 1]])[::-1][:max_stars]]
    rows = []
    for y, x in peaks:
        fit = fit_star(img[y - radius : y + radius + 1, x - radius : x + radius + 1], beta=beta)
        if fit is not None and fit.fwhm_px >= 0.6:
            rows.append({"x": x + fit.dx, "y": y + fit.dy, "fwhm_px": fit.fwhm_px, "flux": fit.flux, "beta": fit.beta})
    return pd.DataFrame(rows, columns=["x", "y", "fwhm_px", "flux", "beta"])


def stellar_locus(fwhm_px: np.ndarray) -> tuple[float, np.ndarray]:
    """The stars among fitted sources: (the locus FWHM, bool mask of the sources on it).

    Stars are the most compact sources: from the lower quartile of the widths, three rounds of the
    median of those within 15 % of the current centre (none: NaN and an empty mask).
    """
    fwhm_px = np.asarray(fwhm_px, dtype=np.float64)
    if fwhm_px.size == 0:
        return float("nan"), np.zeros(0, dtype=bool)
    centre = float(np.percentile(fwhm_px, 25))
    on = np.zeros(fwhm_px.size, dtype=bool)
    for _ in range(3):
        on = np.abs(fwhm_px / centre - 1.0) < _LOCUS_WIDTH
        if not on.any():
            return float("nan"), on
        centre = float(np.median(fwhm_px[on]))
    return centre, on


def measure_psf_fwhm(data: np.ndarray, *, beta: float | None = DEFAULT_MOFFAT_BETA, min_snr: float = 30.0, radius: int = 7,
                     max_stars: int = 100, label: str = "frame") -> StarPsf:
    """PSF FWHM (pixels) of a frame from its stars (module docstring).

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        The frame (any linear unit: counts or e-/s per pixel; NaN for masked pixels). Its coarse
        sky is subtracted first (:func:`lumos_ops.noise_calibration.subtract_sky`).
    beta : float or None, keyword-only
        Moffat ``beta`` of the fits (the measurement's; the PAUS model's 3.5 by default); None fits
        it star by star, and ``StarPsf.beta`` is the locus stars' median.
    min_snr, radius, max_stars : keyword-only
        Peak threshold in pixel-noise units, cutout half-side (px), brightest peaks fitted at most.
    label : str, keyword-only
        Name of the frame in the error message.

    Raises
    ------
    LumosValueError
        Fewer than :data:`MIN_STARS` stars on the locus (the message names ``label`` and the fix).
    """
    fits = fit_stars(data, beta=beta, min_snr=min_snr, radius=radius, max_stars=max_stars)
    centre, on = stellar_locus(fits["fwhm_px"].to_numpy())
    locus = fits["fwhm_px"].to_numpy()[on]
    if locus.size < MIN_STARS:
        raise LumosValueError(
            f"{label}: only {locus.size} isolated unsaturated stars (of {len(fits)} fitted peaks above {min_snr:g} sigma) "
            f"to measure the PSF FWHM from, need {MIN_STARS}; give the FWHM in the header or as the survey's default"
        )
    q16, q84 = np.percentile(locus, [16.0, 84.0])
    fitted_beta = float(np.median(fits["beta"].to_numpy()[on]))
    return StarPsf(fwhm_px=centre, beta=fitted_beta, n_stars=int(locus.size), spread=float(0.5 * (q84 - q16) / centre))
