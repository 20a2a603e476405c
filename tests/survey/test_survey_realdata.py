"""A survey other than PAUS runs with only its file: real SDSS frames read, measured and refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from survey_paths import SDSS_SURVEY

from lumos_ops.cli import main
from lumos_ops.exceptions import HeaderError
from lumos_ops.flags import Flag
from lumos_ops.io.exposure import ExposureBandError, read_exposure
from lumos_ops.survey import UnknownBandError, load_survey, paus_survey

NJY_PER_NANOMAGGY = 3630.78


def test_sdss_frame_reads_through_the_survey_file(sdss_g):
    survey = load_survey(SDSS_SURVEY)
    exposure = read_exposure(sdss_g, survey=survey)
    raw = fits.getdata(sdss_g).astype(np.float64)
    assert exposure.band == "g" and exposure.epoch == 0 and exposure.survey is survey
    assert exposure.exptime == pytest.approx(53.907456)  # EXPTIME is the string '53.907456'
    assert exposure.gain == 850.0 and exposure.psf_fwhm == 1.4 and exposure.ccdnum == 5
    assert exposure.zero_point == pytest.approx(25.4944) and exposure.wcs is not None
    np.testing.assert_allclose(exposure.data, raw * 850.0 / 53.907456, rtol=1e-5)
    # calibrated flux: e-/s x 10^(-0.4 (ZP - 31.4)) nJy is the frame's nanomaggies x 3631 nJy
    njy = exposure.data * 10 ** (-0.4 * (exposure.zero_point - 31.4))
    np.testing.assert_allclose(njy, raw * NJY_PER_NANOMAGGY, rtol=2e-4, atol=1e-3)
    assert exposure.band_epoch == 0 and exposure.wavelength_nm == 477.0


def test_sdss_frame_under_paus_names_the_missing_keyword_and_survey(sdss_g):
    with pytest.raises(HeaderError) as info:
        read_exposure(sdss_g)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{sdss_g}: missing required header keyword(s) PSFFWHM")
    assert "survey paus (<built-in paus>)" in message


def test_unknown_band_is_one_line_naming_survey_file_and_bands(sdss_g, tmp_path):
    """An SDSS frame relabelled FILTER='z' under the g r i survey, and FILTER='y' under PAUS."""
    with fits.open(sdss_g) as hdul:
        hdul[0].header["FILTER"] = "z"
        hdul[0].header["PSFFWHM"] = 1.3
        hdul.writeto(tmp_path / "z.fits")
    with pytest.raises(ExposureBandError) as info:
        read_exposure(tmp_path / "z.fits", survey=load_survey(SDSS_SURVEY))
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, UnknownBandError) and isinstance(info.value, HeaderError)
    assert message.startswith(f"{tmp_path / 'z.fits'}: unknown band FILTER='z' for survey sdss-gri ({SDSS_SURVEY})")
    assert "configured bands: g, r, i" in message
    with fits.open(tmp_path / "z.fits") as hdul:
        hdul[0].header["FILTER"] = "y"
        hdul.writeto(tmp_path / "y.fits")
    with pytest.raises(ExposureBandError, match=r"unknown band FILTER='y' for survey paus \(<built-in paus>\); "
                                                r"configured bands: NB455, NB465, .*NB845, u, g, r, i, z;"):
        read_exposure(tmp_path / "y.fits")


def test_broad_band_under_paus_is_accepted_and_lumos_flags_it(sdss_g, sdss_catalog, tmp_path):
    """PAUS lists u g r i z: an SDSS r-labelled frame with a PSF keyword reads under PAUS; the PAUS
    model has no r row, so LUMOS measures it through the nearest narrow band and flags it."""
    with fits.open(sdss_g) as hdul:
        hdul[0].header["FILTER"] = "r"
        hdul[0].header["PSFFWHM"] = 1.3
        hdul.writeto(tmp_path / "r.fits")
    exposure = read_exposure(tmp_path / "r.fits")
    assert exposure.band == "r" and exposure.survey.name == "paus" and exposure.zero_point is None
    with pytest.raises(UnknownBandError, match="has no LUMOS embedding row"):
        _ = exposure.band_epoch
    out = tmp_path / "lumos.parquet"
    assert main(["measure", str(tmp_path / "r.fits"), str(sdss_catalog), "--method", "lumos", "--out", str(out),
                 "--no-progress"]) == 0
    table = pd.read_parquet(out)
    assert ((table["flag"] & int(Flag.UNTRAINED_BAND)) != 0).all() and np.isfinite(table["flux"]).all()


@pytest.mark.parametrize("method", ["aperture", "modelfit", "optimal"])
def test_measure_cli_on_a_real_sdss_frame(method, sdss_g, sdss_catalog, tmp_path):
    out = tmp_path / f"{method}.parquet"
    code = main(["measure", str(sdss_g), str(sdss_catalog), "--survey", str(SDSS_SURVEY), "--method", method,
                 "--out", str(out), "--no-progress"])
    assert code == 0
    table = pd.read_parquet(out)
    catalog = pd.read_csv(sdss_catalog)
    assert len(table) == len(catalog) and set(table["band"]) == {"g"}
    assert np.isfinite(table["flux"]).all() and np.isfinite(table["flux_err"]).all()
    assert (table["flux_err"] > 0).all()
    if method == "aperture":
        # the brightest sources: aperture fluxes (e-/s -> nanomaggies) within a factor 2 of the detection fluxes
        nmgy = table["flux"].to_numpy() * 53.907456 / 850.0
        detected = 10 ** (-0.4 * (catalog["i_auto"].to_numpy() - 22.5))
        ratio = nmgy[:5] / detected[:5]
        assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_lumos_with_the_shipped_paus_model_flags_untrained_band(sdss_g, sdss_catalog, tmp_path, caplog):
    out = tmp_path / "lumos.parquet"
    code = main(["measure", str(sdss_g), str(sdss_catalog), "--survey", str(SDSS_SURVEY), "--method", "lumos",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    table = pd.read_parquet(out)
    assert ((table["flag"] & int(Flag.UNTRAINED_BAND)) != 0).all()
    assert np.isfinite(table["flux"]).all() and np.isfinite(table["flux_err"]).all()
    assert "UNTRAINED_BAND" in caplog.text


def test_measure_cli_without_the_survey_fails_in_one_line(sdss_g, sdss_catalog, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LUMOS_SURVEY", raising=False)
    assert main(["measure", str(sdss_g), str(sdss_catalog), "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "PSFFWHM" in err and "survey paus" in err
    monkeypatch.setenv("LUMOS_SURVEY", str(SDSS_SURVEY))
    assert main(["measure", str(sdss_g), str(sdss_catalog), "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 0


def test_paus_default_is_unchanged_by_the_survey_layer():
    survey = paus_survey()
    assert survey.band_names[:40] == tuple(f"NB{c}" for c in range(455, 850, 10))
    assert survey.band_names[40:] == ("u", "g", "r", "i", "z")
    assert (survey.n_epochs, survey.ccd_shape, survey.pixel_scale) == (2, (4096, 2048), 0.263)
    assert all(b.zero_point is None for b in survey.bands)
