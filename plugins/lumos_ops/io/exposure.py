"""Read one CCD exposure through the header mapping of a survey (:mod:`lumos_ops.survey`).

Pixel values on disk are in the survey's pixel unit (ADU for PAUS). :func:`read_exposure` converts
them to e-/s per pixel (``value * gain / exptime``), which is the unit of every flux lumos-ops
reports. Every header quantity (band, exposure time, PSF FWHM, gain...) is read through the
survey's mapping: its keyword, else its default, else it is required. The default survey is PAUS
(keywords ``FILTER``, ``EXPTIME``, ``PSFFWHM``, ``GAIN``...; ``docs/surveys.md``).

Messages name the exposure by its ``label`` when one is given (the object key of a file fetched
into a download cache), so that no error or warning points at a cache file an operator cannot find.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from lumos_ops.exceptions import HeaderError, InputFileError, LumosValueError
from lumos_ops.io.fill import zero_fill
from lumos_ops.survey import HeaderKey, Survey, UnknownBandError, current_survey, paus_survey

if TYPE_CHECKING:
    from astropy.wcs import WCS

log = logging.getLogger(__name__)

__all__ = ["Exposure", "ExposureBandError", "read_exposure", "image_shape", "REQUIRED_KEYS"]

REQUIRED_KEYS: tuple[str, ...] = ("EXPTIME", "FILTER", "PSFFWHM")
"""PAUS header keywords without which an exposure cannot be measured (other surveys: the
keywords their file maps ``exptime``, ``band`` and ``psf_fwhm`` to, unless it gives defaults)."""


class ExposureBandError(HeaderError, UnknownBandError):
    """The exposure's band is not one of the survey's bands; the message names the exposure, the
    header value, the configured bands and the survey file."""


@dataclasses.dataclass(frozen=True)
class Exposure:
    """One CCD image in e-/s per pixel, with the metadata photometry needs.

    Attributes
    ----------
    path : str
        Name of the image in messages and provenance: the ``label`` given to :func:`read_exposure`
        (e.g. the object key of a downloaded exposure), else the file it was read from.
    data : ndarray, shape (ny, nx), float32
        Pixel values in e-/s; masked pixels are NaN.
    band : str
        Filter name, one of the survey's bands, e.g. ``"NB685"``.
    exptime : float
        Exposure time (s).
    gain : float
        e- per ADU.
    psf_fwhm : float
        PSF full width at half maximum (arcsec).
    psf_beta : float or None
        Moffat beta of the PSF (header ``PSFBETA``); None means a Gaussian PSF model is not
        implied either: the default Moffat beta of the caller is used.
    epoch : int
        Camera epoch, 0 ... ``survey.n_epochs - 1`` (PAUS: 0 before, 1 after the baffle intervention).
    zero_point : float or None
        AB zero point for fluxes in e-/s (``mag = ZP - 2.5 log10(f)``): the header's, else the
        survey band's ``zero_point``.
    saturate : float or None
        Saturation level converted to e-/s.
    expnum, ccdnum : int or None
        Exposure and CCD numbers.
    mjd : float or None
        Modified Julian date of the exposure start.
    wcs : astropy.wcs.WCS or None
        Celestial WCS when the header has one.
    header : dict
        The raw header as a plain dict (strings, numbers).
    survey : Survey or None
        The survey the exposure was read with (None: PAUS).
    """

    path: str
    data: np.ndarray
    band: str
    exptime: float
    gain: float
    psf_fwhm: float
    psf_beta: float | None
    epoch: int
    zero_point: float | None
    saturate: float | None
    expnum: int | None
    ccdnum: int | None
    mjd: float | None
    wcs: WCS | None
    header: dict[str, Any]
    survey: Survey | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (ny, nx) in pixels."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def band_epoch(self) -> int:
        """Row of the band x epoch embedding of a new model for the exposure's survey
        (:meth:`Survey.embedding_row`; 0-79 for PAUS narrow bands). A given model's row is
        :meth:`lumos_ops.lumos.checkpoint.LoadedModel.band_epoch_row`."""
        return (self.survey or _paus()).embedding_row(self.band, self.epoch)

    @property
    def pixel_scale(self) -> float:
        """Arcsec per pixel of the exposure's survey (PAUS: 0.263): the scale at which the PSF FWHM
        and the catalogue's sizes (arcsec) become pixels."""
        return float((self.survey or _paus()).pixel_scale)

    @property
    def wavelength_nm(self) -> float:
        """Central wavelength of the band (nm), from the survey."""
        return (self.survey or _paus()).band(self.band).wavelength_nm

    @property
    def nan_fraction(self) -> float:
        """Fraction of pixels that are masked (NaN)."""
        return float(np.isnan(self.data).mean())


@functools.lru_cache(maxsize=1)
def _paus() -> Survey:
    return paus_survey()


class _Reader:
    """Header quantities of one exposure through a survey's mapping; errors name both."""

    def __init__(self, header: fits.Header, survey: Survey, name: str) -> None:
        self.header, self.survey, self.name = header, survey, name

    def where(self) -> str:
        return f"survey {self.survey.name} ({self.survey.source})"

    def key(self, quantity: str) -> HeaderKey:
        return self.survey.header.get(quantity) or HeaderKey()

    def raw(self, quantity: str) -> tuple[Any, str]:
        """The value of ``quantity`` and where it came from (keyword or default); None if absent."""
        key = self.key(quantity)
        if key.keyword is not None and key.keyword in self.header:
            return self.header[key.keyword], key.keyword
        return key.default, f"{quantity} default" if key.default is not None else ""

    def number(self, quantity: str) -> float | None:
        value, source = self.raw(quantity)
        if value is None:
            return None
        try:
            number = float(str(value).strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise HeaderError(
                f"{self.name}: header keyword {source}={value!r} is not a number; fix the header value"
                f" (the {quantity} of {self.where()})"
            ) from None
        if not math.isfinite(number):
            raise HeaderError(f"{self.name}: header keyword {source}={value!r} is not finite; fix the header value")
        return number

    def positive(self, quantity: str, unit: str) -> float | None:
        value = self.number(quantity)
        if value is not None and value <= 0:
            raise HeaderError(f"{self.name}: {self.raw(quantity)[1]}={value} must be > 0 {unit}")
        return value

    def missing(self, quantities: tuple[str, ...]) -> None:
        absent = [q for q in quantities if self.raw(q)[0] is None]
        if absent:
            keys = ", ".join(self.key(q).keyword or q for q in absent)
            raise HeaderError(
                f"{self.name}: missing required header keyword(s) {keys}; add them, or map them (or a default) in "
                f"{self.where()} (docs/surveys.md)"
            )

    def band(self) -> str:
        value, source = self.raw("band")
        band = str(value).strip()
        if band not in self.survey.band_names:
            raise ExposureBandError(
                f"{self.name}: unknown band {source}={band!r} for {self.where()}; configured bands: "
                f"{', '.join(self.survey.band_names)}; select the survey of this exposure with --survey / LUMOS_SURVEY "
                "or add the band to the survey file"
            )
        return band

    def epoch(self) -> int:
        value = self.number("epoch")
        epoch = 0 if value is None else value
        if epoch != int(epoch) or int(epoch) not in range(self.survey.n_epochs):
            raise HeaderError(
                f"{self.name}: {self.raw('epoch')[1]}={value} must be one of the camera epochs "
                f"0...{self.survey.n_epochs - 1} of {self.where()}"
            )
        return self.survey.check_epoch(int(epoch))


def _image_hdu(hdul: fits.HDUList, name: str) -> fits.ImageHDU | fits.PrimaryHDU:
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            if hdu.data is not None and image_ndim(hdu.data) == 2:
                return hdu
    shapes = [tuple(hdu.data.shape) for hdu in hdul if getattr(hdu, "data", None) is not None
              and isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))]
    raise InputFileError(
        f"{name}: no 2-D image in the primary HDU or any image extension (image shapes found: "
        f"{', '.join(map(str, shapes)) or 'none'}); write the CCD image as a 2-D array"
    )


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """Shape (ny, nx) in pixels of the first 2-D image of a FITS file, from its header alone (the
    primary HDU or the first image extension, as :func:`read_exposure` picks); None when the file
    cannot be read or holds no 2-D image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, lazy_load_hdus=False) as hdul:
                hdul.verify("silentfix")
                for hdu in hdul:
                    if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
                        axes = [int(n) for n in (hdu.shape or ()) if int(n) != 1]
                        if len(axes) == 2:
                            return axes[0], axes[1]
    except (OSError, ValueError):
        return None
    return None


def image_ndim(data: np.ndarray) -> int:
    """Dimensions of an image array not counting axes of length 1 (a (1, ny, nx) cube is 2-D)."""
    return sum(1 for n in np.shape(data) if n != 1)


def image_array(data: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """An image array as ``dtype`` without its axes of length 1 (see :func:`image_ndim`)."""
    return np.asarray(data, dtype=dtype).reshape([n for n in np.shape(data) if n != 1])


def read_exposure(
    path: str | os.PathLike[str], *, survey: Survey | None = None, label: str | None = None
) -> Exposure:
    """Read a CCD exposure and convert it to e-/s per pixel.

    Parameters
    ----------
    path : path-like
        FITS file; the image is the primary HDU or the first 2-D image extension.
    survey : Survey or None, keyword-only
        Header mapping, accepted bands and camera epochs (:mod:`lumos_ops.survey`); None: the
        :func:`~lumos_ops.survey.current_survey` (PAUS outside a ``use_survey`` block).
    label : str, optional, keyword-only
        Name of the exposure in every error message and in :attr:`Exposure.path` (hence in the
        messages of the photometry that measures it), e.g. the object key of a file fetched into a
        download cache. Default: ``path``.

    Returns
    -------
    Exposure

    Raises
    ------
    InputFileError
        The file is missing, empty, truncated, not FITS, or holds no 2-D image.
    HeaderError
        A required quantity (band, exposure time, PSF FWHM: PAUS ``FILTER``, ``EXPTIME``,
        ``PSFFWHM``) has neither its keyword nor a default, a value is invalid, the camera epoch is
        not one of the survey's, a header card cannot be parsed, or the WCS keywords are
        inconsistent. The message names the exposure, the keyword and the survey file.
    ExposureBandError
        The band is not one of the survey's (a :class:`HeaderError` and an
        :class:`~lumos_ops.survey.UnknownBandError`).
    """
    survey = current_survey() if survey is None else survey
    path = os.fspath(path)
    name = path if label is None else str(label)
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{name}: no such file")
    if p.stat().st_size == 0:
        raise InputFileError(f"{name}: the file is empty; re-transfer the exposure")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                hdul.verify("silentfix")
                hdu = _image_hdu(hdul, name)
                raw = image_array(hdu.data, np.float32)
                fill = zero_fill(raw)  # a chip gap or mosaic border written as 0 holds no data
                if fill.any():
                    raw = np.where(fill, np.float32(np.nan), raw)
                header = hdu.header.copy()
                if hdu is not hdul[0]:
                    for key, value in hdul[0].header.items():
                        if key not in header and key not in ("SIMPLE", "EXTEND", "NAXIS", "BITPIX"):
                            header[key] = value
    except fits.VerifyError as exc:
        raise HeaderError(
            f"{name}: the FITS header does not verify ({_one_line(exc, path, name)}); fix or remove that card"
        ) from None
    except (OSError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(
            f"{name}: not a readable FITS image ({_one_line(exc, path, name)}); the file may be truncated or corrupt"
        ) from None

    read = _Reader(header, survey, name)
    psf_key = read.key("psf_fwhm")
    from_stars = psf_key.from_stars and not (psf_key.keyword is not None and psf_key.keyword in header)
    read.missing(("band", "exptime") if from_stars else ("band", "exptime", "psf_fwhm"))
    band = read.band()
    exptime = read.positive("exptime", "s")
    psf_header = read.positive("psf_fwhm", survey.psf_fwhm_unit)  # from_stars: the default, or None
    gain = read.positive("gain", "e- per pixel unit") or 1.0
    assert exptime is not None
    epoch = read.epoch()
    saturate = read.number("saturate")
    expnum = read.number("expnum")
    ccdnum = read.number("ccdnum")
    zero_point = read.number("zero_point")
    if zero_point is None:
        zero_point = survey.band(band).zero_point

    wcs = None
    if "CTYPE1" in header and "CTYPE2" in header:
        # imported only here: astropy.wcs brings in astropy.coordinates (about 0.2 CPU s)
        from astropy.wcs import WCS

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                candidate = WCS(header)
                if candidate.has_celestial:
                    wcs = candidate.celestial
        except ValueError as exc:  # astropy.wcs.WcsError and its subclasses
            raise HeaderError(
                f"{name}: invalid WCS ({_one_line(exc, path, name)}); fix the CTYPE/CRPIX/CRVAL/CD keywords "
                "or remove CTYPE1/CTYPE2 to use the catalogue's x/y"
            ) from None

    if wcs is not None:
        _check_pixel_scale(wcs, survey, name)
    data = raw * np.float32(gain / exptime)
    data[~np.isfinite(data)] = np.nan
    psf_beta = read.number("psf_beta")
    beta_key = read.key("psf_beta")
    # beta and the FWHM are one fit: beta comes from the stars only with the FWHM
    beta_from_stars = from_stars and beta_key.from_stars and not (beta_key.keyword is not None and beta_key.keyword in header)
    psf_fwhm = None if psf_header is None else survey.psf_fwhm_arcsec(psf_header)
    if from_stars:
        psf_fwhm, psf_beta = _psf_from_stars(data, survey, name, fwhm=psf_fwhm, fwhm_needed=from_stars, beta=psf_beta,
                                             beta_needed=beta_from_stars)
    assert psf_fwhm is not None
    return Exposure(
        path=name,
        data=data,
        band=band,
        exptime=exptime,
        gain=gain,
        psf_fwhm=psf_fwhm,
        psf_beta=psf_beta,
        epoch=epoch,
        zero_point=zero_point,
        saturate=None if saturate is None else saturate * gain / exptime,
        expnum=None if expnum is None else int(expnum),
        ccdnum=None if ccdnum is None else int(ccdnum),
        mjd=read.number("mjd"),
        wcs=wcs,
        header={k: header[k] for k in header if k not in ("COMMENT", "HISTORY", "")},
        survey=survey,
    )


PIXEL_SCALE_TOLERANCE = 0.05
"""Fractional difference between an exposure's WCS pixel scale and its survey's beyond which
:func:`read_exposure` warns."""


def _check_pixel_scale(wcs: WCS, survey: Survey, name: str) -> None:
    """Warn when the exposure's celestial WCS (degrees per pixel) gives a pixel scale more than
    :data:`PIXEL_SCALE_TOLERANCE` away from the survey file's: every size in arcsec (``r50``, a
    FWHM in arcsec) becomes pixels at the survey's scale, so the wrong survey file reads every galaxy
    at the wrong size and flux, silently."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    if any(str(unit) not in ("deg", "") for unit in wcs.wcs.cunit):
        return
    scale = 3600.0 * float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs))))
    if np.isfinite(scale) and abs(scale / survey.pixel_scale - 1.0) > PIXEL_SCALE_TOLERANCE:
        log.warning("%s: its WCS gives %.3f arcsec per pixel, but the survey %s (%s) has %.3f: catalogue sizes are "
                    "converted at the survey's scale; is this the survey file of these exposures?", name, scale,
                    survey.name, survey.source, survey.pixel_scale)


def _one_line(exc: BaseException, path: str, name: str) -> str:
    """The text of ``exc`` on one line, with the file path replaced by the exposure's name."""
    return " ".join(str(exc).replace(path, name).split()) or type(exc).__name__


def _psf_from_stars(data: np.ndarray, survey: Survey, name: str, *, fwhm: float | None, fwhm_needed: bool,
                    beta: float | None, beta_needed: bool) -> tuple[float | None, float | None]:
    """(PSF FWHM in arcsec, Moffat beta) with what the survey asks measured on the exposure's own
    stars (``psf_fwhm`` / ``psf_beta`` ``from_stars``; :func:`lumos_ops.photometry.psf_stars.measure_psf_fwhm`).

    ``fwhm`` / ``beta``: the default values (None: none); ``*_needed``: measure that one (the caller
    measures beta only with the FWHM). With too few stars each falls back to its default with a
    warning; a FWHM without one is a HeaderError naming the exposure and the survey.
    """
    from lumos_ops.photometry.psf_stars import measure_psf_fwhm
    from lumos_ops.render import DEFAULT_MOFFAT_BETA

    fit_beta = None if beta_needed else (DEFAULT_MOFFAT_BETA if beta is None else beta)
    try:
        star_psf = measure_psf_fwhm(data, beta=fit_beta, label=name)
    except LumosValueError as exc:
        if fwhm_needed and fwhm is None:
            key = survey.header["psf_fwhm"].keyword
            raise HeaderError(f"{exc} ({'no ' + key + ' in the header; ' if key else ''}{survey.name}: psf_fwhm "
                              "from_stars)") from None
        log.warning("%s; the survey's PSF %s is used", exc, " and ".join(
            q for q, needed in (("FWHM", fwhm_needed), ("beta", beta_needed)) if needed))
        return fwhm, beta
    log.info("%s: PSF FWHM %.2f px, beta %.2f from %d stars (spread %.1f %%)", name, star_psf.fwhm_px, star_psf.beta,
             star_psf.n_stars, 100.0 * star_psf.spread)
    return (star_psf.fwhm_px * survey.pixel_scale if fwhm_needed else fwhm), (star_psf.beta if beta_needed else beta)
