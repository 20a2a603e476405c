"""Periodic adaptation: a candidate from the survey's own exposures, registered with its injection report, promoted."""

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.adapt import AdaptConfig
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.night import run_night
from lumos_ops.pipeline.retrain import RetrainConfig, recorded_floors, retrain_candidate, select_training_exposures
from lumos_ops.pipeline.storage import LocalObjectStore
from lumos_ops.survey import load_survey

from nightdata import make_catalog, write_catalog, write_night

pytestmark = pytest.mark.postgres
NIGHT = "2026-11-20"


def test_candidate_is_trained_registered_and_runs_nightly(engine, tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    catalog = make_catalog(12)
    write_catalog(store.put_bytes, catalog)
    write_night(store.put_bytes, NIGHT, n_exposures=3, n_ccds=1, catalog=catalog)  # 3 exposures, one band
    night = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    assert run_night(engine, store, night, night=NIGHT, dag_run_id="n1").n_done == 3
    until = dt.date(2026, 11, 21)
    assert len(select_training_exposures(engine, until=until, nights=2)) == 3
    assert select_training_exposures(engine, until=dt.date(2026, 11, 19), nights=30) == []

    adapt = AdaptConfig(n_stamps=300, epochs=1, batch_size=64, holdout=0.34, n_galaxies=10, n_place=2,
                        classical_methods=("aperture",), snr_range=(5.0, 100.0), min_clearance=4.0, progress=False)
    config = RetrainConfig(nights=2, adapt=adapt)
    result = retrain_candidate(engine, store, night, config, until=until, work_dir=tmp_path / "work")
    assert result.model_version.endswith("-ft20261121") and result.n_exposures == 3
    assert (result.n_train, result.n_heldout) == (2, 1)
    assert result.pairs.startswith("12 pairs")  # each source on both training exposures
    loaded = load_checkpoint(store.local_path(result.object_key), device="cpu")  # SHA-256 verified
    assert loaded.sha256 == result.sha256 and loaded.metadata["adapt"]["pairs"] == result.pairs
    assert "held-out injection" in loaded.metadata["shared_error"]["source"]  # the co-adds' shared-error term
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT method, kind, checksum, metadata, status, injection_report, object_key "
                                   "FROM lumos.model_versions WHERE model_version = :v"),
                           {"v": result.model_version}).one()
    assert (row.method, row.kind, row.checksum, row.status) == ("lumos", "lumos", result.sha256, "candidate")
    assert row.object_key == result.object_key and row.metadata["report_key"] == result.report_key
    # too few bright rows on these training exposures to measure a floor: none recorded, so a promotion
    # keeps the survey file's (the survey file written beside the model holds the survey's)
    assert row.metadata["error_floors"] == {}
    assert row.metadata["survey"] == "paus"  # the floors belong to that survey's images
    survey = load_survey(store.local_path(row.metadata["survey_key"]))  # the survey file with those floors
    assert (survey.flux_error_floor, survey.neighbour_error_floor) == (0.011, 0.025)
    assert row.metadata["survey_key"] == result.object_key.replace(".pt", ".survey.json")
    assert result.report_attached and row.injection_report["command"] == "lumos_retrain"
    methods = row.injection_report["populations"]["sersic"]["methods"]
    assert set(methods) == {"aperture", "lumos"} and row.injection_report["base"]["populations"]["sersic"]["lumos"]
    assert set(row.injection_report["exposure_keys"]["heldout"]) <= set(select_training_exposures(engine, until=until, nights=2))
    assert store.head(result.report_key).size > 1000
    # provenance names object keys and versions, not the worker's download cache or work folder
    assert row.metadata["base_model"] == "the shipped default"
    stored = json.dumps(row.injection_report)
    assert str(tmp_path / "cache") not in stored and str(tmp_path / "work") not in stored
    assert set(row.injection_report["adapt"]["train_exposures"]) <= set(select_training_exposures(engine, until=until,
                                                                                                   nights=2))

    # Promotion: the nightly pipeline runs the candidate from object storage under its version.
    promoted = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"), methods=("lumos",),
                           model_key=result.object_key, model_versions={"lumos": result.model_version})
    assert run_night(engine, store, promoted, night=NIGHT, dag_run_id="n2").n_done == 3
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT DISTINCT model_version FROM lumos.measurements WHERE method = 'lumos'")).scalars().all()
    assert versions == [result.model_version]
    with engine.connect() as conn:
        rho = conn.execute(sa.text("SELECT (extras ->> 'shared_rho')::double precision FROM lumos.measurements "
                                   "WHERE method = 'lumos' AND flux IS NOT NULL")).scalars().all()
    assert rho and all(r is not None and 0.0 <= r < 1.0 for r in rho)  # every row carries the candidate's term


def test_no_exposures_in_the_window_and_bad_settings(engine, tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    night = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(LumosValueError, match="no exposure measured between 2026-11-01 and 2026-11-30"):
        retrain_candidate(engine, store, night, RetrainConfig(nights=30), until=dt.date(2026, 11, 30), work_dir=tmp_path)
    with pytest.raises(LumosValueError, match="nights must be >= 1"):
        RetrainConfig(nights=0)
    with pytest.raises(LumosValueError, match="runs the checkpoint 'models/x.pt': give its version"):
        NightConfig(store_url="/tmp/s", methods=("lumos",), model_key="models/x.pt")


def test_only_measured_floors_are_recorded():
    """A floor adapt's stage 5 fell back to (NaN estimate: too few rows) is not recorded as measured."""
    record = {"measured": True, "flux": {"floor": 0.0333, "n": 227}, "neighbour": {"floor": None, "n": 4},
              "flux_error_floor": 0.0333, "neighbour_error_floor": 0.05, "survey_floors": {}}
    assert recorded_floors(record) == {"flux_error_floor": 0.0333}
    assert recorded_floors({**record, "neighbour": {"floor": 0.012}, "neighbour_error_floor": 0.012}) == {
        "flux_error_floor": 0.0333, "neighbour_error_floor": 0.012}
    assert recorded_floors({**record, "neighbour": None}) == {"flux_error_floor": 0.0333}  # no blended pairs
    assert recorded_floors({**record, "flux": {"floor": float("nan")}, "neighbour": None}) == {}
    assert recorded_floors({"measured": False, "flux_error_floor": 0.011, "neighbour_error_floor": 0.05}) == {}
    # the classical methods' own floors, those measured
    methods = {"optimal": {"floor": 0.021, "n": 200}, "aperture": {"floor": float("nan"), "n": 3}}
    assert recorded_floors({**record, "methods": methods}) == {"flux_error_floor": 0.0333,
                                                              "method_error_floors": {"optimal": 0.021}}
    assert recorded_floors({**record, "neighbour_methods": methods}) == {
        "flux_error_floor": 0.0333, "method_neighbour_error_floors": {"optimal": 0.021}}
