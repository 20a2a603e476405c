"""Injection-recovery on real frames: galaxies rendered by GalSim (an independent renderer), added to
real pixels, measured through the production path (``read_exposure`` -> ``measure_exposure``), and
scored at fixed truth (:mod:`lumos_ops.evaluation.fixed_truth`).

A frame is read as it is stored (:func:`read_frame`: any image HDU, axes of length 1 dropped,
blocks of one fill value such as a mosaic's zero border made NaN, :func:`fill_regions`).
A real frame has none of the PAUS header keywords; :func:`frame_header` maps it as a user would:
``EXPTIME`` the exposure time whose Poisson noise the injected light gets (90 s, a PAUS exposure),
``GAIN`` chosen so that the frame's robust pixel noise in e-/s equals ``noise_ratio`` x the LUMOS
model's training pixel noise (``Normalization.pixel_scale``; the model knows the noise levels it
was trained on, and ``noise_ratio`` sweeps that), ``FILTER`` a band the model was trained on, ``PSFFWHM`` the frame's own
PSF measured on its stars (:func:`estimate_psf_fwhm`), expressed in arcsec at the package pixel
scale so that catalogue sizes in arcsec map to the same pixels.

Populations (:data:`POPULATIONS`): ``sersic`` (isolated Sersic profiles), ``knots`` (bulge + disk +
star-forming knots, catalogued with a Sersic approximation: the circularised half-light radius of
the drawn galaxy, :func:`circularised_half_light_radius`, n from the bulge fraction), ``blended`` (a Sersic target with an injected catalogued
neighbour at 3-8 px, the same neighbour, offset and flux ratio in every placement of the galaxy, as
a survey's blend has its neighbour in every exposure). The PSF (:attr:`InjectionConfig.psf_profile`) is by default a Kolmogorov
profile of the measured FWHM (not the Moffat the production models use); the measurement's Moffat
and each frame's own PSF built from its stars (:mod:`lumos_ops.evaluation.star_psf`) are the others. Each galaxy is placed ``n_place`` times at independent positions and frames
(its "exposures"), so co-adds of N = 2, 5, 10 exposures are scored too. Fluxes follow a
log-uniform true SNR, independent of the training prior.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lumos_ops.constants import INJECTION_SEPARATION_PX, PIXEL_SCALE
from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.io.fill import fill_regions
from lumos_ops.noise_calibration import robust_sigma, source_clearance, source_mask, subtract_sky

__all__ = [
    "POPULATIONS", "MEASUREMENT_REVISION", "InjectionConfig", "aperture_factors", "population_seed", "read_frame", "robust_sigma", "estimate_psf_fwhm", "frame_header",
    "noise_autocovariance", "matched_filter_error",
    "draw_galaxies", "circularised_half_light_radius", "catalogue_model", "noiseless_reading", "run_injection",
]

log = logging.getLogger(__name__)

POPULATIONS: tuple[str, ...] = ("sersic", "knots", "blended")
MEASUREMENT_REVISION: int = 2
"""Revision of what the measurement gives an injection's rows for the same draws. It is raised with
a change that moves them (revision 1: the joint fit's variance factor under the frame's correlated
noise; 2: the blended targets' neighbour leak measured on the exposure's isolated targets,
:mod:`lumos_ops.photometry.crosstalk`); ``lumos adapt`` measures its cached tables again when
theirs differs."""
PSF_PROFILES: tuple[str, ...] = ("kolmogorov", "moffat", "stars")
"""PSF profiles of the injected galaxies (:attr:`InjectionConfig.psf_profile`)."""
_STAMP = 65
_NEIGHBOUR_ID = 10_000_000


@dataclasses.dataclass(frozen=True)
class InjectionConfig:
    """What to inject and how.

    Attributes
    ----------
    population : str
        One of :data:`POPULATIONS`.
    n_galaxies : int
        Distinct galaxies.
    n_place : int
        Placements (exposures) of each galaxy.
    snr_range : (float, float)
        True SNR range (log-uniform) of the placements' galaxy flux, computed with the Cramer-Rao
        error of the first placement.
    spacing : int
        Least distance (pixels) between two injected galaxies in one frame realisation. The default
        :data:`INJECTION_SEPARATION_PX` keeps every injected galaxy's light out of the other targets' annuli
        and stamps.
    band : str
        ``FILTER`` written into the frames.
    noise_ratio : float
        Frame pixel noise / the model's training pixel noise (e-/s).
    source_exptime : float
        Exposure time (s) of the injected light's Poisson noise: its variance is ``f P / t`` in
        (e-/s)^2, as in an exposure of that length (the frames' own gains are unknown).
    min_clearance : float
        Smallest distance (pixels) of a placement from the frame's own detected sources
        (:func:`lumos_ops.noise_calibration.source_clearance`): the targets are isolated from
        uncatalogued real light, so that neighbours are the catalogued, injected ones of the
        ``blended`` population, and are not placed by the frame's noise.
    psf_profile : {"kolmogorov", "moffat", "stars"}
        PSF of the injected galaxies: a Kolmogorov profile at the frame's FWHM (atmospheric
        turbulence, the default: not the measurement's model), the Moffat of the measurement's
        model (the frame's β where its survey reads one, from ``PSFBETA`` or fitted to its stars,
        else ``lumos_ops.render.DEFAULT_MOFFAT_BETA``), which takes the PSF-profile mismatch out of
        a test, or ``stars``: the frame's effective PSF built from its own stars
        (:func:`lumos_ops.evaluation.star_psf.star_psf`), the PSF its galaxies have, independent
        of the measurement's model; a frame with fewer than 10 stars on its locus gets the
        Kolmogorov instead, with a warning (the table's ``psf_drawn`` says, per row).
    psf_from_stars : bool
        The frame's FWHM is the Moffat FWHM fitted to its stars
        (:func:`lumos_ops.photometry.psf_stars.measure_psf_fwhm`, as a survey's ``from_stars``
        gives it) instead of the second-moment width of :func:`estimate_psf_fwhm`.
    pool_aperture_correction : bool
        Where the survey's aperture correction is on (:mod:`lumos_ops.aperture_correction`), fit it
        once per frame on the calibrators of all the frame's copies (the default): the copies are
        one exposure whose targets are measured a few at a time, and a survey exposure holds them
        all (a PAUS CCD about 600 calibrators; a sparse copy of a small frame none). False: each
        copy is corrected alone, from its own calibrators, as an exposure of its few targets.
    seed : int
    """

    population: str = "sersic"
    n_galaxies: int = 200
    n_place: int = 10
    snr_range: tuple[float, float] = (1.0, 150.0)
    spacing: int = INJECTION_SEPARATION_PX
    band: str = "NB685"
    noise_ratio: float = 1.0
    source_exptime: float = 90.0
    min_clearance: float = 10.0
    psf_profile: str = "kolmogorov"
    psf_from_stars: bool = False
    pool_aperture_correction: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.population not in POPULATIONS:
            raise LumosValueError(f"population must be one of {POPULATIONS}, got {self.population!r}")
        if self.n_galaxies < 1 or self.n_place < 1 or self.spacing < 8:
            raise LumosValueError("n_galaxies and n_place must be >= 1 and spacing >= 8 pixels")
        lo, hi = self.snr_range
        if not 0 < lo < hi:
            raise LumosValueError(f"snr_range must be (low, high) with 0 < low < high, got {self.snr_range}")
        if not self.noise_ratio > 0:
            raise LumosValueError(f"noise_ratio must be > 0, got {self.noise_ratio}")
        if self.psf_profile not in PSF_PROFILES:
            raise LumosValueError(f"psf_profile must be one of {PSF_PROFILES}, got {self.psf_profile!r}")


def read_frame(path: str | os.PathLike[str]) -> np.ndarray:
    """The 2-D image of a FITS file (primary HDU or first image extension, axes of length 1
    dropped; ``.bz2``/``.gz`` read directly), its fill regions (:func:`fill_regions`) NaN."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    from lumos_ops.io.exposure import image_array, image_ndim

    shapes = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path) as hdul:
                for hdu in hdul:
                    if hdu.data is None or not isinstance(hdu.data, np.ndarray) or hdu.data.dtype.names:
                        continue
                    shapes.append(tuple(hdu.data.shape))
                    if image_ndim(hdu.data) == 2:
                        data = image_array(hdu.data)
                        fill = fill_regions(data)
                        if fill.any():
                            log.info("%s: %d pixels of fill (one value, %s) taken for no data", path,
                                     int(fill.sum()), ", ".join(f"{v:g}" for v in np.unique(data[fill])[:3]))
                            data[fill] = np.nan
                        return data
    except (OSError, ValueError, TypeError, IndexError) as exc:  # a truncated file: TypeError from numpy's buffer
        raise InputFileError(f"{path}: not a readable FITS image ({exc}); the file may be truncated or corrupt") from None
    raise InputFileError(f"{path}: holds no 2-D image (image shapes found: {', '.join(map(str, shapes)) or 'none'}); "
                         "write the frame as a 2-D array")


def noise_autocovariance(data: np.ndarray, *, max_lag: int = 32, mask_sigma: float = 3.0, grow: int = 4) -> np.ndarray:
    """Autocovariance (counts^2) of a frame's background noise for lags up to ``max_lag`` pixels.

    The frame's coarse sky (:func:`lumos_ops.noise_calibration.subtract_sky`: 64 px blocks) is
    subtracted first, so that a pedestal or a gradient does not enter the robust sigma. Pixels above
    ``mask_sigma`` robust sigmas (sources), grown by ``grow`` px, and NaNs are masked,
    as are pixels below -5 robust sigmas, and a masked running mean over ``2 max_lag + 1`` px (the
    sky's large-scale structure) is subtracted; every lag is an average over the pixel pairs that were
    both kept (:func:`lumos_ops.photometry.noise_correlation.masked_autocovariance`). Returns a
    (2 max_lag + 1)^2 array centred on lag 0; entry [max_lag, max_lag] is the pixel variance.
    Reprojected or resampled frames have covariance at non-zero lags: the noise of a flux sum is
    then larger than the pixel variance implies.
    """
    from scipy import ndimage

    from lumos_ops.photometry.noise_correlation import masked_autocovariance

    resid = subtract_sky(data, extrapolate=True)
    med, sig = robust_sigma(resid)
    resid = resid - med
    keep = np.isfinite(resid) & (np.nan_to_num(resid) > -5.0 * sig)
    keep &= ~source_mask(resid, mask_sigma=mask_sigma, grow=grow)
    field = np.where(keep, np.nan_to_num(resid), 0.0)
    # remove the sky's large-scale structure (scattered light, gradients): a masked running mean
    # over 2 max_lag + 1 px, as the local backgrounds of the photometry do
    size = 2 * max_lag + 1
    smooth = ndimage.uniform_filter(field, size) / np.maximum(ndimage.uniform_filter(keep.astype(np.float64), size), 1e-3)
    return masked_autocovariance(field - smooth, keep, max_lag)


def matched_filter_error(unit: np.ndarray, autocov: np.ndarray) -> float:
    """Noise (same unit as sqrt(autocov)) of the matched-filter flux ``sum(P x) / sum(P^2)`` of a
    unit-flux stamp ``P`` under a stationary noise autocovariance (lags up to the array's half-size)."""
    max_lag = autocov.shape[0] // 2
    n = unit.shape[0] + max_lag + 1
    f = np.fft.rfft2(unit, (n, n))
    auto = np.fft.irfft2(np.abs(f) ** 2, (n, n))
    lags = np.r_[-max_lag : max_lag + 1]
    auto = auto[np.ix_(lags % n, lags % n)]
    return float(np.sqrt(max((auto * autocov).sum(), 0.0)) / (unit * unit).sum())


def estimate_psf_fwhm(data: np.ndarray, *, min_snr: float = 30.0, radius: int = 5) -> float:
    """PSF FWHM (pixels) from the most compact bright isolated sources of a frame.

    Local maxima above ``min_snr`` noise units of the frame less its coarse sky
    (:func:`lumos_ops.noise_calibration.subtract_sky`), with no brighter pixel within ``2 * radius`` px and
    not flat-topped (saturated: more than two pixels within 2 % of the peak), get second moments of
    the positive pixels in a ``2 radius + 1`` px box; the FWHM is ``2.355 sigma`` of the 20th
    percentile of their sizes (stars are the most compact sources; galaxies are larger), corrected
    for the box truncating a Gaussian's moments. It is the FWHM of the Gaussian with the stars'
    second moments: exact for Gaussian stars, 0.8-1.0 px above the half-maximum width of Moffat
    (beta 3.5) and Kolmogorov stars of FWHM 1.5-5 px, whose wings add to the moments. The injected
    galaxies and the measurement's models both take the one value, so an injection test is
    consistent; its galaxies see a PSF somewhat wider than the frame's. Cosmic rays are compact
    too: on the 256 x 256 sep frame, 30 / 100 added ones take the estimate from 3.12 to 2.49 / 2.16
    px (on the SDSS frames, whose many stars dominate the 20th percentile, it stays within 2 %);
    give the FWHM for a raw frame with many of them (``lumos inject --psf-fwhm``).
    """
    from lumos_ops.photometry.psf_stars import bright_compact_peaks

    img = subtract_sky(data)
    med, sig = robust_sigma(img)
    img = np.nan_to_num(img - med)
    sizes = []
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    for y, x in bright_compact_peaks(img, sig, min_snr=min_snr, radius=radius):
        cut = img[y - radius : y + radius + 1, x - radius : x + radius + 1]
        w = np.clip(cut, 0.0, None)
        total = w.sum()
        if total <= 0:
            continue
        s2 = float((w * (xx * xx + yy * yy)).sum() / total / 2.0)
        if s2 > 0:
            sizes.append(np.sqrt(s2))
    if len(sizes) < 3:
        raise LumosValueError("fewer than 3 bright compact sources: give the PSF FWHM explicitly")
    sigma_px = float(np.percentile(sizes, 20))
    # the moments inside a finite aperture underestimate a Gaussian's sigma; correct for radius
    return 2.3548 * sigma_px * _aperture_moment_correction(sigma_px, radius)


def _aperture_moment_correction(sigma: float, radius: int) -> float:
    """Ratio true / measured sigma of a Gaussian whose second moment is taken in a box of half-side ``radius``."""
    grid = np.arange(-radius, radius + 1)
    yy, xx = np.meshgrid(grid, grid)
    r2 = xx * xx + yy * yy

    def measured(s: float) -> float:
        g = np.exp(-0.5 * r2 / s**2)
        return float(np.sqrt((g * r2).sum() / g.sum() / 2.0))

    true = sigma
    for _ in range(50):  # fixed point of measured(true) == sigma
        step = true * sigma / measured(true)
        if abs(step - true) < 1e-6:
            break
        true = step
    return true / sigma


def _frame_fwhm(data: np.ndarray, from_stars: bool, path: str | os.PathLike[str]) -> float:
    """The FWHM (px) that maps a frame: its stars' Moffat fit, or the second-moment width."""
    if from_stars:
        from lumos_ops.photometry.psf_stars import measure_psf_fwhm

        return measure_psf_fwhm(data, label=os.fspath(path)).fwhm_px
    try:
        return estimate_psf_fwhm(data)
    except LumosValueError as exc:
        raise LumosValueError(f"{os.fspath(path)}: {exc} (lumos inject --psf-fwhm PIXELS, or --psf-from-stars)") from None


def frame_header(noise_counts: float, *, training_noise: float, noise_ratio: float, band: str, psf_fwhm_px: float,
                 exptime: float) -> dict[str, Any]:
    """PAUS-contract header of a real frame (see the module docstring).

    ``EXPTIME`` (s) is the exposure time of the injected light's Poisson noise and ``GAIN``
    (e-/count) makes the frame's pixel noise ``noise_ratio * training_noise`` e-/s:
    ``noise_counts * GAIN / EXPTIME``. The classical methods' source variance ``f / EXPTIME`` then
    matches the injected Poisson noise.
    """
    gain = exptime * noise_ratio * training_noise / noise_counts
    return {"EXPTIME": float(exptime), "GAIN": float(gain), "FILTER": band, "PSFFWHM": float(psf_fwhm_px * PIXEL_SCALE),
            "EPOCH": 0, "CCDNUM": 1}


@dataclasses.dataclass(frozen=True)
class Galaxy:
    """One injected galaxy: the GalSim object (unit flux, pixel units) and its catalogue Sersic description."""

    profile: Any
    r50_arcsec: float
    sersic_n: float
    q: float
    pa: float


def _shape(rng: np.random.Generator, shapes: pd.DataFrame | None) -> tuple[float, float, float]:
    """(r50 arcsec, Sersic n, q): a random catalogue row's, clipped to what GalSim draws well
    (r50 0.1-3 arcsec, n 0.5-4, q 0.2-1), or the fixed ranges when ``shapes`` is None."""
    if shapes is None or len(shapes) == 0:
        return (float(np.exp(rng.uniform(np.log(0.3), np.log(1.5)))), float(rng.uniform(0.5, 4.0)),
                float(rng.uniform(0.3, 1.0)))
    row = shapes.iloc[int(rng.integers(0, len(shapes)))]
    return (float(np.clip(row["r50"], 0.1, 3.0)), float(np.clip(row["sersic_n"], 0.5, 4.0)),
            float(np.clip(row["q"], 0.2, 1.0)))


def _sersic(rng: np.random.Generator, shapes: pd.DataFrame | None = None, pixel_scale: float = PIXEL_SCALE):
    import galsim

    r50, n, q = _shape(rng, shapes)
    pa = float(rng.uniform(0.0, 180.0))
    prof = galsim.Sersic(n=n, half_light_radius=r50 / pixel_scale, flux=1.0, trunc=0.0)
    prof = prof.shear(q=q, beta=pa * galsim.degrees)
    return Galaxy(prof, r50, n, q, pa)


def _knotty(rng: np.random.Generator, shapes: pd.DataFrame | None = None, pixel_scale: float = PIXEL_SCALE):
    import galsim

    if shapes is None or len(shapes) == 0:
        r_disk = float(np.exp(rng.uniform(np.log(0.4), np.log(1.5)))) / pixel_scale
        q = float(rng.uniform(0.3, 1.0))
    else:
        r50, _, q = _shape(rng, shapes)
        r_disk = max(r50, 0.2) / pixel_scale
    bulge_frac = float(rng.uniform(0.0, 0.5))
    knot_frac = float(rng.uniform(0.05, 0.3)) * (1.0 - bulge_frac)
    pa = float(rng.uniform(0.0, 180.0))
    disk = galsim.Exponential(half_light_radius=r_disk, flux=1.0 - bulge_frac - knot_frac)
    knots = galsim.RandomKnots(npoints=int(rng.integers(15, 50)), half_light_radius=r_disk, flux=knot_frac,
                               rng=galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1))))
    bulge = galsim.DeVaucouleurs(half_light_radius=0.4 * r_disk, flux=bulge_frac)
    round_prof = galsim.Add([disk, knots, bulge])
    hlr = circularised_half_light_radius(round_prof, r_disk) * pixel_scale
    prof = round_prof.shear(q=q, beta=pa * galsim.degrees)
    return Galaxy(prof, max(hlr, 0.1), 1.0 + 3.0 * bulge_frac, q, pa)


def circularised_half_light_radius(round_profile: Any, scale_radius: float, *, oversample: int = 20,
                                   extent: float = 16.0) -> float:
    """The catalogue's ``r50`` of a profile before its shear: the radius of the circle that holds half
    of its light (pixels, the unit of ``round_profile``).

    An area-preserving shear (``.shear(q=...)``, what the catalogue contract and the renderer mean by
    ``r50`` and ``q``) keeps the half-light radius of the round profile as the circularised
    ``sqrt(a b)`` of the half-light ellipse; the radius of the circle that holds half the light of
    the sheared profile is larger (18 % at q = 0.3 for an exponential disk). The profile is drawn
    ``oversample`` pixels per ``scale_radius`` (pixels) over ``extent`` scale radii, smoothed by a
    Gaussian of half a drawn pixel (the knots are points), and half of its total flux is found
    along the pixels sorted by radius; light beyond the drawn box still counts in the total.
    Accurate to 0.2 % for Sersic indices 1-4.
    """
    import galsim

    scale = float(scale_radius) / oversample
    n = int(np.ceil(extent * oversample))
    image = galsim.Convolve([round_profile, galsim.Gaussian(sigma=0.5 * scale)]).drawImage(
        nx=n, ny=n, scale=scale, method="no_pixel")
    light = image.array.astype(np.float64).ravel()
    centre = 0.5 * (n - 1)
    y, x = np.indices((n, n))
    radius = np.hypot(x - centre, y - centre).ravel() * scale
    order = np.argsort(radius)
    cumulative = np.cumsum(light[order]) - 0.5 * light[order]
    return float(np.interp(0.5 * float(round_profile.flux), cumulative, radius[order]))


def _companions(n: int, rng: np.random.Generator, shapes: pd.DataFrame | None,
                pixel_scale: float) -> list[tuple[Galaxy, float, float, float]]:
    """The catalogued neighbour of each of ``n`` blended galaxies: a Sersic galaxy, its distance (3-8 px,
    uniform), direction (radians, uniform) and flux over the target's (0.3-3, log-uniform), kept for
    every placement of the galaxy."""
    out = []
    for _ in range(n):
        nbr = _sersic(rng, shapes, pixel_scale)
        dist, ang = float(rng.uniform(3.0, 8.0)), float(rng.uniform(0, 2 * np.pi))
        out.append((nbr, dist, ang, float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))))
    return out


def draw_galaxies(population: str, n: int, rng: np.random.Generator,
                  shapes: pd.DataFrame | None = None, pixel_scale: float = PIXEL_SCALE) -> list[Galaxy]:
    """``n`` galaxies of a population (``blended`` draws Sersic targets; their neighbours: :func:`_companions`).

    ``shapes`` (catalogue rows with ``r50`` arcsec, ``sersic_n``, ``q``): draw each galaxy's size,
    index and axis ratio from a random row (the knots' disk takes the row's ``r50``, at least
    0.2 arcsec); None uses fixed ranges (r50 0.3-1.5 arcsec log-uniform, n 0.5-4, q 0.3-1).
    Position angles are uniform; sizes in arcsec become pixels at ``pixel_scale`` (arcsec / pixel).
    """
    make = _knotty if population == "knots" else _sersic
    return [make(rng, shapes, pixel_scale) for _ in range(n)]


def population_seed(seed: int, population: str) -> int:
    """The generator seed of ``population``'s galaxies in a run of ``seed``: ``1000 seed`` plus the
    population's place in :data:`POPULATIONS`, whichever populations the run holds, so a run of one
    population draws the galaxies a run of all draws for it."""
    if population not in POPULATIONS:
        raise LumosValueError(f"unknown population {population!r}; choose from {', '.join(POPULATIONS)}")
    return int(seed) * 1000 + POPULATIONS.index(population)


def aperture_factors(table: pd.DataFrame) -> dict[tuple[str, str], float | tuple[float, float]]:
    """``(frame, method)`` -> the aperture correction an injection table's rows of that frame and
    method got from their own calibrators (``aperture_correction``; rows that borrowed theirs are
    left out), with the neighbour leak they measured where they measured one (``neighbour_leak``
    with a finite ``neighbour_leak_err``: a tuple ``(factor, leak)``): :func:`run_injection`'s
    ``aperture_fallback`` for another population."""
    if "aperture_correction" not in table or len(table) == 0:
        return {}
    own = table
    if "aperture_correction_borrowed" in table:
        own = table[~table["aperture_correction_borrowed"].astype("boolean").fillna(False).to_numpy(bool)]
    columns = [c for c in ("aperture_correction", "neighbour_leak", "neighbour_leak_err") if c in own]
    first = own.groupby(["frame", "method"], sort=False)[columns].first()
    out: dict[tuple[str, str], float | tuple[float, float]] = {}
    for (frame, method), row in first.iterrows():
        measured = "neighbour_leak_err" in row and np.isfinite(row["neighbour_leak_err"])
        factor = float(row["aperture_correction"])
        out[(str(frame), str(method))] = (factor, float(row["neighbour_leak"])) if measured else factor
    return out


def _psf(profile: str, fwhm_px: float, beta: float | None = None):
    """The GalSim PSF of a parametric ``profile`` (``kolmogorov``, ``moffat``) with FWHM ``fwhm_px``
    pixels; a Moffat has the measurement's ``beta`` (the frame's, measured on its stars where the
    survey says so; None: ``lumos_ops.render.DEFAULT_MOFFAT_BETA``)."""
    import galsim

    if profile == "moffat":
        from lumos_ops.render import DEFAULT_MOFFAT_BETA

        return galsim.Moffat(beta=DEFAULT_MOFFAT_BETA if beta is None else beta, fwhm=fwhm_px)
    return galsim.Kolmogorov(fwhm=fwhm_px)


def _render(galaxy: Galaxy, psf, dx: float, dy: float, *, effective: bool = False) -> np.ndarray:
    """Unit-flux PSF-convolved, pixel-integrated stamp (``_STAMP`` px, odd) centred (dx, dy) px off
    its central pixel; an ``effective`` PSF (built from stars) holds the pixel already and is sampled."""
    import galsim

    conv = galsim.Convolve([galaxy.profile, psf])
    method = "no_pixel" if effective else "auto"
    return conv.drawImage(nx=_STAMP, ny=_STAMP, scale=1.0, offset=(dx, dy), method=method).array.astype(np.float64)


def catalogue_model(galaxy: Galaxy, *, fwhm_px: float, beta: float, dx: float, dy: float, size: int = _STAMP,
                    pixel_scale: float = PIXEL_SCALE) -> np.ndarray:
    """The unit-flux model the measurement draws from a galaxy's catalogue row, ``size`` px square.

    ``r50`` (arcsec), ``sersic_n``, ``q``, ``pa`` of ``galaxy`` through
    :func:`lumos_ops.render.render_galaxies` with a Moffat PSF of ``fwhm_px`` pixels and ``beta``,
    centred ``(dx, dy)`` px off the central pixel (the convention of :func:`_render`).
    """
    from lumos_ops.render import render_galaxies

    return render_galaxies(r50=galaxy.r50_arcsec, sersic_n=galaxy.sersic_n, q=galaxy.q, pa=galaxy.pa,
                           psf_fwhm=fwhm_px * pixel_scale, psf_beta=beta, dx=dx, dy=dy, size=size,
                           pixel_scale=pixel_scale).images[0].astype(np.float64)


def noiseless_reading(light: Sequence[tuple[np.ndarray, float]], models: Sequence[np.ndarray], *,
                      sky_variance: float | None = None, exptime: float = np.inf) -> float:
    """The flux (e-/s) the production estimate reads from noiseless injected light, given catalogue models.

    ``light``: ``(unit stamp, flux e-/s)`` of each injected galaxy on one pixel grid, the target
    first (:func:`_render`); ``models``: their catalogue models on that grid, same order
    (:func:`catalogue_model`). With neighbours, the pixels ``d = sum f_k u_k`` first get the joint
    fit of :mod:`lumos_ops.photometry.neighbours` (``G a = b``, ``G_ij = sum m_i m_j``,
    ``b_i = sum m_i d``), and the fitted neighbours ``a_j m_j`` are taken out. The target is then
    read with the optimal weighted sum's weights (eq. 6) at its flux ``f0``:
    ``w = m_0 / (sky_variance + max(f0 m_0, 0) / exptime)`` (``sky_variance`` the background pixel
    variance, (e-/s)^2; ``exptime`` s; without ``sky_variance``, the background-limited ``w = m_0``),
    ``sum(w d) / sum(w m_0)``. That is ``f0`` for galaxies that are their models; otherwise it is
    where every estimator weighted by the catalogue models is pulled to, whatever the noise.
    """
    if len(light) != len(models) or not light:
        raise LumosValueError(f"give one model per injected galaxy; got {len(light)} galaxies and {len(models)} models")
    pixels = sum(flux * unit for unit, flux in light)
    if len(models) > 1:
        m = np.stack([np.asarray(x, dtype=np.float64).ravel() for x in models])
        amplitude = np.linalg.solve(m @ m.T, m @ np.ravel(pixels))
        pixels = pixels - sum(a * x for a, x in zip(amplitude[1:], models[1:]))
    target, f0 = models[0], light[0][1]
    weights = target if sky_variance is None else target / (sky_variance + np.maximum(f0 * target, 0.0) / exptime)
    return float((weights * pixels).sum() / (weights * target).sum())


def _slots(clearance: np.ndarray, spacing: int, min_clearance: float, rng: np.random.Generator) -> np.ndarray:
    """Random positions (x, y) at least ``min_clearance`` px from the frame's own sources and at least
    ``spacing`` px from each other.

    Random sequential placement: the clear pixels are visited in random order (a random sub-pixel
    offset each) and a position is kept when no kept one lies within ``spacing``. Kept positions are
    uniform over the clear sky, and a frame with any clear pixel gets at least one.
    """
    ny, nx = clearance.shape
    margin = 12
    inner = clearance[margin : ny - margin, margin : nx - margin] >= min_clearance
    free = np.flatnonzero(inner)
    if free.size == 0:
        return np.empty((0, 2))
    # enough candidates to fill the frame many times over; no more (a 4k x 2k frame has 8M pixels)
    capacity = inner.size / (0.5 * spacing * spacing)
    free = rng.permutation(free)[: int(min(free.size, 40 * capacity + 100))]
    width = nx - 2 * margin
    pts = np.column_stack([free % width + margin, free // width + margin]).astype(np.float64)
    pts += rng.uniform(-0.5, 0.5, size=pts.shape)
    cell = spacing / np.sqrt(2.0)  # at most one kept position per cell
    owner: dict[tuple[int, int], int] = {}
    kept: list[int] = []
    limit = spacing * spacing
    for i, (x, y) in enumerate(pts):
        cx, cy = int(x // cell), int(y // cell)
        near = (owner.get((cx + a, cy + b)) for a in range(-2, 3) for b in range(-2, 3))
        if any(j is not None and (pts[j, 0] - x) ** 2 + (pts[j, 1] - y) ** 2 < limit for j in near):
            continue
        owner[(cx, cy)] = i
        kept.append(i)
    return pts[kept]


def run_injection(
    frames: Sequence[str | os.PathLike[str]],
    config: InjectionConfig,
    *,
    methods: Sequence[str] = ("aperture", "optimal", "lumos"),
    model: str | os.PathLike[str] | None = None,
    psf_fwhm_px: dict[str, float] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    keep_headers: bool = False,
    shapes: pd.DataFrame | None = None,
    aperture_fallback: Mapping[tuple[str, str], float] | None = None,
) -> pd.DataFrame:
    """Inject, measure with the production path, return one row per placement and method.

    Parameters
    ----------
    frames : sequence of path-like
        Real FITS frames.
    config : InjectionConfig
    methods : sequence of str
        Photometry methods of :func:`lumos_ops.measure.measure_exposure`.
    model : path-like, shipped-model name or None
        LUMOS checkpoint.
    psf_fwhm_px : dict, optional
        PSF FWHM (pixels) per frame path; default: measured on each frame's stars.
    work_dir : path-like, optional
        Where the injected frames are written (temporarily).
    keep_headers : bool
        The frames are exposures of the current survey (:func:`lumos_ops.survey.current_survey`):
        keep their headers as they are instead of mapping them (:func:`frame_header`); gain,
        exposure time and PSF FWHM are read through the survey's header mapping
        (``read_exposure``), the injected light gets the Poisson noise of that exposure time, and
        sizes in arcsec become pixels at the survey's pixel scale. The model, and
        ``config.band``, ``noise_ratio`` and ``source_exptime``, then change nothing in the
        injected pixels: two runs with the same seed inject the same galaxies into the same pixels.
    shapes : DataFrame, optional
        Catalogue rows whose shape distribution the galaxies are drawn from (:func:`draw_galaxies`).
    aperture_fallback : mapping, optional
        ``(frame, method)`` -> the aperture correction of that frame's isolated galaxies
        (:func:`aperture_factors` of another population's table): the factor a frame whose copies
        hold too few calibrators of their own takes, as a survey exposure's blended targets take its
        isolated targets' (:func:`lumos_ops.aperture_correction.correct_pooled`).

    Returns
    -------
    DataFrame
        ``population``, ``galaxy``, ``place`` (0..n_place-1), ``frame``, ``x``, ``y``, ``true_flux``
        (e-/s), ``model_flux`` (e-/s: :func:`noiseless_reading` of the injected light, neighbour
        included, with the catalogue models and the frame's pixel noise: the flux estimators
        weighted by the catalogue models are pulled to), ``crb_err`` (the error of the matched-filter flux of the true profile under the
        frame's measured noise autocovariance plus the source's Poisson noise, e-/s: the reference
        error, independent of any method), ``true_snr`` (``true_flux / crb_err``), ``method``, ``flux``,
        ``flux_err``, ``flag``, ``psf_profile`` (the configured one) and ``psf_drawn`` (the one the row's galaxy
        got) and, for LUMOS, the mixture columns and ``q16``/``q84``.
    """
    from lumos_ops.io.exposure import read_exposure
    from lumos_ops.lumos.checkpoint import load_checkpoint
    from lumos_ops.measure import measure_exposure
    from lumos_ops.render import DEFAULT_MOFFAT_BETA

    if not frames:
        raise LumosValueError("give at least one real frame")
    from lumos_ops.survey import current_survey

    rng = np.random.default_rng(config.seed)
    survey = current_survey()
    pixel_scale = survey.pixel_scale if keep_headers else PIXEL_SCALE
    pooled = config.pool_aperture_correction and survey.aperture_correction and not survey.psf_flux_correction
    loaded = load_checkpoint(model, device="cpu")
    training_noise = float(loaded.normalization.pixel_scale)

    frame_data, headers, noise_eps, autocov, clearance = [], [], [], [], []
    for path in frames:
        data = read_frame(path)
        cov = noise_autocovariance(data)
        sig = float(np.sqrt(cov[cov.shape[0] // 2, cov.shape[1] // 2]))  # pixel noise without the sky's structure
        if not (np.isfinite(sig) and sig > 0):
            raise LumosValueError(f"{path}: its background pixel noise measures {sig:g} counts (a blank frame, or one "
                                  "stored in integers coarser than its noise); inject needs a frame whose sky noise "
                                  "spans several counts: give the frame before its quantisation")
        if keep_headers:
            exposure = read_exposure(path)
            header = _own_header(path)
            header.update({"_gain": exposure.gain, "_exptime": exposure.exptime})
            fwhm = (psf_fwhm_px or {}).get(os.fspath(path)) or exposure.psf_fwhm / pixel_scale
            header["_beta"] = exposure.psf_beta
        else:
            fwhm = (psf_fwhm_px or {}).get(os.fspath(path)) or _frame_fwhm(data, config.psf_from_stars, path)
            header = frame_header(sig, training_noise=training_noise, noise_ratio=config.noise_ratio,
                                  band=config.band, psf_fwhm_px=fwhm, exptime=config.source_exptime)
            header.update({"_gain": header["GAIN"], "_exptime": header["EXPTIME"]})
        header["_fwhm_px"] = fwhm
        if config.psf_profile == "stars":
            from lumos_ops.evaluation.star_psf import star_psf

            try:
                header["_star_psf"] = star_psf(data, label=path)
            except LumosValueError as exc:
                log.warning("%s; its galaxies get a Kolmogorov PSF of its FWHM instead (column psf_drawn)", exc)
        frame_data.append(data)
        headers.append(header)
        noise_eps.append(sig * header["_gain"] / header["_exptime"])
        autocov.append(cov * (header["_gain"] / header["_exptime"]) ** 2)
        clearance.append(source_clearance(data, fwhm_px=fwhm))
    galaxies = draw_galaxies(config.population, config.n_galaxies, rng, shapes, pixel_scale)
    snr = np.exp(rng.uniform(*np.log(config.snr_range), size=config.n_galaxies))
    companions = (_companions(config.n_galaxies, rng, shapes, pixel_scale) if config.population == "blended"
                  else [])
    # placements: (galaxy, place, frame) in random order, packed into frame realisations
    order = [(g, p) for p in range(config.n_place) for g in range(config.n_galaxies)]
    rng.shuffle(order)
    placements: list[dict[str, Any]] = []
    cursor = 0
    realisation = 0
    # every frame gets a share, however few the placements and however roomy the first frame
    share = -(-len(order) // len(frames))
    while cursor < len(order):
        k = realisation % len(frames)
        slots = _slots(clearance[k], config.spacing, config.min_clearance, rng)
        if len(slots) == 0:
            raise LumosValueError(f"{frames[k]}: no position {config.min_clearance} px from its own sources; lower "
                                  "min_clearance (lumos inject --min-clearance) or use another frame")
        if len(slots) > share:  # a large frame: a random subset of its slots, not its first rows
            slots = slots[np.sort(rng.choice(len(slots), size=share, replace=False))]
        take = order[cursor : cursor + min(len(slots), share)]
        for (g, p), (x, y) in zip(take, slots):
            placements.append({"galaxy": g, "place": p, "frame_index": k, "realisation": realisation, "x": x, "y": y})
        cursor += len(take)
        realisation += 1
    table = pd.DataFrame(placements)
    flux0 = np.full(config.n_galaxies, np.nan)
    rows = []
    tmp = tempfile.TemporaryDirectory(dir=work_dir)
    try:
        for r, part in table.groupby("realisation", sort=True):
            k = int(part["frame_index"].iloc[0])
            header = headers[k]
            gain = header["_gain"]
            shape = {"fwhm_px": header["_fwhm_px"], "beta": header.get("_beta") or DEFAULT_MOFFAT_BETA,
                     "pixel_scale": pixel_scale}  # the catalogue models' PSF, as the measurement draws them
            drawn = config.psf_profile
            if drawn == "stars" and header.get("_star_psf") is not None:
                psf, effective = header["_star_psf"].galsim(), True
            else:
                drawn = "kolmogorov" if drawn == "stars" else drawn
                psf, effective = _psf(drawn, header["_fwhm_px"], shape["beta"]), False
            image = frame_data[k].copy()
            catalog_rows = []
            for row in part.itertuples():
                gal = galaxies[row.galaxy]
                dx, dy = row.x - round(row.x), row.y - round(row.y)
                unit = _render(gal, psf, dx, dy, effective=effective)
                background_err = matched_filter_error(unit, autocov[k])
                if not np.isfinite(flux0[row.galaxy]):
                    flux0[row.galaxy] = snr[row.galaxy] * background_err
                f0 = flux0[row.galaxy]
                seen = [(unit, f0)]
                models = [catalogue_model(gal, dx=dx, dy=dy, **shape)]
                light = [(unit, f0, row.x, row.y)]
                if config.population == "blended":
                    nbr, dist, ang, ratio = companions[row.galaxy]
                    nx_, ny_ = row.x + dist * np.cos(ang), row.y + dist * np.sin(ang)
                    nunit = _render(nbr, psf, nx_ - round(nx_), ny_ - round(ny_), effective=effective)
                    light.append((nunit, f0 * ratio, nx_, ny_))
                    catalog_rows.append(_catalog_row(_NEIGHBOUR_ID + int(row.Index), nbr, nx_, ny_, light[-1][1]))
                    ox, oy = nx_ - round(row.x), ny_ - round(row.y)  # the neighbour on the target's grid
                    seen.append((_render(nbr, psf, ox, oy, effective=effective), light[-1][1]))
                    models.append(catalogue_model(nbr, dx=ox, dy=oy, **shape))
                exptime = float(header["_exptime"])
                reading = noiseless_reading(seen, models, sky_variance=noise_eps[k] ** 2, exptime=exptime)
                for stamp, flux, cx, cy in light:
                    _add(image, stamp, flux, cx, cy, gain, exptime, rng)
                source_var = float((unit**2 * np.clip(f0 * unit, 0.0, None)).sum()) / exptime / float((unit**2).sum()) ** 2
                crb = float(np.sqrt(background_err**2 + source_var))
                catalog_rows.append(_catalog_row(int(row.Index), gal, row.x, row.y, f0))
                rows.append({"placement": int(row.Index), "galaxy": row.galaxy, "place": row.place, "frame": os.fspath(frames[k]),
                             "realisation": int(r), "x": row.x, "y": row.y, "true_flux": f0, "crb_err": crb, "true_snr": f0 / crb,
                             "model_flux": reading, "psf_drawn": drawn})
            path = Path(tmp.name) / f"real{r:05d}.fits"
            _write(path, image, header)
            catalog = pd.DataFrame(catalog_rows)
            options: dict[str, Any] = {"model": model} if "lumos" in methods else {}
            if pooled:
                options["aperture_correction"] = "columns"
            measured = measure_exposure(read_exposure(path, label=f"{os.fspath(frames[k])} (injected copy {r})"), catalog, methods=list(methods), **options)
            measured = measured[measured["ref_id"] < _NEIGHBOUR_ID]
            for rec in measured.to_dict("records"):
                rec["placement"] = rec.pop("ref_id")
                rows.append({"measurement": True, **rec})
    finally:
        tmp.cleanup()
    truth = pd.DataFrame([r for r in rows if "measurement" not in r])
    meas = pd.DataFrame([r for r in rows if "measurement" in r]).drop(columns=["measurement", "x", "y"])
    out = meas.merge(truth, on="placement", how="inner")
    if pooled:
        from lumos_ops.aperture_correction import correct_pooled

        out = correct_pooled(out, "frame", seed=config.seed, fallback=aperture_fallback)
    out.insert(0, "population", config.population)
    out["psf_profile"] = config.psf_profile
    from lumos_ops.lumos.mixture import mixture_quantile
    from lumos_ops.lumos.mixture_table import has_mixture, mixtures_from_table

    if has_mixture(out):
        lum = out["method"] == "lumos"
        q = mixture_quantile([0.16, 0.84], *mixtures_from_table(out.loc[lum]).args)
        out.loc[lum, "q16"] = q[:, 0]
        out.loc[lum, "q84"] = q[:, 1]
    return out


def _catalog_row(ref_id: int, gal: Galaxy, x: float, y: float, flux: float) -> dict[str, Any]:
    i_auto = 26.0 - 2.5 * np.log10(max(flux, 0.05))
    return {"ref_id": ref_id, "x": x, "y": y, "r50": gal.r50_arcsec, "sersic_n": gal.sersic_n, "q": gal.q,
            "pa": gal.pa, "i_auto": i_auto}


def _add(image: np.ndarray, unit: np.ndarray, flux: float, cx: float, cy: float, gain: float, exptime: float,
         rng: np.random.Generator) -> None:
    """Add ``flux`` e-/s of a unit-flux stamp, central pixel on (round(cx), round(cy)), to a frame in
    counts (``gain`` e- per count), with the Poisson noise of ``exptime`` seconds."""
    half = _STAMP // 2
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    ny, nx = image.shape
    ys, xs = slice(max(y0, 0), min(y0 + _STAMP, ny)), slice(max(x0, 0), min(x0 + _STAMP, nx))
    sub = unit[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    image[ys, xs] += rng.poisson(np.clip(sub * flux * exptime, 0.0, None)) / gain


_STRUCTURAL = {"SIMPLE", "BITPIX", "EXTEND", "COMMENT", "HISTORY", "", "BSCALE", "BZERO", "PCOUNT", "GCOUNT",
               "XTENSION", "EXTNAME", "EXTVER", "INHERIT"}
"""Cards of a file's structure, not of the exposure (with every ``NAXISn``): the injected copy is
written as a 2-D primary image with its own."""


def _own_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header cards of a frame's image HDU, with the primary header's cards it lacks when the
    image is an extension (as :func:`lumos_ops.io.exposure.read_exposure` reads them); structural
    ones left out (written back unchanged)."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    from lumos_ops.io.exposure import image_ndim

    def own(header: Any) -> dict[str, Any]:
        return {k: v for k, v in header.items() if k not in _STRUCTURAL and not k.startswith("NAXIS")}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.data is not None and image_ndim(h.data) == 2), hdul[0])
            cards = own(hdu.header)
            if hdu is not hdul[0]:
                cards = {**own(hdul[0].header), **cards}
            return cards


def _write(path: Path, image: np.ndarray, header: dict[str, Any]) -> None:
    from astropy.io import fits

    hdu = fits.PrimaryHDU(image.astype(np.float32))
    for key, value in header.items():
        if not key.startswith("_"):
            hdu.header[key] = value
    hdu.writeto(path, overwrite=True)
