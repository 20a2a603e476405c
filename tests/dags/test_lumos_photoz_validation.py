"""``lumos_photoz_validation`` run through Airflow against the throwaway PostgreSQL and moto's S3."""

from __future__ import annotations

import json

import boto3
import pytest
import sqlalchemy as sa
from harness import env, load_dag, postgres_conn, run_dag, s3_conn, task_states
from nightdata import load_sed_coadds

from lumos_ops.pipeline.database import make_engine, upgrade

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


def test_weekly_check_writes_rows_and_reports(airflow_db, postgres, s3_server):
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
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT method, dag_run_id, n_fitted, sigma68, report_key FROM lumos.photoz_checks "
                                    "ORDER BY method")).all()
    engine.dispose()
    assert [(r.method, r.dag_run_id, r.n_fitted) for r in rows] == [("aperture", run.run_id, 25), ("lumos", run.run_id, 25)]
    assert rows[1].sigma68 < 0.005
    report = json.loads(client.get_object(Bucket="photoz", Key=f"paus/{rows[1].report_key}")["Body"].read())
    assert report["method"] == "lumos" and report["n_fitted"] == 25
