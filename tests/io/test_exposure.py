"""Tests for lumos_ops.io.exposure: the exposure header contract and its error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from lumos_ops.exceptions import HeaderError, InputFileError
from lumos_ops.io.exposure import read_exposure


def _write(path: Path, data: np.ndarray | None = None, extension: bool = False, **header: object) -> Path:
    data = np.full((20, 30), 100.0, dtype=np.float32) if data is None else data
    keys = {"EXPTIME": 90.0, "FILTER": "NB685", "PSFFWHM": 1.1, "GAIN": 2.0}
    keys.update(header)
    hdr = fits.Header()
    for key, value in keys.items():
        if value is not None:
            hdr[key] = value
    if extension:
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header=hdr)]).writeto(path)
    else:
        fits.PrimaryHDU(data, header=hdr).writeto(path)
    return path


def test_converts_adu_to_electrons_per_second(tmp_path: Path) -> None:
    exposure = read_exposure(_write(tmp_path / "a.fits", SATURATE=45000.0, ZP=26.1, EPOCH=1, EXPNUM=7, CCDNUM=3))
    assert exposure.data.dtype == np.float32
    np.testing.assert_allclose(exposure.data, 100.0 * 2.0 / 90.0, rtol=1e-6)
    assert exposure.band == "NB685"
    assert exposure.saturate == pytest.approx(45000.0 * 2.0 / 90.0)
    assert (exposure.epoch, exposure.expnum, exposure.ccdnum, exposure.zero_point) == (1, 7, 3, 26.1)
    assert exposure.band_epoch == 23 + 40


def test_reads_first_image_extension_and_inherits_primary_keys(tmp_path: Path) -> None:
    path = tmp_path / "ext.fits"
    hdr = fits.Header({"EXPTIME": 70.0, "FILTER": "NB455", "PSFFWHM": 0.9})
    fits.HDUList([fits.PrimaryHDU(header=fits.Header({"ZP": 25.0})), fits.ImageHDU(np.ones((5, 6), np.float32), header=hdr)]).writeto(path)
    exposure = read_exposure(path)
    assert exposure.shape == (5, 6)
    assert exposure.zero_point == 25.0
    assert exposure.gain == 1.0


def test_celestial_wcs_is_kept(tmp_path: Path) -> None:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.2]
    wcs.wcs.crpix = [15.0, 10.0]
    wcs.wcs.cdelt = [-0.263 / 3600, 0.263 / 3600]
    path = _write(tmp_path / "w.fits", **dict(wcs.to_header()))
    exposure = read_exposure(path)
    assert exposure.wcs is not None
    x, y = exposure.wcs.world_to_pixel_values(150.0, 2.2)
    assert (float(x), float(y)) == pytest.approx((14.0, 9.0))


def test_nan_pixels_stay_masked(tmp_path: Path) -> None:
    data = np.ones((10, 10), np.float32)
    data[2:4, :] = np.nan
    exposure = read_exposure(_write(tmp_path / "n.fits", data=data))
    assert exposure.nan_fraction == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ({"EXPTIME": None}, "missing required header keyword.*EXPTIME"),
        ({"FILTER": None, "PSFFWHM": None}, "FILTER, PSFFWHM"),
        ({"FILTER": "NB999"}, "unknown band FILTER='NB999'"),
        ({"EXPTIME": 0.0}, "EXPTIME=0.0 must be > 0"),
        ({"PSFFWHM": "wide"}, "PSFFWHM='wide' is not a number"),
        ({"EPOCH": 3}, "EPOCH=3.0 must be 0 or 1"),
    ],
)
def test_header_errors_name_file_and_keyword(tmp_path: Path, header: dict, match: str) -> None:
    path = _write(tmp_path / "bad.fits", **header)
    with pytest.raises(HeaderError, match=match) as info:
        read_exposure(path)
    assert str(path) in str(info.value)


def test_missing_empty_truncated_and_non_fits_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        read_exposure(tmp_path / "absent.fits")
    (tmp_path / "empty.fits").write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        read_exposure(tmp_path / "empty.fits")
    good = _write(tmp_path / "good.fits", data=np.ones((200, 200), np.float32))
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        read_exposure(truncated)
    (tmp_path / "text.fits").write_text("this is not FITS\n" * 100)
    with pytest.raises(InputFileError, match="not a readable FITS image"):
        read_exposure(tmp_path / "text.fits")


def test_file_without_image(tmp_path: Path) -> None:
    path = tmp_path / "noimage.fits"
    fits.PrimaryHDU(header=fits.Header({"EXPTIME": 1.0, "FILTER": "NB685", "PSFFWHM": 1.0})).writeto(path)
    with pytest.raises(InputFileError, match="no 2-D image"):
        read_exposure(path)
