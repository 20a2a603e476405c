"""End-to-end tests of simulate_survey: layout, header contract, truth, artefacts, determinism."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from lumos_ops.constants import band_exptime
from lumos_ops.exceptions import LumosValueError
from lumos_ops.io.catalog import read_catalog, target_pixels
from lumos_ops.io.exposure import read_exposure
from lumos_ops.render import render_galaxies
from lumos_ops.sim import SurveyConfig, SurveyManifest, simulate_survey
from lumos_ops.sim.bands import band_zero_point
from lumos_ops.sim.survey import TRUTH_COLUMNS


def test_layout_and_manifest(small_survey: SurveyManifest, small_config: SurveyConfig) -> None:
    out = small_survey.out_dir
    assert (out / "catalog.parquet").is_file() and (out / "truth.parquet").is_file()
    # 2 bands in one tray x 2 epochs x 1 exposure = 2 exposures of 2 CCDs each.
    assert small_survey.n_exposures == 2
    assert len(small_survey.exposure_paths) == 4
    for path in small_survey.exposure_paths:
        rel = path.relative_to(out).as_posix()
        assert re.fullmatch(r"exposures/\d{4}-\d\d-\d\d/exp\d{7}_ccd\d\d\.fits", rel), rel
    loaded = SurveyManifest.load(out)
    assert loaded.exposure_paths == small_survey.exposure_paths
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == small_config.seed
    assert SurveyConfig.from_dict(manifest["config"]) == small_config
    assert manifest["counts"]["n_stars"] >= 1


def test_catalog_is_a_valid_external_catalogue(small_survey: SurveyManifest) -> None:
    catalog = read_catalog(small_survey.catalog_path)
    assert len(catalog) == 25
    for column in ("ref_id", "ra", "dec", "r50", "sersic_n", "q", "pa", "i_auto", "zspec", "flux_nJy_NB685"):
        assert column in catalog.columns
    assert catalog["i_auto"].between(17.5, 23.0).all()
    assert catalog["zspec"].between(0.0, 1.5).all()


def test_header_contract_and_wcs(small_survey: SurveyManifest) -> None:
    catalog = pd.read_parquet(small_survey.catalog_path)
    truth = pd.read_parquet(small_survey.truth_path)
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    for path in small_survey.exposure_paths:
        exposure = read_exposure(path)
        assert exposure.band in ("NB615", "NB685")
        assert exposure.exptime == band_exptime(exposure.band)
        assert 1.0 < exposure.gain < 3.0
        assert 0.7 <= exposure.psf_fwhm <= 1.45
        assert exposure.psf_beta is not None and 2.5 < exposure.psf_beta < 4.5
        assert exposure.zero_point is not None and abs(exposure.zero_point - band_zero_point(exposure.band)) < 0.3
        assert exposure.saturate is not None and exposure.saturate > 100
        assert exposure.mjd is not None and exposure.mjd > 57000
        assert exposure.wcs is not None
        assert f"exp{exposure.expnum:07d}_ccd{exposure.ccdnum:02d}" in path.name
        rows = truth[(truth.expnum == exposure.expnum) & (truth.ccd == exposure.ccdnum)]
        assert (rows.band == exposure.band).all() and (rows.epoch == exposure.epoch).all()
        assert len(rows) > 5
        x, y = target_pixels(catalog.set_index("ref_id").loc[rows.ref_id].reset_index(), exposure.wcs)
        np.testing.assert_allclose(x, rows.x, atol=1e-6)
        np.testing.assert_allclose(y, rows.y, atol=1e-6)
        # The flux in e-/s follows the image zero point: f_nJy = f * 10**(-0.4 (ZP - 31.4)).
        njy = catalog.set_index("ref_id").loc[rows.ref_id, f"flux_nJy_{exposure.band}"].to_numpy()
        np.testing.assert_allclose(rows.flux_true * 10 ** (-0.4 * (exposure.zero_point - 31.4)), njy, rtol=1e-9)


def test_galaxies_observed_several_times(small_survey: SurveyManifest) -> None:
    truth = pd.read_parquet(small_survey.truth_path)
    per_band = truth.groupby(["ref_id", "band"]).expnum.nunique()
    assert per_band.median() == 2  # one exposure per epoch, two epochs
    positions = truth.groupby("ref_id").x.agg(lambda v: v.max() - v.min())
    assert positions.median() > 1.0  # dithered pointings: different pixels each time


def test_truth_matches_noiseless_rendering(noiseless_survey: SurveyManifest) -> None:
    truth = pd.read_parquet(noiseless_survey.truth_path)
    catalog = pd.read_parquet(noiseless_survey.catalog_path).set_index("ref_id")
    half = 24
    checked = 0
    for path in noiseless_survey.exposure_paths:
        exposure = read_exposure(path)
        ny, nx = exposure.shape
        rows = truth[(truth.expnum == exposure.expnum) & (truth.ccd == exposure.ccdnum)]
        for row in rows.itertuples():
            others = rows[rows.ref_id != row.ref_id]
            isolated = ((np.abs(others.x - row.x) > 2 * half) | (np.abs(others.y - row.y) > 2 * half)).all()
            ix, iy = int(np.floor(row.x + 0.5)), int(np.floor(row.y + 0.5))
            if not isolated or not (half <= ix < nx - half and half <= iy < ny - half):
                continue
            gal = catalog.loc[row.ref_id]
            model = render_galaxies(
                r50=gal.r50, sersic_n=gal.sersic_n, q=gal.q, pa=gal.pa, psf_fwhm=exposure.psf_fwhm,
                psf_beta=exposure.psf_beta, dx=row.x - ix, dy=row.y - iy, flux=row.flux_true, size=2 * half,
            )
            box = exposure.data[iy - half : iy + half, ix - half : ix + half]
            np.testing.assert_allclose(box, model.images[0], rtol=1e-4, atol=1e-6 * row.flux_true)
            assert box.sum() == pytest.approx(row.flux_true * (1 - model.flux_outside[0]), rel=1e-4)
            checked += 1
    assert checked >= 3


def test_artefacts_present(small_survey: SurveyManifest) -> None:
    n_nan = n_saturated = 0
    medians = []
    for path in small_survey.exposure_paths:
        with fits.open(path) as hdul:
            adu = hdul[0].data
            saturate = hdul[0].header["SATURATE"]
        nan_columns = np.flatnonzero(np.isnan(adu).any(axis=0))
        n_nan += len(nan_columns)
        if len(nan_columns):
            assert np.isnan(adu[:, nan_columns[0]]).sum() > 10  # a column segment, not a pixel
        n_saturated += int((adu == np.float32(saturate)).sum())
        assert np.nanmax(adu) <= saturate
        medians.append(np.nanmedian(read_exposure(path).data))
    assert n_nan >= 1
    assert n_saturated >= 5
    assert 3.0 < np.median(medians) < 20.0  # sky of a few e-/s per pixel


def test_same_seed_same_bytes_other_seed_differs(tmp_path, small_config: SurveyConfig, small_survey: SurveyManifest) -> None:
    again = simulate_survey(small_config, tmp_path / "again", workers=2)  # the fixture ran in one process
    for a, b in zip(small_survey.exposure_paths, again.exposure_paths, strict=True):
        assert a.read_bytes() == b.read_bytes()
    for name in ("catalog.parquet", "truth.parquet"):
        assert (small_survey.out_dir / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    other = SurveyConfig.from_dict({**small_config.to_dict(), "seed": 8, "n_epochs": 1, "bands": ["NB685"]})
    different = simulate_survey(other, tmp_path / "other")
    # Re-using a directory leaves exactly the new survey's exposures.
    rerun = simulate_survey(other, tmp_path / "again")
    assert sorted((tmp_path / "again").glob("exposures/*/*.fits")) == sorted(rerun.exposure_paths)
    with fits.open(different.exposure_paths[0]) as h1, fits.open(small_survey.exposure_paths[1]) as h2:
        assert h1[0].header["FILTER"] == h2[0].header["FILTER"]
        assert not np.array_equal(h1[0].data, h2[0].data, equal_nan=True)


def test_workers_must_be_a_positive_integer(tmp_path, small_config: SurveyConfig) -> None:
    with pytest.raises(LumosValueError, match="workers must be an integer >= 1"):
        simulate_survey(small_config, tmp_path / "x", workers=0)
