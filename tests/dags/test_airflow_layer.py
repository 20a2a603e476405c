"""The thin Airflow layer: plugin, hooks, night resolution, and DAG wiring by settings."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lumos_ops.exceptions import LumosValueError

from harness import env, load_dag

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]


def test_night_resolution_and_plugin_macro():
    from lumos_ops.airflow.night import lumos_night, resolve_night
    from lumos_ops.airflow.plugin import LumosOpsPlugin

    run_at = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
    assert resolve_night(None, run_at) == "2026-11-20"
    assert resolve_night("2026-01-05", run_at) == "2026-01-05"
    with pytest.raises(LumosValueError):
        resolve_night("yesterday", run_at)
    assert LumosOpsPlugin.name == "lumos_ops" and lumos_night in LumosOpsPlugin.macros

    class Run:
        conf = {"night": "2026-02-03"}
        logical_date = run_at
        run_after = run_at

    assert lumos_night(Run()) == "2026-02-03"


_LOAD_PLUGINS = """
import json
from importlib import metadata

from airflow import plugins_manager

plugins = plugins_manager.get_plugin_info(attrs_to_dump=["source"])  # what `airflow plugins` prints
print("RESULT " + json.dumps({
    "plugins": [p["name"] for p in plugins], "sources": [str(p["source"]) for p in plugins],
    "errors": plugins_manager.get_import_errors(),
    "dists": [str(getattr(d, "_path", d)) for d in metadata.distributions() if d.metadata["Name"] == "lumos-ops"],
}))
"""


def test_plugin_manager_registers_lumos_ops_once():
    """A fresh process (as each Airflow component is) loads the plugin once: no "already registered"
    warning and no plugin import error, i.e. one copy of the lumos-ops metadata on ``sys.path``."""
    done = subprocess.run([sys.executable, "-c", _LOAD_PLUGINS], capture_output=True, text=True, cwd=REPO,
                          timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert len(result["dists"]) == 1, (
        f"lumos-ops metadata found {len(result['dists'])} times on sys.path: {result['dists']}; delete the "
        "stale copies (e.g. plugins/lumos_ops.egg-info) and reinstall with scripts/setup.sh"
    )
    assert result["plugins"].count("lumos_ops") == 1, result
    assert "lumos-ops==" in result["sources"][result["plugins"].index("lumos_ops")]  # from the entry point
    assert "already registered" not in output and result["errors"] == {}, (output[-2000:], result["errors"])


def test_hooks_build_clients_from_connections_without_network():
    from lumos_ops.airflow.hooks import LumosPostgresHook, LumosS3Hook

    conn = json.dumps({"conn_type": "postgres", "host": "db.example.org", "port": 5432, "login": "pipeline",
                       "password": "not-a-real-one", "schema": "lumos"})
    s3 = json.dumps({"conn_type": "aws", "login": "k", "password": "s",
                     "extra": {"endpoint_url": "http://minio:9000", "region_name": "us-east-1"}})
    with env(AIRFLOW_CONN_LUMOS_DB=conn, AIRFLOW_CONN_LUMOS_S3=s3):
        engine = LumosPostgresHook().get_lumos_engine()
        assert engine.url.drivername == "postgresql+psycopg2" and engine.url.host == "db.example.org"
        assert "not-a-real-one" not in repr(engine.url)
        engine.dispose()
        client = LumosS3Hook(max_attempts=4).get_conn()
        assert client.meta.endpoint_url == "http://minio:9000"
        assert client.meta.config.retries["total_max_attempts"] == 4


def test_only_lumos_inference_goes_to_the_gpu_queue_and_pool(airflow_db):
    """Classical methods stay on the CPU queue in the default pool; the ``lumos`` step (after every
    ``process`` task, whatever their outcome) is the only task behind the GPU pool."""
    with env(LUMOS_METHODS="aperture,lumos", LUMOS_MODEL_VERSIONS="lumos=lumos-test", LUMOS_GPU_QUEUE="cuda",
             LUMOS_GPU_POOL="gpus", LUMOS_GPU_INFERENCE="true", LUMOS_SCHEDULE="none"):
        dag, errors = load_dag()
    assert errors == {}
    process, lumos = dag.task_dict["process"], dag.task_dict["lumos"]
    assert (process.queue, process.pool) == ("default", "default_pool")
    assert (lumos.queue, lumos.pool, lumos.trigger_rule) == ("cuda", "gpus", "all_done")
    assert lumos.upstream_task_ids == {"plan", "process"}
    assert dag.task_dict["finish"].upstream_task_ids == {"plan", "process", "lumos"}
    assert dag.task_dict["plan"].queue == "default"
    assert type(dag.timetable).__name__ == "NullTimetable"


def test_lumos_on_the_cpu_is_never_behind_the_gpu_pool(airflow_db):
    """Without ``LUMOS_GPU_INFERENCE`` (the default) LUMOS runs on CPU workers in the default pool."""
    with env(LUMOS_METHODS="aperture,lumos", LUMOS_MODEL_VERSIONS="lumos=lumos-test", LUMOS_SCHEDULE="none"):
        dag, errors = load_dag()
    with env(LUMOS_METHODS="lumos", LUMOS_SCHEDULE="none"):
        lumos_only, _ = load_dag()
    assert errors == {}
    assert {(t.queue, t.pool) for t in dag.tasks} == {("default", "default_pool")}
    for parsed in (dag, lumos_only):  # one step measures every method: no second read and render per image
        assert set(parsed.task_dict) == {"check_schema", "plan", "process", "finish", "night_failures"}
    assert (lumos_only.task_dict["process"].queue, lumos_only.task_dict["process"].pool) == ("default", "default_pool")


def test_reprocess_dag_parses_below_the_nightly_priority(airflow_db):
    with env(LUMOS_METHODS="aperture,lumos", LUMOS_MAX_MAPPED_TASKS="64"):
        reprocess, errors = load_dag("lumos_reprocess")
        nightly, _ = load_dag("lumos_nightly")
    assert errors == {}
    assert set(reprocess.task_dict) == {"check_schema", "plan", "process", "finish", "incomplete"}
    assert set(reprocess.params) == {"first_night", "last_night", "methods", "model_versions", "model_key"}
    assert type(reprocess.timetable).__name__ == "NullTimetable"  # manual runs only
    weights = {d.dag_id: (d.task_dict["process"].priority_weight, d.task_dict["process"].weight_rule)
               for d in (reprocess, nightly)}
    assert weights == {"lumos_reprocess": (1, "absolute"), "lumos_nightly": (10, "absolute")}
    assert reprocess.task_dict["process"].queue == "default" and reprocess.task_dict["finish"].trigger_rule == "all_done"
    with env(LUMOS_METHODS="aperture,lumos", LUMOS_GPU_INFERENCE="true"):
        on_gpu, _ = load_dag("lumos_reprocess")
    assert (on_gpu.task_dict["process"].queue, on_gpu.task_dict["process"].pool) == ("gpu", "lumos_gpu")
