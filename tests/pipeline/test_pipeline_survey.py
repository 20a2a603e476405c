"""LUMOS_SURVEY selects the survey the nightly pipeline reads exposures with (task time only)."""

from __future__ import annotations

import bz2
import os
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from lumos_ops.exceptions import InputFileError, LumosValueError
from lumos_ops.pipeline.config import DagSettings, NightConfig, PipelineSettings
from lumos_ops.pipeline.night import run_night
from lumos_ops.pipeline.storage import LocalObjectStore

from nightdata import write_catalog

REPO = Path(__file__).resolve().parents[2]
SDSS_SURVEY = REPO / "examples" / "surveys" / "sdss-gri.json"
SDSS_G = Path(os.environ.get("LUMOS_REALDATA", REPO.parent / "shared" / "realdata")) / "sdss_g.fits.bz2"
NIGHT = "2000-09-27"


def test_lumos_survey_selects_the_survey_of_the_task_settings(tmp_path):
    env = {"LUMOS_STORE_URL": str(tmp_path), "LUMOS_SURVEY": str(SDSS_SURVEY)}
    settings = PipelineSettings.from_env(env)
    assert settings.night.survey_file == str(SDSS_SURVEY)
    assert settings.night.survey.name == "sdss-gri" and settings.night.survey.band_names == ("g", "r", "i")
    assert NightConfig.from_dict(settings.night.to_dict()).survey.source == str(SDSS_SURVEY)
    assert PipelineSettings.from_env({"LUMOS_STORE_URL": str(tmp_path)}).night.survey.name == "paus"


def test_error_floors_of_the_night_replace_the_survey_files(tmp_path):
    """A promoted model's measured floors (NightConfig.error_floors) override the survey file's for
    the exposures the night reads, survive the run's recorded settings, and are checked."""
    plain = NightConfig(store_url=str(tmp_path), survey_file=str(SDSS_SURVEY))
    floors = {"flux_error_floor": 0.033, "neighbour_error_floor": 0.0}
    night = NightConfig(store_url=str(tmp_path), survey_file=str(SDSS_SURVEY), error_floors=floors)
    survey = night.survey
    assert (survey.flux_error_floor, survey.neighbour_error_floor) == (0.033, 0.0)
    assert survey.name == "sdss-gri" and survey.band_names == plain.survey.band_names
    assert (plain.survey.flux_error_floor, plain.survey.neighbour_error_floor) == (0.011, 0.025)
    only_flux = NightConfig(store_url=str(tmp_path), error_floors={"flux_error_floor": 0.02}).survey
    assert (only_flux.flux_error_floor, only_flux.neighbour_error_floor) == (0.02, 0.025)
    assert NightConfig.from_dict(night.to_dict()).survey.flux_error_floor == 0.033
    assert NightConfig.from_dict(plain.to_dict()).error_floors is None
    with pytest.raises(LumosValueError, match=r"error_floors: unknown \['floor'\]"):
        NightConfig(store_url=str(tmp_path), error_floors={"floor": 0.01})
    for bad in (-0.01, 1.0, float("nan"), "x"):
        with pytest.raises(LumosValueError, match=r"flux_error_floor=.* must be a fraction in \[0, 1\)"):
            NightConfig(store_url=str(tmp_path), error_floors={"flux_error_floor": bad})
    # the classical methods' own floors replace the file's too, and round-trip through the recorded settings
    own = NightConfig(store_url=str(tmp_path), error_floors={"flux_error_floor": 0.003,
                                                            "method_error_floors": {"optimal": 0.02}})
    assert own.survey.error_floor_for("optimal") == 0.02 and own.survey.error_floor_for("lumos") == 0.003
    assert NightConfig.from_dict(own.to_dict()).survey.method_error_floors == {"optimal": 0.02}
    with pytest.raises(LumosValueError, match=r"method_error_floors\['optimal'\]=2 must be a fraction"):
        NightConfig(store_url=str(tmp_path), error_floors={"method_error_floors": {"optimal": 2}})
    near = NightConfig(store_url=str(tmp_path), error_floors={"method_neighbour_error_floors": {"optimal": 0.03}})
    assert near.survey.neighbour_error_floor_for("optimal") == 0.03 and near.survey.neighbour_error_floor_for("lumos") == 0.025
    assert NightConfig.from_dict(near.to_dict()).survey.method_neighbour_error_floors == {"optimal": 0.03}
    with pytest.raises(LumosValueError, match=r"method_neighbour_error_floors=0.03 must map method names"):
        NightConfig(store_url=str(tmp_path), error_floors={"method_neighbour_error_floors": 0.03})


def test_a_bad_survey_fails_the_task_settings_not_the_dag_parse(tmp_path):
    missing = tmp_path / "nope.json"
    env = {"LUMOS_STORE_URL": str(tmp_path), "LUMOS_SURVEY": str(missing)}
    assert DagSettings.from_env(env).db_conn_id == "lumos_db"
    with pytest.raises(InputFileError, match=rf"^LUMOS_SURVEY: {missing}: no such survey file"):
        PipelineSettings.from_env(env)
    (tmp_path / "bad.json").write_text('{"name": "x", "bands": [{"name": "g", "wavelength_nm": 477}], "pixel_scale": 0}')
    with pytest.raises(Exception, match=r"LUMOS_SURVEY: .*bad.json: pixel_scale=0.0 must be > 0"):
        PipelineSettings.from_env({**env, "LUMOS_SURVEY": str(tmp_path / "bad.json")})


@pytest.mark.postgres
def test_night_of_real_sdss_frames_runs_with_its_survey_file(engine, tmp_path):
    if not SDSS_G.is_file():
        pytest.skip(f"real data {SDSS_G} not available")
    store = LocalObjectStore(tmp_path / "store")
    key = f"exposures/{NIGHT}/exp0001737_ccd05.fits"  # CCDNUM is the survey's ccdnum: CAMCOL = 5
    store.put_bytes(key, bz2.decompress(SDSS_G.read_bytes()))
    positions = [(626.1, 270.9), (293.2, 442.1), (552.0, 141.4), (409.7, 286.3), (320.5, 457.0)]  # bright sources
    catalog = pd.DataFrame({"ref_id": range(1, 6), "x": [p[0] for p in positions], "y": [p[1] for p in positions],
                            "r50": 0.4, "sersic_n": 1.0, "q": 0.9, "pa": 0.0, "i_auto": 17.0})
    write_catalog(store.put_bytes, catalog)
    paus = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    report = run_night(engine, store, paus, night=NIGHT, dag_run_id="paus")
    assert report.n_failed == 1 and "PSFFWHM" in report.failures[0][1] and "survey paus" in report.failures[0][1]
    sdss = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"), survey_file=str(SDSS_SURVEY))
    report = run_night(engine, store, sdss, night=NIGHT, dag_run_id="sdss")
    assert (report.status, report.n_done, report.n_measurements) == ("success", 1, 5)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT band, flux FROM lumos.measurements")).all()
    assert {r.band for r in rows} == {"g"} and all(r.flux > 0 for r in rows)
