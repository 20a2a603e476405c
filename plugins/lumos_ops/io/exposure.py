"""Read one CCD exposure following the header contract of ``shared/GUIDE.md``.

Pixel values on disk are ADU. :func:`read_exposure` converts them to e-/s per pixel
(``ADU * GAIN / EXPTIME``), which is the unit of every flux lumos-ops reports.

Messages name the exposure by its ``label`` when one is given (the object key of a file fetched
into a download cache), so that no error or warning points at a cache file an operator cannot find.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS

from lumos_ops.constants import N_EPOCHS, NB_BANDS, band_epoch_index
from lumos_ops.exceptions import HeaderError, InputFileError

__all__ = ["Exposure", "read_exposure", "REQUIRED_KEYS"]

REQUIRED_KEYS: tuple[str, ...] = ("EXPTIME", "FILTER", "PSFFWHM")
"""Header keywords without which an exposure cannot be measured."""


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
        Filter name, e.g. ``"NB685"``.
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
        Camera epoch (0 before, 1 after the baffle intervention).
    zero_point : float or None
        AB zero point for fluxes in e-/s (``mag = ZP - 2.5 log10(f)``).
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

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (ny, nx) in pixels."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def band_epoch(self) -> int:
        """Row of the band x epoch embedding (0-79 for PAUS narrow bands)."""
        return band_epoch_index(self.band, self.epoch)

    @property
    def nan_fraction(self) -> float:
        """Fraction of pixels that are masked (NaN)."""
        return float(np.isnan(self.data).mean())


def _number(header: fits.Header, key: str, name: str, default: float | None = None) -> float | None:
    if key not in header:
        if default is None:
            return None
        return default
    value = header[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HeaderError(
            f"{name}: header keyword {key}={value!r} is not a number; fix the header value"
        ) from None
    if not math.isfinite(number):
        raise HeaderError(f"{name}: header keyword {key}={value!r} is not finite; fix the header value")
    return number


def _image_hdu(hdul: fits.HDUList, name: str) -> fits.ImageHDU | fits.PrimaryHDU:
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
                return hdu
    raise InputFileError(
        f"{name}: no 2-D image in the primary HDU or any image extension; "
        "write the CCD image as a 2-D array"
    )


def read_exposure(
    path: str | os.PathLike[str], *, allowed_bands: tuple[str, ...] = NB_BANDS, label: str | None = None
) -> Exposure:
    """Read a CCD exposure and convert it to e-/s per pixel.

    Parameters
    ----------
    path : path-like
        FITS file; the image is the primary HDU or the first 2-D image extension.
    allowed_bands : tuple of str, keyword-only
        Filter names accepted in the ``FILTER`` keyword.
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
        A required keyword (``EXPTIME``, ``FILTER``, ``PSFFWHM``) is missing or invalid, the band
        is unknown, a header card cannot be parsed, or the WCS keywords are inconsistent.
    """
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
                raw = np.asarray(hdu.data, dtype=np.float32)
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

    missing = [k for k in REQUIRED_KEYS if k not in header]
    if missing:
        raise HeaderError(
            f"{name}: missing required header keyword(s) {', '.join(missing)}; "
            "add them (see the exposure contract in README)"
        )
    band = str(header["FILTER"]).strip()
    if band not in allowed_bands:
        raise HeaderError(f"{name}: unknown band FILTER={band!r}; expected one of {allowed_bands[0]}...{allowed_bands[-1]}")
    exptime = _number(header, "EXPTIME", name)
    psf_fwhm = _number(header, "PSFFWHM", name)
    gain = _number(header, "GAIN", name, default=1.0)
    assert exptime is not None and psf_fwhm is not None and gain is not None
    if exptime <= 0:
        raise HeaderError(f"{name}: EXPTIME={exptime} must be > 0 s")
    if psf_fwhm <= 0:
        raise HeaderError(f"{name}: PSFFWHM={psf_fwhm} must be > 0 arcsec")
    if gain <= 0:
        raise HeaderError(f"{name}: GAIN={gain} must be > 0 e-/ADU")
    epoch_value = _number(header, "EPOCH", name, default=0.0)
    epoch = int(epoch_value or 0)
    if epoch not in range(N_EPOCHS):
        raise HeaderError(f"{name}: EPOCH={epoch_value} must be 0 or 1")
    saturate_adu = _number(header, "SATURATE", name)
    expnum = _number(header, "EXPNUM", name)
    ccdnum = _number(header, "CCDNUM", name)

    wcs = None
    if "CTYPE1" in header and "CTYPE2" in header:
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

    data = raw * np.float32(gain / exptime)
    data[~np.isfinite(data)] = np.nan
    return Exposure(
        path=name,
        data=data,
        band=band,
        exptime=exptime,
        gain=gain,
        psf_fwhm=psf_fwhm,
        psf_beta=_number(header, "PSFBETA", name),
        epoch=epoch,
        zero_point=_number(header, "ZP", name),
        saturate=None if saturate_adu is None else saturate_adu * gain / exptime,
        expnum=None if expnum is None else int(expnum),
        ccdnum=None if ccdnum is None else int(ccdnum),
        mjd=_number(header, "MJD-OBS", name),
        wcs=wcs,
        header={k: header[k] for k in header if k not in ("COMMENT", "HISTORY", "")},
    )


def _one_line(exc: BaseException, path: str, name: str) -> str:
    """The text of ``exc`` on one line, with the file path replaced by the exposure's name."""
    return " ".join(str(exc).replace(path, name).split()) or type(exc).__name__
