"""run_night without Airflow (pipeline/night.py): a bad exposure, a rerun, an empty night, the LUMOS method end to end."""

import json

import pytest
import sqlalchemy as sa

from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.night import run_night
from lumos_ops.pipeline.queries import list_queries, query_parameters, run_query

from nightdata import NIGHT, corrupt, lumos_night

pytestmark = pytest.mark.postgres


def test_run_night_without_airflow_handles_a_bad_exposure_and_reruns(engine, night_store, tmp_path):
    store, keys = night_store
    good = store.get_bytes(keys[1])
    store.put_bytes(keys[1], corrupt(good, "unknown_band"))
    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    report = run_night(engine, store, config, night=NIGHT, dag_run_id="cli-1")
    assert (report.status, report.n_done, report.n_failed, report.n_measurements) == ("partial", 1, 1, 8)
    assert "NB999" in report.failures[0][1]
    summary = json.loads(store.get_bytes(f"reports/{NIGHT}/summary.json"))
    assert summary["status"] == "partial" and set(summary["timings"]) >= {"download_s", "measure_s", "write_s"}
    for name in set(list_queries()) - {"photoz_trend", "reprocess_progress"}:  # every night query answers (the two others: their tests)
        params = {"ref_id": 1000, "limit": 3, "night": NIGHT, "max_i_auto": 30}
        frame = run_query(engine, name, {p: params[p] for p in query_parameters(name)})
        assert len(frame) > 0, name
    store.put_bytes(keys[1], good)
    report = run_night(engine, store, config, night=NIGHT, dag_run_id="cli-2")
    assert (report.status, report.n_done, report.n_measurements) == ("success", 2, 16)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.measurements")).scalar() == 16
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.coadds WHERE partial")).scalar() == 0


def test_empty_night_is_nothing_to_do(engine, night_store, tmp_path):
    store, _ = night_store
    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    report = run_night(engine, store, config, night="2026-01-01", dag_run_id="cli-e")
    assert report.status == "empty" and report.n_exposures == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM lumos.pipeline_runs")).scalar() == "empty"


def test_lumos_method_end_to_end_stores_mixtures_and_pdf_coadds(engine, tmp_path):
    from lumos_ops.pipeline.coadd import coadd_night
    from lumos_ops.pipeline.night import plan_night, process_exposure

    store, _, _, config = lumos_night(tmp_path, n_exposures=2)
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="cli-lumos")
    for task in plan.tasks:
        assert process_exposure(engine, store, config, task).n_measurements == 6
    summary = coadd_night(engine, night=NIGHT, run_id=plan.run_id)
    assert summary.pdf_coadds == 6
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.measurements WHERE cardinality(mix_alpha) = 5 "
                                    "AND model_version = 'lumos-default'")).scalar() == 12
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.coadds WHERE sigma68_njy > 0 AND n_used = 2 "
                                    "AND eta IS NOT NULL")).scalar() == 6
