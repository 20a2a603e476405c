"""Survey constants for PAUCam / PAUS, the first target survey.

Numbers come from Cabayol et al. (2021) §2.1 and ``shared/GUIDE.md``. Other surveys override
them through configuration objects; nothing here is read at import time from the environment.
"""

from __future__ import annotations

__all__ = [
    "PIXEL_SCALE",
    "SEEING_RANGE",
    "STAMP_SIZE",
    "CCD_SHAPE",
    "N_CCDS",
    "NB_BANDS",
    "BROAD_BANDS",
    "N_EPOCHS",
    "TRAYS",
    "TRAY_EXPTIME",
    "ANNULUS_RADII",
    "INJECTION_SEPARATION_PX",
    "APERTURE_LIGHT_FRACTION",
    "BRIGHT_LOSS_IMAG",
    "NJY_ZEROPOINT",
    "band_centre_nm",
    "band_tray",
    "band_exptime",
    "band_epoch_index",
    "n_band_epochs",
]

PIXEL_SCALE: float = 0.263
"""PAUCam pixel scale (arcsec / pixel)."""

SEEING_RANGE: tuple[float, float] = (0.7, 1.4)
"""Range of the PSF FWHM (arcsec) of the simulated PAUS exposures (``SurveyConfig.psf_fwhm_range``)."""

STAMP_SIZE: int = 60
"""Side of the LUMOS input stamp (pixels); 60 px = 15.8 arcsec at PAUCam's scale."""

CCD_SHAPE: tuple[int, int] = (4096, 2048)
"""Full PAUCam CCD shape as a numpy array shape (rows, columns) = (ny, nx) in pixels."""

N_CCDS: int = 8
"""Number of central CCDs used for narrow-band imaging."""

NB_BANDS: tuple[str, ...] = tuple(f"NB{c}" for c in range(455, 850, 10))
"""The 40 PAUCam narrow bands NB455...NB845 (centres in nm, FWHM about 13 nm)."""

BROAD_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
"""PAUCam broad bands (not used by the LUMOS band embedding)."""

N_EPOCHS: int = 2
"""Camera epochs: 0 before and 1 after the 2016 baffle intervention."""

TRAYS: tuple[tuple[str, ...], ...] = tuple(NB_BANDS[8 * t : 8 * t + 8] for t in range(5))
"""Five filter trays of eight bands, bluest first; one exposure = one tray over the 8 CCDs."""

TRAY_EXPTIME: tuple[float, ...] = (70.0, 80.0, 90.0, 110.0, 130.0)
"""Baseline exposure time per tray (s), bluest to reddest."""

ANNULUS_RADII: tuple[float, float] = (30.0, 45.0)
"""Inner and outer radius (pixels) of the PAUS background annulus (§3.2)."""

INJECTION_SEPARATION_PX: int = 80
"""Default least distance (pixels) between two galaxies injected into one frame (``lumos inject``,
``lumos adapt``): the annulus's outer radius (45 px) plus the half-width of a rendered galaxy
(32 px), rounded up. Closer, the faint light of the other injected galaxies sits in a target's
annulus but, by construction, not under the target, and every faint flux reads low: on a frame of
white noise, aperture fluxes at true SNR 1-2 read -10 % with galaxies at least 20 px apart and
-0.8 % at 80 px (``reports/lumos/injection-spacing``). A survey's catalogue targets have no such
arrangement of neighbours."""

APERTURE_LIGHT_FRACTION: float = 0.625
"""Fraction of the PSF-convolved model light enclosed by the PAUS elliptical aperture (§3.2)."""

BRIGHT_LOSS_IMAG: float = 20.5
"""i_AB below which LUMOS uses the untruncated MDN loss eq. (8); eq. (10) fainter (§4.2)."""

NJY_ZEROPOINT: float = 31.4
"""AB magnitude of 1 nJy: calibrated flux [nJy] = f [e-/s] * 10**(-0.4 * (ZP - 31.4))."""


def band_centre_nm(band: str) -> float:
    """Central wavelength (nm) of a narrow band such as ``"NB685"``."""
    if band not in NB_BANDS:
        raise ValueError(f"unknown band {band!r}: expected one of NB455...NB845")
    return float(band[2:])


def band_tray(band: str) -> int:
    """Index (0-4, bluest first) of the filter tray holding ``band``."""
    for tray, bands in enumerate(TRAYS):
        if band in bands:
            return tray
    raise ValueError(f"unknown band {band!r}: expected one of NB455...NB845")


def band_exptime(band: str) -> float:
    """Baseline PAUS exposure time (s) of ``band``."""
    return TRAY_EXPTIME[band_tray(band)]


def n_band_epochs(n_bands: int = len(NB_BANDS), n_epochs: int = N_EPOCHS) -> int:
    """Rows of the band x epoch embedding table (80 for PAUS)."""
    return n_bands * n_epochs


def band_epoch_index(band: str, epoch: int) -> int:
    """Row of the band x camera-epoch embedding: ``band_index + 40 * epoch`` (0-79 for PAUS)."""
    if epoch not in range(N_EPOCHS):
        raise ValueError(f"epoch must be 0 or 1, got {epoch!r}")
    if band not in NB_BANDS:
        raise ValueError(f"unknown band {band!r}: expected one of NB455...NB845")
    return NB_BANDS.index(band) + len(NB_BANDS) * epoch


DEFAULT_FLUX_ERROR_FLOOR: float = 0.011
"""Fractional flux error of the PSF and catalogue models (:mod:`lumos_ops.photometry.error_floor`)
of a survey that does not set ``flux_error_floor``: measured by injecting GalSim Sérsic galaxies with
a Kolmogorov PSF into simulated PAUS CCDs measured with the header's Moffat PSF model
(``reports/lumos/error-floor``)."""

DEFAULT_COADD_OUTLIER_FRACTION: float = 0.0
"""Prior probability that one exposure's measurement of a source is bad, which the LUMOS co-adds of
a survey that does not set ``coadd_outlier_fraction`` allow for
(:func:`lumos_ops.lumos.coadd.coadd_likelihoods`, ``outlier_fraction``): none. On the real-frame
injections it changed no co-add pull by more than 0.04 and moved the faintest co-adds low
(``reports/lumos/coadd-outliers``); a survey whose exposures keep unflagged artefacts turns it on."""

DEFAULT_NEIGHBOUR_ERROR_FLOOR: float = 0.025
"""Fractional error of the catalogued neighbours' light that a joint fit took out of a blended
target's stamps (``neighbour_light``, :mod:`lumos_ops.photometry.error_floor`) of a survey that
does not set ``neighbour_error_floor``: measured like :data:`DEFAULT_FLUX_ERROR_FLOOR`, on blended
pairs injected into the same two held-out simulated CCDs, each galaxy with the same neighbour in
every placement and the neighbours' light given back at the exposure's corrected flux
(:func:`lumos_ops.flux_correction.apply_flux_correction`): LUMOS rows at measured SNR >= 50 whose
neighbours' light is at least a tenth of their flux ask 2.4 %, the optimal sum 2.6 %, the aperture
3.6 % (4.2 %, 4.2 % and 5.1 % before the light was given back; ``reports/lumos/error-floor``)."""
