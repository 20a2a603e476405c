"""Survey files: round trips through `lumos survey init | show`, and errors naming the file and key."""

from __future__ import annotations

import json

import pytest
from survey_paths import SDSS_SURVEY

from lumos_ops.cli import main
from lumos_ops.exceptions import BadInputError, InputFileError
from lumos_ops.survey import HeaderKey, Survey, current_survey, load_survey, paus_survey, resolve_survey, use_survey


def test_init_writes_a_file_that_loads_back(tmp_path, capsys):
    out = tmp_path / "sdss.json"
    code = main(["survey", "init", "--out", str(out), "--name", "sdss-gri", "--bands", "g,r,i",
                 "--wavelengths", "477,623.1,762.5", "--zero-points", "25.4944", "--exptime", "53.907456",
                 "--pixel-scale", "0.396", "--ccd-shape", "1489x2048", "--n-ccds", "6",
                 "--header", "psf_fwhm=PSFFWHM:1.4,gain=:850,ccdnum=CAMCOL,epoch=:0"])
    assert code == 0
    survey = load_survey(out)
    assert survey.source == str(out) and survey.band_names == ("g", "r", "i")
    assert [b.wavelength_nm for b in survey.bands] == [477.0, 623.1, 762.5]
    assert {b.zero_point for b in survey.bands} == {25.4944} and {b.exptime for b in survey.bands} == {53.907456}
    assert (survey.pixel_scale, survey.ccd_shape, survey.n_ccds, survey.n_epochs) == (0.396, (1489, 2048), 6, 1)
    assert survey.header["psf_fwhm"] == HeaderKey("PSFFWHM", 1.4)
    assert survey.header["gain"] == HeaderKey(None, 850.0)
    assert survey.header["ccdnum"] == HeaderKey("CAMCOL")
    assert survey.header["band"] == HeaderKey("FILTER")  # unmapped quantities keep the PAUS keywords
    # the shipped example says the same
    example = load_survey(SDSS_SURVEY)
    assert example.to_dict() == {**survey.to_dict(), "header": example.to_dict()["header"]}
    assert main(["survey", "show", "--survey", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == survey.to_dict()
    assert main(["survey", "init", "--out", str(out), "--bands", "g", "--wavelengths", "477", "--pixel-scale", "1"]) == 2
    assert "exists; give --force" in capsys.readouterr().err
    assert survey.flux_error_floor == paus_survey().flux_error_floor
    assert main(["survey", "init", "--out", str(out), "--bands", "g", "--wavelengths", "477", "--pixel-scale", "1",
                 "--flux-error-floor", "0.02", "--neighbour-error-floor", "0.06", "--force"]) == 0
    assert load_survey(out).flux_error_floor == 0.02 and load_survey(out).neighbour_error_floor == 0.06
    assert not load_survey(out).psf_flux_correction and not paus_survey().psf_flux_correction
    assert main(["survey", "init", "--out", str(out), "--bands", "g", "--wavelengths", "477", "--pixel-scale", "1",
                 "--psf-flux-correction", "--force"]) == 0
    assert load_survey(out).psf_flux_correction and json.loads(out.read_text())["psf_flux_correction"] is True
    (out.parent / "bad.json").write_text(json.dumps({**json.loads(out.read_text()), "psf_flux_correction": "yes"}))
    with pytest.raises(BadInputError, match="bad.json: psf_flux_correction='yes' must be true or false"):
        load_survey(out.parent / "bad.json")
    assert main(["survey", "init", "--out", str(out), "--bands", "g", "--wavelengths", "477", "--pixel-scale", "1",
                 "--no-aperture-correction", "--force"]) == 0
    assert not load_survey(out).aperture_correction and json.loads(out.read_text())["aperture_correction"] is False
    assert paus_survey().aperture_correction
    assert paus_survey().coadd_outlier_fraction == 0.0 and "coadd_outlier_fraction" not in json.loads(out.read_text())
    assert main(["survey", "init", "--out", str(out), "--bands", "g", "--wavelengths", "477", "--pixel-scale", "1",
                 "--coadd-outlier-fraction", "0.01", "--force"]) == 0
    assert load_survey(out).coadd_outlier_fraction == 0.01 and json.loads(out.read_text())["coadd_outlier_fraction"] == 0.01
    (out.parent / "bad.json").write_text(json.dumps({**json.loads(out.read_text()), "coadd_outlier_fraction": 0.7}))
    with pytest.raises(BadInputError, match=r"bad.json: coadd_outlier_fraction=0.7 must lie in \[0, 0.5\)"):
        load_survey(out.parent / "bad.json")


def test_preset_paus_round_trips(tmp_path):
    out = tmp_path / "paus.json"
    assert main(["survey", "init", "--out", str(out), "--preset", "paus"]) == 0
    loaded = load_survey(out)
    paus = paus_survey()
    assert loaded.to_dict() == paus.to_dict()
    assert loaded.embedding_bands == paus.embedding_bands == paus.band_names[:40]
    assert loaded.embedding_row("NB845", 1) == 79 and loaded.band_epoch_index("NB845", 1) == 84


def test_show_follows_lumos_survey(monkeypatch, capsys):
    monkeypatch.setenv("LUMOS_SURVEY", str(SDSS_SURVEY))
    assert main(["survey", "show"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["name"] == "sdss-gri" and str(SDSS_SURVEY) in captured.err
    monkeypatch.delenv("LUMOS_SURVEY")
    assert resolve_survey().name == "paus"
    assert resolve_survey(None, environ={"LUMOS_SURVEY": str(SDSS_SURVEY)}).name == "sdss-gri"


@pytest.mark.parametrize(("change", "match"), [
    ({"pixel_scale": "wide"}, r"pixel_scale='wide' must be a number"),
    ({"pixel_scale": -1}, r"pixel_scale=-1.0 must be > 0 arcsec/pixel"),
    ({"n_epochs": 1.5}, r"n_epochs=1.5 must be a number \(int\)"),
    ({"ccd_shape": [10]}, r"ccd_shape=\[10\] must be \[ny, nx\]"),
    ({"psf_fwhm_unit": "mm"}, r"psf_fwhm_unit='mm' must be"),
    ({"colour": 1}, r"unknown keys \['colour'\]"),
    ({"bands": [{"name": "g"}]}, r"bands\[0\] needs \"name\" and \"wavelength_nm\""),
    ({"bands": [{"name": "g", "wavelength_nm": "blue"}]}, r"bands\[0\]: wavelength_nm, zero_point and exptime must be numbers"),
    ({"bands": [{"name": "g", "wavelength_nm": 477, "width": 3}]}, r"bands\[0\] has unknown keys \['width'\]"),
    ({"bands": []}, r"the survey has no bands"),
    ({"header": {"seeing": "SEEING"}}, r"unknown header quantities \['seeing'\]"),
    ({"header": {"psf_fwhm": {"keyword": "S", "unit": "px"}}}, r"header.psf_fwhm must be a keyword string or"),
    ({"header": {"psf_fwhm": {}}}, r"header quantity 'psf_fwhm' \(PSF FWHM \(psf_fwhm_unit\)\) needs a keyword or a default"),
    ({"model_bands": ["g", "z"]}, r"model_bands \['g', 'z'\] must name distinct bands"),
    ({"header": {"gain": {"default": 1.0, "from_stars": True}}}, r"header.gain: from_stars is for psf_fwhm and psf_beta only"),
    ({"header": {"psf_fwhm": {"from_stars": "yes"}}}, r"header.psf_fwhm.from_stars must be true or false"),
    ({"header": {"gain": {"default": "lots"}}}, r"header.gain default 'lots' must be a number \(e- per pixel unit"),
])
def test_bad_survey_files_name_the_file_and_key(tmp_path, change, match):
    values = json.loads(SDSS_SURVEY.read_text())
    values.update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(values))
    with pytest.raises(BadInputError, match=match) as info:
        load_survey(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_missing_or_unparsable_file(tmp_path):
    with pytest.raises(InputFileError, match=r"absent.json: no such survey file; write one with `lumos survey init"):
        load_survey(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{name: ")
    with pytest.raises(InputFileError, match=r"broken.json: not a JSON survey file"):
        load_survey(tmp_path / "broken.json")


def test_init_flag_errors(tmp_path, capsys):
    base = ["survey", "init", "--out", str(tmp_path / "s.json"), "--pixel-scale", "0.4"]
    assert main(base + ["--bands", "g,r"]) == 2
    assert "--wavelengths: band g needs its central wavelength (nm)" in capsys.readouterr().err
    assert main(base + ["--bands", "g,r", "--wavelengths", "477"]) == 0  # one value for all bands is allowed
    assert main(base + ["--bands", "g,r", "--wavelengths", "1,2,3", "--force"]) == 2
    assert "3 values for 2 bands" in capsys.readouterr().err
    assert main(base + ["--bands", "NB455,NB465", "--ccd-shape", "20 by 30", "--force"]) == 2
    assert "--ccd-shape 20 by 30: write NYxNX" in capsys.readouterr().err
    assert main(base + ["--bands", "NB455", "--header", "psf_fwhm", "--force"]) == 2
    assert "quantity=KEYWORD[:default]" in capsys.readouterr().err


def test_use_survey_sets_the_default_of_read_exposure():
    sdss = load_survey(SDSS_SURVEY)
    assert current_survey().name == "paus"
    with use_survey(sdss) as chosen:
        assert chosen is sdss and current_survey() is sdss
    assert current_survey().name == "paus"


def test_survey_validates_in_code_too():
    with pytest.raises(BadInputError, match="mine.json: band names repeat"):
        Survey(name="x", bands=paus_survey().bands[:1] * 2, source="mine.json")


def test_init_psf_from_stars_round_trips(tmp_path):
    """``--psf-from-stars`` keeps a mapped keyword and measures where it is absent; without
    ``--header psf_fwhm=...`` the FWHM always comes from the stars."""
    base = ["survey", "init", "--bands", "g", "--wavelengths", "477", "--pixel-scale", "0.4", "--psf-from-stars"]
    assert main(base + ["--out", str(tmp_path / "a.json"), "--header", "psf_fwhm=SEEING", "--psf-beta-from-stars"]) == 0
    assert load_survey(tmp_path / "a.json").header["psf_fwhm"] == HeaderKey("SEEING", None, from_stars=True)
    assert load_survey(tmp_path / "a.json").header["psf_beta"] == HeaderKey(None, None, from_stars=True)
    assert main(base + ["--out", str(tmp_path / "b.json")]) == 0
    survey = load_survey(tmp_path / "b.json")
    assert survey.header["psf_fwhm"] == HeaderKey(None, None, from_stars=True)
    written = survey.to_dict()["header"]
    assert written["psf_fwhm"] == {"from_stars": True} and "from_stars" not in written["gain"]


def test_psf_prints_what_each_frames_stars_give(tmp_path, capsys):
    """``lumos survey psf``: one tab-separated line per frame (GalSim Moffat stars of 3 px), the FWHM
    in arcsec at the selected survey's pixel scale; a frame without stars fails by name."""
    import numpy as np
    from astropy.io import fits

    galsim = pytest.importorskip("galsim")
    rng = np.random.default_rng(4)
    image = galsim.ImageF(200, 200, scale=1.0)
    for _ in range(12):
        x, y = rng.uniform(15, 185, 2)
        stamp = galsim.Moffat(beta=3.5, fwhm=3.0).withFlux(5e4).drawImage(nx=31, ny=31, scale=1.0,
                                                                          offset=(x % 1 - 0.5, y % 1 - 0.5))
        stamp.setCenter(int(x) + 1, int(y) + 1)
        bounds = stamp.bounds & image.bounds
        image[bounds] += stamp[bounds]
    frame = tmp_path / "stars.fits"
    fits.PrimaryHDU((image.array + rng.normal(100.0, 5.0, (200, 200))).astype(np.float32)).writeto(frame)
    assert main(["survey", "psf", str(frame), "--survey", str(SDSS_SURVEY)]) == 0
    header, line = capsys.readouterr().out.strip().splitlines()
    assert header.split("\t") == ["frame", "fwhm_px", "fwhm_arcsec", "beta", "stars", "spread"]
    name, fwhm_px, fwhm_arcsec, beta, stars, _ = line.split("\t")
    assert name == str(frame) and float(fwhm_px) == pytest.approx(3.0, rel=0.01) and beta == "3.50"
    assert float(fwhm_arcsec) == pytest.approx(float(fwhm_px) * 0.396, rel=1e-3) and int(stars) >= 10
    blank = tmp_path / "blank.fits"
    fits.PrimaryHDU(rng.normal(100.0, 5.0, (200, 200)).astype(np.float32)).writeto(blank)
    assert main(["survey", "psf", str(blank)]) != 0
    assert f"{blank}: only 0 isolated unsaturated stars" in capsys.readouterr().err


def test_psf_fits_beta_as_the_survey_files_exposures_get_it():
    """``lumos survey psf`` reports the PSF ``lumos measure`` uses with the same survey file: beta fitted
    where the file's ``psf_beta`` is ``from_stars``, else the file's default, else 3.5."""
    from pathlib import Path

    from lumos_ops.cli.survey import psf_fit_beta

    reprojected = resolve_survey(str(Path(SDSS_SURVEY).with_name("sdss-gri-reprojected.json")))
    assert psf_fit_beta(reprojected, beta=None, fit_beta=False) is None  # fitted, as measure does
    assert psf_fit_beta(reprojected, beta=4.0, fit_beta=False) == 4.0  # --beta wins
    assert psf_fit_beta(resolve_survey(str(SDSS_SURVEY)), beta=None, fit_beta=False) == 3.5
    assert psf_fit_beta(paus_survey(), beta=None, fit_beta=True) is None
    fixed = HeaderKey(keyword="PSFBETA", default=2.5)
    assert psf_fit_beta(Survey(**{**paus_survey().__dict__, "header": {**paus_survey().header, "psf_beta": fixed}}),
                        beta=None, fit_beta=False) == 2.5
