"""``lumos_retrain`` run through Airflow: a candidate model from the exposures of a measured night."""

from __future__ import annotations

import boto3
import pytest
import sqlalchemy as sa

from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.database import make_engine, upgrade
from lumos_ops.pipeline.night import run_night
from lumos_ops.pipeline.storage import open_store

from harness import env, load_dag, postgres_conn, run_dag, s3_conn, task_states
from nightdata import make_catalog, write_catalog, write_night

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:Warning"),
]


def test_dag_parses_and_trains_on_the_gpu_queue(airflow_db):
    dag, errors = load_dag("lumos_retrain")
    assert errors == {}
    assert set(dag.task_dict) == {"check_schema", "retrain"}
    assert (dag.task_dict["retrain"].queue, dag.task_dict["retrain"].pool) == ("gpu", "lumos_gpu")
    assert dag.params["nights"] == 30 and dag.params["holdout"] == 0.25 and dag.params["last_layer"] is False
    assert dag.params["psf_profile"] == "stars" and dag.params["training_psf"] == "stars"
    assert dag.params["shared_error_populations"] == ["sersic"] and dag.params["balanced_weights"] is True


@pytest.mark.slow  # 21 s on 2 busy cores (--durations)
def test_monthly_run_registers_a_candidate(airflow_db, postgres, s3_server, tmp_path):
    url = postgres.create_database("retrain")
    engine = make_engine(url)
    upgrade(engine)
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket="retrain")
    night = NightConfig(store_url="s3://retrain/paus", endpoint_url=s3_server, region="us-east-1",
                        cache_dir=str(tmp_path / "cache"))
    store = open_store(night.store_url, endpoint_url=s3_server, region="us-east-1")
    catalog = make_catalog(10)
    write_catalog(store.put_bytes, catalog)
    write_night(store.put_bytes, "2026-11-20", n_exposures=3, n_ccds=1, catalog=catalog)
    with env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing"):
        assert run_night(engine, store, night, night="2026-11-20", dag_run_id="cli").n_done == 3
    with env(AIRFLOW_CONN_LUMOS_DB=postgres_conn(url), AIRFLOW_CONN_LUMOS_S3=s3_conn(s3_server),
             LUMOS_STORE_URL="s3://retrain/paus", LUMOS_CACHE_DIR=str(tmp_path / "cache")):
        dag, _ = load_dag("lumos_retrain")
        run = run_dag(dag, conf={"until": "2026-11-20", "nights": 1, "epochs": 1, "n_stamps": 200, "holdout": 0.34,
                                 "n_galaxies": 8})
    states = task_states(run.run_id)
    assert str(run.state) in ("success", "DagRunState.SUCCESS"), states
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT model_version, metadata, status, injection_report, object_key "
                                   "FROM lumos.model_versions "
                                   "WHERE metadata->>'status' = 'candidate'")).one()
    engine.dispose()
    assert row.model_version.endswith("-ft20261120") and row.status == "candidate"
    assert row.metadata["pairs"].startswith("10 pairs")  # each source on the two training exposures
    assert len(row.metadata["train_exposures"]) == 2 and len(row.metadata["heldout_exposures"]) == 1
    assert row.injection_report["base"]["populations"]["sersic"]["lumos"]["n"] > 0
    assert store.head(row.object_key).size > 10_000 and store.head(row.metadata["report_key"]).size > 1000
