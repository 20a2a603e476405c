"""The observing plan: exposures, nights, seeing, zero points, camera constants and WCS.

Exposure ``e`` holds one filter tray; CCD ``k`` (1-based) sees ``TRAYS[tray][k - 1]``. Every CCD
is pointed at the field centre plus the exposure's dither plus a fixed CCD offset (see
:class:`~lumos_ops.sim.survey_config.SurveyConfig` for why the focal plane is not modelled).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math

import numpy as np
from astropy.wcs import WCS

from lumos_ops.constants import TRAY_EXPTIME, TRAYS, band_tray
from lumos_ops.sim.bands import band_sky_rate, band_zero_point
from lumos_ops.sim.survey_config import SurveyConfig

__all__ = ["CcdExposure", "Camera", "make_camera", "plan_exposures", "ccd_wcs", "FIRST_EXPNUM"]

FIRST_EXPNUM: int = 100_000
"""Exposure number of the first simulated exposure."""

_SATURATE_ADU = 50_000.0
_OVERHEAD_S = 45.0
_MJD_UNIX_EPOCH = 40587.0


@dataclasses.dataclass(frozen=True)
class Camera:
    """Fixed properties of each CCD (index 0 = CCDNUM 1).

    Attributes
    ----------
    gain : ndarray, shape (8,)
        e- / ADU.
    read_noise : ndarray, shape (8,)
        Read noise (e-, Gaussian-equivalent sigma).
    offset_arcsec : ndarray, shape (8, 2)
        Fixed pointing offset of each CCD (RA, Dec direction, arcsec).
    zp_offset : ndarray, shape (8,)
        Zero-point offset of each CCD (mag).
    saturate_adu : float
        Saturation level in ADU (full well = ``saturate_adu * gain`` e-).
    """

    gain: np.ndarray
    read_noise: np.ndarray
    offset_arcsec: np.ndarray
    zp_offset: np.ndarray
    saturate_adu: float = _SATURATE_ADU


def make_camera(seed: int) -> Camera:
    """Draw the camera constants (reproducible from ``seed``)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    return Camera(
        gain=rng.uniform(1.6, 2.0, size=8),
        read_noise=rng.uniform(4.0, 6.0, size=8),
        offset_arcsec=rng.uniform(-3.0, 3.0, size=(8, 2)),
        zp_offset=rng.normal(0.0, 0.02, size=8),
    )


@dataclasses.dataclass(frozen=True)
class CcdExposure:
    """One planned CCD image.

    Attributes
    ----------
    night : str
        ISO date of the night (evening date).
    expnum, ccd : int
        Exposure number and 1-based CCD number.
    band : str
    epoch : int
        0 or 1.
    tray : int
    exptime : float
        Seconds.
    mjd : float
        Modified Julian date of the exposure start.
    psf_fwhm : float
        arcsec.
    psf_beta : float
        Moffat beta.
    zero_point : float
        AB mag giving 1 e-/s on this image.
    gain : float
        e- / ADU.
    read_noise : float
        e-.
    saturate_adu : float
        ADU.
    sky_rate : float
        Mean dark-sky level (e-/s/pixel) before scattered light.
    ra_center, dec_center : float
        Sky position of the CCD centre (deg).
    """

    night: str
    expnum: int
    ccd: int
    band: str
    epoch: int
    tray: int
    exptime: float
    mjd: float
    psf_fwhm: float
    psf_beta: float
    zero_point: float
    gain: float
    read_noise: float
    saturate_adu: float
    sky_rate: float
    ra_center: float
    dec_center: float

    @property
    def relative_path(self) -> str:
        """``exposures/{night}/exp{expnum:07d}_ccd{ccd:02d}.fits``."""
        return f"exposures/{self.night}/exp{self.expnum:07d}_ccd{self.ccd:02d}.fits"


def _mjd(date: _dt.date) -> float:
    return (date - _dt.date(1970, 1, 1)).days + _MJD_UNIX_EPOCH


def plan_exposures(config: SurveyConfig, camera: Camera) -> list[CcdExposure]:
    """Every CCD image of the survey, in exposure order (reproducible from ``config.seed``).

    Returns
    -------
    list of CcdExposure
        ``len = n_epochs * n_exposures * n_trays * (selected CCDs per tray)``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2]))
    trays = sorted({band_tray(b) for b in config.bands})
    ny, nx = config.ccd_shape
    ccd_size_arcsec = np.array([nx, ny], dtype=np.float64) * config.pixel_scale
    cos_dec = math.cos(math.radians(config.dec_center))
    plan: list[CcdExposure] = []
    expnum = FIRST_EXPNUM
    for epoch in range(config.n_epochs):
        first = _dt.date.fromisoformat(config.first_nights[epoch])
        n_in_epoch = config.n_exposures * len(trays)
        clock: dict[int, float] = {}
        for seq in range(n_in_epoch):
            rep, tray = divmod(seq, len(trays))
            tray = trays[tray]
            night_index = seq * config.nights // n_in_epoch
            night_date = first + _dt.timedelta(days=night_index)
            exptime = TRAY_EXPTIME[tray]
            start = clock.get(night_index, 0.0)
            clock[night_index] = start + exptime + _OVERHEAD_S
            mjd = _mjd(night_date) + 0.875 + start / 86400.0
            seeing = float(np.clip(config.psf_fwhm_median * math.exp(config.psf_fwhm_scatter * rng.normal()),
                                   *config.psf_fwhm_range))
            beta = float(rng.uniform(*config.psf_beta_range))
            transparency = -abs(float(rng.normal(0.0, 0.05)))
            sky_factor = math.exp(0.15 * rng.normal())
            dither = rng.uniform(-1.0, 1.0, size=2) * config.dither_fraction * ccd_size_arcsec
            for slot, band in enumerate(TRAYS[tray]):
                if band not in config.bands:
                    continue
                offset = dither + camera.offset_arcsec[slot]
                plan.append(
                    CcdExposure(
                        night=night_date.isoformat(),
                        expnum=expnum,
                        ccd=slot + 1,
                        band=band,
                        epoch=epoch,
                        tray=tray,
                        exptime=exptime,
                        mjd=round(mjd, 6),
                        psf_fwhm=round(float(np.clip(seeing * (1.0 + 0.02 * (slot - 3.5) / 3.5), *config.psf_fwhm_range)), 4),
                        psf_beta=round(beta, 3),
                        zero_point=round(band_zero_point(band, reference=config.zp_nb685) + transparency + float(camera.zp_offset[slot]), 4),
                        gain=round(float(camera.gain[slot]), 4),
                        read_noise=round(float(camera.read_noise[slot]), 3),
                        saturate_adu=camera.saturate_adu,
                        sky_rate=band_sky_rate(band, typical=config.sky_rate) * sky_factor,
                        ra_center=config.ra_center + offset[0] / 3600.0 / cos_dec,
                        dec_center=config.dec_center + offset[1] / 3600.0,
                    )
                )
            expnum += 1
    return plan


def ccd_wcs(exposure: CcdExposure, *, ccd_shape: tuple[int, int], pixel_scale: float) -> WCS:
    """Celestial TAN WCS of a CCD image: north up (+y), east left (-x), centred on the CCD.

    Parameters
    ----------
    exposure : CcdExposure
    ccd_shape : (int, int), keyword-only
        (rows, columns).
    pixel_scale : float, keyword-only
        arcsec / pixel.
    """
    ny, nx = ccd_shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [exposure.ra_center, exposure.dec_center]
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    scale = pixel_scale / 3600.0
    wcs.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0
    return wcs

