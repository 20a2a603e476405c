"""``lumos_photoz_validation`` run through Airflow against the throwaway PostgreSQL and moto's S3."""

from __future__ import annotations

import json

import boto3
import pytest
import sqlalchemy as sa

from lumos_ops.pipeline.database import make_engine, upgrade

from harness import env, load_dag, postgres_conn, run_dag, s3_conn, task_states
from nightdata import SED_BANDS, load_sed_coadds

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:Warning"),
]


def test_dag_parses_with_its_weekly_schedule(airflow_db):
    dag, errors = load_dag("lumos_photoz_validation")
    assert errors == {}
    assert set(dag.task_dict) == {"check_schema", "photoz"}
    assert dag.task_dict["photoz"].upstream_task_ids == {"check_schema"}


def _photoz_state(run_id: str) -> str:
    """State of the ``photoz`` task of a ``lumos_photoz_validation`` run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter(TaskInstance.dag_id == "lumos_photoz_validation",
                                                TaskInstance.run_id == run_id, TaskInstance.task_id == "photoz").one()
        return str(getattr(ti.state, "value", ti.state))


def _run_check(postgres, s3_server, database: str, bucket: str, prepare=None):
    """Load simulated co-adds into a new database (``prepare(engine)`` may then remove some), run the
    DAG once against it and moto's S3; return the run and the engine."""
    url = postgres.create_database(database)
    engine = make_engine(url)
    upgrade(engine)
    load_sed_coadds(engine, n=30)
    if prepare is not None:
        prepare(engine)
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    with env(AIRFLOW_CONN_LUMOS_DB=postgres_conn(url), AIRFLOW_CONN_LUMOS_S3=s3_conn(s3_server),
             LUMOS_STORE_URL=f"s3://{bucket}/paus"):
        dag, _ = load_dag("lumos_photoz_validation")
        run = run_dag(dag)
    return run, engine


def _photoz_rows(engine) -> int:
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM lumos.photoz_checks")).scalar()
    engine.dispose()
    return n


def test_weekly_check_writes_rows_and_reports(airflow_db, postgres, s3_server, capsys):
    url = postgres.create_database("photoz")
    engine = make_engine(url)
    upgrade(engine)
    load_sed_coadds(engine, n=30)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket="photoz")
    with env(AIRFLOW_CONN_LUMOS_DB=postgres_conn(url), AIRFLOW_CONN_LUMOS_S3=s3_conn(s3_server),
             LUMOS_STORE_URL="s3://photoz/paus"):
        dag, _ = load_dag("lumos_photoz_validation")
        run = run_dag(dag)
    states = task_states(run.run_id)
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), states
    assert _photoz_state(run.run_id) == "success"
    out = capsys.readouterr().out
    for method in ("aperture", "lumos"):  # every metric says what it was computed on
        assert f"{method}: sigma68 " in out and "computed on 25 sources (20 bands) of 25" in out
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT method, dag_run_id, n_fitted, sigma68, report_key FROM lumos.photoz_checks "
                                    "ORDER BY method")).all()
    engine.dispose()
    assert [(r.method, r.dag_run_id, r.n_fitted) for r in rows] == [("aperture", run.run_id, 25), ("lumos", run.run_id, 25)]
    assert rows[1].sigma68 < 0.005
    report = json.loads(client.get_object(Bucket="photoz", Key=f"paus/{rows[1].report_key}")["Body"].read())
    assert report["method"] == "lumos" and report["n_fitted"] == 25


def test_two_band_night_skips_the_check_with_the_reason(airflow_db, postgres, s3_server, capsys):
    """Co-adds in two bands only: ``photoz`` is skipped, saying why, and records nothing."""
    def two_bands(engine):
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM lumos.coadds WHERE band NOT IN (:a, :b)"),
                         {"a": SED_BANDS[0], "b": SED_BANDS[1]})

    run, engine = _run_check(postgres, s3_server, "photoz_two_bands", "photoz-skip", two_bands)
    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    assert _photoz_state(run.run_id) == "skipped"
    assert _photoz_rows(engine) == 0
    out = capsys.readouterr().out
    assert "lumos: not checked (too_few_bands)" in out and "n_sources=25, n_bands=2, n_fitted=0" in out
    assert "photo-z check skipped: aperture:" in out


def test_no_fitted_source_fails_the_check_with_the_reason(airflow_db, postgres, s3_server, capsys):
    """Co-adds in every band but two per source: ``photoz`` fails, naming the counts, and records nothing."""
    def two_per_source(engine):
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM lumos.coadds WHERE (ref_id + array_position(CAST(:bands AS text[]), band)) "
                                 "% 20 NOT IN (0, 1)"), {"bands": list(SED_BANDS)})

    run, engine = _run_check(postgres, s3_server, "photoz_none_fitted", "photoz-fail", two_per_source)
    assert str(run.state) in ("failed", "DagRunState.FAILED")
    assert _photoz_state(run.run_id) == "failed"
    assert _photoz_rows(engine) == 0
    out = capsys.readouterr().out
    assert "photo-z check failed: aperture: 0 of 25 sources" in out and "n_sources=25, n_bands=20, n_fitted=0" in out
