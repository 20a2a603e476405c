"""Tests for lumos_ops.io.exposure: the exposure header contract and its error messages."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
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


def test_an_image_with_axes_of_length_one_is_read_as_2d_and_a_cube_is_refused(tmp_path: Path) -> None:
    data = np.arange(20 * 30, dtype=np.float32).reshape(1, 20, 30)
    exposure = read_exposure(_write(tmp_path / "a.fits", data))
    assert exposure.shape == (20, 30)
    np.testing.assert_allclose(exposure.data, data[0] * 2.0 / 90.0, rtol=1e-6)
    with pytest.raises(InputFileError, match=r"no 2-D image .*\(3, 20, 30\).*write the CCD image as a 2-D array"):
        read_exposure(_write(tmp_path / "cube.fits", np.ones((3, 20, 30), np.float32)))


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


def test_a_wcs_at_another_pixel_scale_than_the_surveys_is_reported(tmp_path: Path, caplog) -> None:
    import logging

    for arcsec, warned in ((0.263, False), (0.27, False), (0.396, True)):
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [150.0, 2.2]
        wcs.wcs.cdelt = [-arcsec / 3600, arcsec / 3600]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lumos_ops.io.exposure"):
            read_exposure(_write(tmp_path / f"w{arcsec}.fits", **dict(wcs.to_header())))
        assert ("its WCS gives 0.396 arcsec per pixel, but the survey paus" in caplog.text) == warned, caplog.text


def test_nan_pixels_stay_masked(tmp_path: Path) -> None:
    data = np.ones((10, 10), np.float32)
    data[2:4, :] = np.nan
    exposure = read_exposure(_write(tmp_path / "n.fits", data=data))
    assert exposure.nan_fraction == pytest.approx(0.2)


def test_a_chip_gap_written_as_zeros_holds_no_data(tmp_path: Path) -> None:
    """Zeros over a block of >= 1000 px are a fill (a chip gap, a mosaic border), not sky: NaN, as
    the injection's frame reader has them; a few zeros, or a sky-subtracted frame of integers around
    0, stay data."""
    rng = np.random.default_rng(0)
    data = rng.normal(6856.0, 30.0, (80, 200)).astype(np.float32)
    data[:, 120:135] = 0.0  # 1,200 px
    exposure = read_exposure(_write(tmp_path / "gap.fits", data=data))
    assert np.isnan(exposure.data[:, 120:135]).all() and np.isfinite(exposure.data[:, :120]).all()
    assert exposure.nan_fraction == pytest.approx(15 / 200)
    few = data.copy()
    few[:, 120:135] = 6856.0
    few[10:20, 10:20] = 0.0  # 100 px: under the area of a fill
    assert np.isfinite(read_exposure(_write(tmp_path / "few.fits", data=few)).data).all()
    around_zero = np.round(rng.normal(0.0, 1.0, (80, 200))).astype(np.int16)  # zeros everywhere, none a block
    assert np.isfinite(read_exposure(_write(tmp_path / "int.fits", data=around_zero)).data).all()


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ({"EXPTIME": None}, "missing required header keyword.*EXPTIME"),
        ({"FILTER": None, "PSFFWHM": None}, "FILTER, PSFFWHM"),
        ({"FILTER": "NB999"}, "unknown band FILTER='NB999'"),
        ({"EXPTIME": 0.0}, "EXPTIME=0.0 must be > 0"),
        ({"PSFFWHM": "wide"}, "PSFFWHM='wide' is not a number"),
        ({"EPOCH": 3}, "EPOCH=3.0 must be one of the camera epochs 0...1 of survey paus"),
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


@contextlib.contextmanager
def _no_warnings() -> Iterator[None]:
    """Fail if the block emits any warning, whatever the warning filters of the test run."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]


KEY = "survey/2026-11-20/exp005000/ccd01.fits"
"""Object key of an exposure fetched into a download cache (the ``label`` of :func:`read_exposure`)."""


def _cache_file(tmp_path: Path, data: bytes) -> Path:
    """Bytes stored the way ``DownloadCache`` stores them: under a checksum-derived name."""
    path = tmp_path / "cache" / "5f" / "5f0e1d2c3b4a.fits"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _fits_bytes(tmp_path: Path, **header: object) -> bytes:
    return _write(tmp_path / "src.fits", **header).read_bytes()


def test_label_names_the_exposure_and_defaults_to_the_path(tmp_path: Path) -> None:
    path = _cache_file(tmp_path, _fits_bytes(tmp_path))
    assert read_exposure(path).path == str(path)
    exposure = read_exposure(path, label=KEY)
    assert exposure.path == KEY and exposure.band == "NB685"


@pytest.mark.parametrize(
    ("header", "error", "match"),
    [
        ({"EXPTIME": None}, HeaderError, "missing required header keyword.*EXPTIME"),
        ({"FILTER": "NB999"}, HeaderError, "unknown band"),
        ({"PSFFWHM": "wide"}, HeaderError, "PSFFWHM='wide' is not a number"),
        ({"GAIN": -1.0}, HeaderError, "GAIN=-1.0 must be > 0"),
        ({"CTYPE1": "RA---TAN", "CTYPE2": "RA---TAN"}, HeaderError, "invalid WCS .*Inconsistent projection types"),
    ],
)
def test_errors_name_the_label_not_the_cache_file(tmp_path: Path, header: dict, error: type, match: str) -> None:
    path = _cache_file(tmp_path, _fits_bytes(tmp_path, **header))
    with _no_warnings(), pytest.raises(error, match=match) as info:
        read_exposure(path, label=KEY)
    assert str(info.value).startswith(f"{KEY}: ") and str(path) not in str(info.value)
    assert "cache" not in str(info.value)


def test_unreadable_files_name_the_label(tmp_path: Path) -> None:
    good = _fits_bytes(tmp_path, EXPNUM=5000)
    bad_card = bytearray(good)  # a card astropy cannot fix: a non-printable character in its comment
    at = bytes(bad_card).index(b"EXPNUM  =")
    bad_card[at:at + 80] = b"EXPNUM  =                 5000 / exposure number \x01".ljust(80)
    cases = {
        b"": (InputFileError, "the file is empty"),
        good[:3000]: (InputFileError, "not a readable FITS image"),
        b"this is not FITS\n" * 300: (InputFileError, "not a readable FITS image"),
        bytes(bad_card): (HeaderError, "the FITS header does not verify .*Unprintable string"),
    }
    for k, (data, (error, match)) in enumerate(cases.items()):
        path = _cache_file(tmp_path / str(k), data)
        with _no_warnings(), pytest.raises(error, match=match) as info:
            read_exposure(path, label=KEY)
        message = str(info.value)
        assert message.startswith(f"{KEY}: ") and str(path) not in message and "\n" not in message, message
    with pytest.raises(InputFileError, match=f"^{KEY}: no such file$"):
        read_exposure(tmp_path / "cache" / "gone.fits", label=KEY)


def test_reading_a_nonstandard_header_warns_nothing(tmp_path: Path) -> None:
    """Cards astropy fixes on read (deprecated WCS keywords, a lower-case keyword) leave no warning
    that could name the cache file."""
    data = bytearray(_fits_bytes(tmp_path, EXPNUM=5000, CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=150.0,
                                 CRVAL2=2.2, CRPIX1=15.0, CRPIX2=10.0, CDELT1=-7.3e-5, CDELT2=7.3e-5,
                                 RADECSYS="FK5", EQUINOX=2000.0))
    at = bytes(data).index(b"EXPNUM  =")
    data[at:at + 80] = b"expnum  =                 5000".ljust(80)
    path = _cache_file(tmp_path, bytes(data))
    with _no_warnings():
        exposure = read_exposure(path, label=KEY)
    assert exposure.wcs is not None and exposure.expnum == 5000 and exposure.path == KEY


def _starry(path: Path, fwhm_px: float, n_stars: int = 25, beta: float = 3.5, **header: object) -> Path:
    """A 240 px square frame of GalSim Moffat stars of ``fwhm_px`` and ``beta`` on a noisy sky."""
    galsim = pytest.importorskip("galsim")
    rng = np.random.default_rng(3)
    image = galsim.ImageF(240, 240, scale=1.0)
    for _ in range(n_stars):
        x, y = rng.uniform(15, 225, 2)
        stamp = galsim.Moffat(beta=beta, fwhm=fwhm_px).withFlux(rng.uniform(2e4, 1e5)).drawImage(
            nx=31, ny=31, scale=1.0, offset=(x % 1 - 0.5, y % 1 - 0.5))
        stamp.setCenter(int(x) + 1, int(y) + 1)
        bounds = stamp.bounds & image.bounds
        image[bounds] += stamp[bounds]
    data = (image.array + rng.normal(200.0, 8.0, (240, 240))).astype(np.float32)
    return _write(path, data, **header)


def test_a_survey_without_a_seeing_keyword_measures_the_psf_on_the_stars(tmp_path: Path) -> None:
    """``psf_fwhm: {"keyword": "SEEING", "from_stars": true}``: the header's value where it has one,
    else the FWHM of the frame's stars (pixels) times the survey's pixel scale."""
    import dataclasses

    from lumos_ops.survey import HeaderKey, paus_survey

    paus = paus_survey()
    survey = dataclasses.replace(paus, name="starry", header={**paus.header, "psf_fwhm": HeaderKey("SEEING", from_stars=True)})
    measured = read_exposure(_starry(tmp_path / "a.fits", 3.0, PSFFWHM=None), survey=survey)
    assert measured.psf_fwhm == pytest.approx(3.0 * paus.pixel_scale, rel=0.01)
    given = read_exposure(_starry(tmp_path / "b.fits", 3.0, PSFFWHM=None, SEEING=0.9), survey=survey)
    assert given.psf_fwhm == 0.9
    with pytest.raises(HeaderError, match=r"c\.fits: only 0 isolated unsaturated stars .* \(no SEEING in the header; "
                                          r"starry: psf_fwhm from_stars\)"):
        read_exposure(_write(tmp_path / "c.fits", PSFFWHM=None), survey=survey)
    fallback = dataclasses.replace(survey, header={**survey.header, "psf_fwhm": HeaderKey("SEEING", 1.2, from_stars=True)})
    assert read_exposure(_starry(tmp_path / "d.fits", 3.0, PSFFWHM=None), survey=fallback).psf_fwhm == pytest.approx(
        3.0 * paus.pixel_scale, rel=0.01)  # stars first
    assert read_exposure(tmp_path / "c.fits", survey=fallback).psf_fwhm == 1.2  # too few stars: the default


def test_the_psf_beta_can_come_from_the_stars_too(tmp_path: Path) -> None:
    """``psf_beta: {"keyword": "PSFBETA", "from_stars": true}`` fits the Moffat beta with the FWHM
    (GalSim stars of beta 2.5); a header ``PSFBETA`` wins; where the header gives the FWHM, beta is
    not fitted alone (it keeps its keyword or default: one fit measures both)."""
    import dataclasses

    from lumos_ops.survey import HeaderKey, paus_survey

    paus = paus_survey()
    header = {**paus.header, "psf_fwhm": HeaderKey("PSFFWHM", from_stars=True), "psf_beta": HeaderKey("PSFBETA", from_stars=True)}
    survey = dataclasses.replace(paus, name="starry", header=header)
    both = read_exposure(_starry(tmp_path / "a.fits", 3.0, beta=2.5, PSFFWHM=None), survey=survey)
    assert both.psf_beta == pytest.approx(2.5, abs=0.05) and both.psf_fwhm == pytest.approx(3.0 * paus.pixel_scale, rel=0.01)
    given = read_exposure(_starry(tmp_path / "b.fits", 3.0, beta=2.5, PSFFWHM=None, PSFBETA=4.0), survey=survey)
    assert given.psf_beta == 4.0
    beta_only = read_exposure(_starry(tmp_path / "c.fits", 3.0, beta=2.5, PSFFWHM=0.9), survey=survey)
    assert beta_only.psf_fwhm == 0.9 and beta_only.psf_beta is None
