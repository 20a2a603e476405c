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


def test_an_exposure_gone_from_the_store_is_named_and_its_rows_kept(engine, night_store, tmp_path, caplog):
    """A file deleted from the store after its night was measured: the rerun measures the others and
    says which one it no longer finds; its rows stay."""
    store, keys = night_store
    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    assert run_night(engine, store, config, night=NIGHT, dag_run_id="gone-1").status == "success"
    (store.root / keys[1]).unlink()
    with caplog.at_level("WARNING", logger="lumos_ops.pipeline.night"):
        report = run_night(engine, store, config, night=NIGHT, dag_run_id="gone-2")
    assert report.n_done == 2 and f"1 exposure(s) measured before are no longer in file://{store.root} ({keys[1]})" in caplog.text
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.measurements")).scalar() == 16


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


def test_a_run_stopped_by_a_bad_catalogue_is_closed_and_names_the_stored_object(engine, night_store, tmp_path):
    from lumos_ops.exceptions import CatalogError

    from nightdata import make_catalog, write_catalog

    store, _ = night_store
    write_catalog(store.put_bytes, make_catalog(8).assign(q=[0.5] * 4 + [1.5] + [0.5] * 3))
    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(CatalogError, match=rf"^{store.object_url('catalog.parquet')}: row 5: q=1.5 outside"):
        run_night(engine, store, config, night=NIGHT, dag_run_id="cli-bad-catalogue")
    with engine.connect() as conn:
        status, finished = conn.execute(sa.text("SELECT status, finished_at FROM lumos.pipeline_runs")).one()
    assert status == "failed" and finished is not None


def test_a_store_without_the_night_keeps_what_the_database_holds(engine, night_store, tmp_path, caplog):
    import logging

    from lumos_ops.exceptions import StorageError
    from lumos_ops.pipeline.night import open_night_store
    from lumos_ops.pipeline.storage import LocalObjectStore

    store, _ = night_store
    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    assert run_night(engine, store, config, night=NIGHT, dag_run_id="cli-1").status == "success"
    summary = store.get_bytes(f"reports/{NIGHT}/summary.json")
    elsewhere = LocalObjectStore(tmp_path / "emptied")
    with caplog.at_level(logging.WARNING, logger="lumos_ops.pipeline.report"):
        report = run_night(engine, elsewhere, config, night=NIGHT, dag_run_id="cli-2")
    assert report.status == "empty" and report.n_done == 2
    assert "found none of the night's exposures" in caplog.text and "the database holds 2" in caplog.text
    assert not elsewhere.list("reports/")  # nothing reported into the wrong store
    assert store.get_bytes(f"reports/{NIGHT}/summary.json") == summary
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.measurements")).scalar() == 16
        assert conn.execute(sa.text("SELECT status FROM lumos.pipeline_runs ORDER BY run_id")).scalars().all() == [
            "success", "empty"]
    with pytest.raises(StorageError, match="store directory .*typo does not exist"):
        open_night_store(NightConfig(store_url=str(tmp_path / "typo")))


def _lost() -> sa.exc.OperationalError:
    import psycopg2

    return sa.exc.OperationalError("INSERT", {}, psycopg2.OperationalError("server closed the connection unexpectedly"))


def test_a_database_lost_mid_night_stops_the_run_with_one_message(engine, night_store, tmp_path, monkeypatch):
    import psycopg2

    import lumos_ops.pipeline.night
    from lumos_ops.exceptions import DatabaseError

    store, keys = night_store
    calls = []

    def measurer(exposure, catalog, **options):
        calls.append(exposure)
        raise _lost()

    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DatabaseError, match=r"database was lost while measuring .*server closed the connection "
                                            r"unexpectedly\); 2 of 2 exposures were not written"):
        run_night(engine, store, config, night=NIGHT, dag_run_id="cli-lost", measurer=measurer)
    assert len(calls) == 1  # no exposure after it was attempted
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM lumos.pipeline_runs")).scalar() == "failed"

    def write(*args, **kwargs):  # lost during the write, which reports it as its own DatabaseError
        calls.append("write")
        try:
            raise _lost()
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"writing failed and was rolled back: {exc.orig}") from None

    monkeypatch.setattr(lumos_ops.pipeline.night, "write_measurements", write)
    monkeypatch.setattr(lumos_ops.pipeline.night, "_record_failure", lambda *args, **kwargs: None)
    with pytest.raises(DatabaseError, match=r"database was lost .*; 2 of 2 exposures were not written"):
        run_night(engine, store, config, night=NIGHT, dag_run_id="cli-lost-write")
    assert calls.count("write") == 1
    # a statement timeout is an OperationalError too, but not a lost database: the night goes on
    canceled = sa.exc.OperationalError("SELECT", {}, psycopg2.errors.QueryCanceled("canceling statement"))

    def timeout(*args, **kwargs):
        calls.append("timeout")
        raise canceled

    monkeypatch.setattr(lumos_ops.pipeline.night, "write_measurements", timeout)
    report = run_night(engine, store, config, night=NIGHT, dag_run_id="cli-timeout")
    assert calls.count("timeout") == 2 and report.n_failed == 2


def test_a_catalogue_that_lost_sources_is_reported(engine, night_store, tmp_path, caplog):
    import logging

    from nightdata import make_catalog, write_catalog

    store, _ = night_store
    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    run_night(engine, store, config, night=NIGHT, dag_run_id="cli-1")
    write_catalog(store.put_bytes, make_catalog(8).iloc[:5])
    with caplog.at_level(logging.WARNING, logger="lumos_ops.pipeline.night"):
        run_night(engine, store, config, night=NIGHT, dag_run_id="cli-2")
    assert "lacks 3 source(s) measured before on night" in caplog.text and "ref_id 1005, 1006, 1007" in caplog.text


def test_recover_closes_runs_left_open(engine, db_url, capsys):
    from lumos_ops.cli import main
    from lumos_ops.pipeline.writer import close_stale_runs, start_run

    run_id = start_run(engine, dag_id="d", dag_run_id="r", night=NIGHT, code_version="x", settings={})
    assert close_stale_runs(engine, older_than_s=3600.0) == []  # too recent
    assert close_stale_runs(engine, older_than_s=0.0, night="2020-01-01") == []  # another night
    assert main(["night", "recover", "--older-than", "1", "--db-url", db_url]) == 0  # exposures only
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM lumos.pipeline_runs")).scalar() == "running"
    assert main(["night", "recover", "--older-than", "1", "--runs-older-than", "1e-9", "--db-url", db_url]) == 0
    assert f"1 run(s) left running closed as failed: {run_id}" in capsys.readouterr().out
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM lumos.pipeline_runs")).scalar() == "failed"


def test_the_night_summary_counts_the_rows_stored_after_a_rerun_with_fewer_methods(engine, night_store, tmp_path):
    store, _ = night_store
    both = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"), methods=("aperture", "optimal"))
    run_night(engine, store, both, night=NIGHT, dag_run_id="cli-1")
    one = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"), methods=("aperture",))
    run_night(engine, store, one, night=NIGHT, dag_run_id="cli-2")  # the optimal rows stay
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM lumos.measurements")).scalar()
        summary = conn.execute(sa.text("SELECT n_measurements FROM lumos.night_summary")).scalar()
    assert stored == summary == 32
