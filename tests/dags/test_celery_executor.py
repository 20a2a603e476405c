"""``lumos_nightly`` on a real distributed executor, end to end.

Airflow's CeleryExecutor with a real Redis broker (``redis-server`` on a free loopback port, no
persistence) and a PostgreSQL metadata database and Celery result backend; the API server (with the
Task Execution API the workers' tasks report to), the scheduler, the DAG processor and two Celery
workers, one on the CPU queue and one on the GPU queue, each a separate process group. The
photometry database is the throwaway PostgreSQL of the DAG tests and the object store is moto's S3
server.

The deployment is ``docker/compose.yaml``: the executor, the queue and pool settings, the worker
commands (``celery worker --queues ... --concurrency ...``) and the GPU pool of ``airflow-init``
are read from that file, so the test runs what the compose file deploys, with the container
hostnames (``redis``, ``postgres``, ``airflow-apiserver``) replaced by loopback ports. Starting and
stopping the stack is ``lumos_ops.airflow.local_stack.CeleryStack`` (also used by
``benchmarks/bench_survey.py``).

``LUMOS_METHODS=aperture,lumos`` with the compose file's ``LUMOS_GPU_INFERENCE=true`` measures in
two mapped steps: ``process`` (aperture) on the CPU queue in the default pool, two at once on the
CPU worker, then ``lumos`` on the GPU queue behind the GPU pool; every other task goes to the CPU
queue. LUMOS runs on the CPU here: the "GPU" worker is a queue, the device is whatever torch finds.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from lumos_ops.airflow.local_stack import (
    CeleryStack,
    ServiceError,
    compose_deployment,
    postgres_conn,
    s3_conn,
    wait_for,
)
from lumos_ops.pipeline.database import make_engine, upgrade

from nightdata import make_catalog, write_catalog, write_night

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

DAG_ID = "lumos_nightly"
RUN_ID = "celery_end_to_end"
NIGHT = "2026-11-24"
N_SOURCES = 6
N_EXPOSURES, N_CCDS = 1, 2
METHODS = ("aperture", "lumos")
RUN_TIMEOUT_S = 300


# --------------------------------------------------------------------------------------------------
# The stack (lumos_ops.airflow.local_stack) and one DAG run
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def celery_run(postgres, s3_server):
    """Start the CeleryExecutor deployment, run ``lumos_nightly`` for one small night through it and
    yield what the tests inspect; every process group, server and temp dir goes at the end."""
    deployment = compose_deployment()
    compose_env = deployment["env"]
    cpu_queue, gpu_queue = compose_env["LUMOS_CPU_QUEUE"], compose_env["LUMOS_GPU_QUEUE"]
    assert set(deployment["workers"]) == {cpu_queue, gpu_queue}, deployment["workers"]
    root = Path(tempfile.mkdtemp(prefix="lumos-celery-"))
    started = time.monotonic()

    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        # photometry: a database on the DAG tests' server, images and catalogue in moto's S3
        photometry_url = postgres.create_database("celery_night")
        photometry = make_engine(photometry_url)
        stack.callback(photometry.dispose)
        upgrade(photometry)
        client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
        client.create_bucket(Bucket="celery")
        catalog = make_catalog(N_SOURCES)

        def put(key: str, data: bytes) -> None:
            client.put_object(Bucket="celery", Key=f"survey/{key}", Body=data)

        write_catalog(put, catalog)
        keys = write_night(put, NIGHT, n_exposures=N_EXPOSURES, n_ccds=N_CCDS, catalog=catalog)

        celery = stack.enter_context(CeleryStack(root, photometry_conn=postgres_conn(photometry_url), extra_env={
            "AIRFLOW_CONN_LUMOS_S3": s3_conn(s3_server),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LUMOS_STORE_URL": "s3://celery/survey",
            "LUMOS_METHODS": ",".join(METHODS),
            "LUMOS_CODE_VERSION": "lumos-ops test",
        }))
        assert celery.workers == {"worker-cpu": cpu_queue, "worker-gpu": gpu_queue}, celery.workers
        ready_s = time.monotonic() - started
        celery.trigger(DAG_ID, RUN_ID, {"night": NIGHT})
        triggered_s = time.monotonic() - started
        state = celery.wait_run(DAG_ID, RUN_ID, timeout_s=RUN_TIMEOUT_S)
        finished_s = time.monotonic() - started

        tis = celery.task_instances(DAG_ID, RUN_ID)
        ids = {ti["external_executor_id"] for ti in tis if ti["external_executor_id"]}
        # a Celery task reports its result after its task instance's state: wait for the last ones
        with contextlib.suppress(ServiceError):
            wait_for("the Celery results of the run", lambda: all(
                celery.celery_results().get(i) in ("SUCCESS", "FAILURE") for i in ids), timeout_s=60, interval_s=0.5)
        timings = {**celery.timings, "trigger_s": triggered_s - ready_s, "run_s": finished_s - triggered_s}
        print(f"CeleryExecutor stack: {timings}; task instances: {tis}")
        yield {
            "state": state, "tis": tis, "celery": celery.celery_results(), "keys": keys, "photometry": photometry,
            "s3": client, "procs": celery.procs, "cpu_queue": cpu_queue, "gpu_queue": gpu_queue,
            "gpu_pool": celery.pool_name,
            "worker_logs": {name: celery.procs.log(name).read_text(errors="replace")
                            for name in ("worker-cpu", "worker-gpu")},
            "task_logs": celery.home / "logs",
        }


def _failure_context(run: dict) -> str:
    """Task instances, the log of each task that did not succeed, and every service's log tail."""
    out = ["task instances:"]
    for ti in run["tis"]:
        out.append(f"  {ti['task_id']}[{ti['map_index']}] {ti['state']} queue={ti['queue']} pool={ti['pool']} "
                   f"celery_id={ti['external_executor_id']}")
    for ti in run["tis"]:
        if ti["state"] in ("success", "skipped"):
            continue
        pattern = f"dag_id={DAG_ID}/run_id={RUN_ID}/task_id={ti['task_id']}/" + (
            f"map_index={ti['map_index']}/" if ti["map_index"] >= 0 else "")
        for path in sorted(run["task_logs"].glob(pattern + "attempt=*.log")):
            out.append(f"----- task log {path.relative_to(run['task_logs'])} (last 30 lines) -----")
            out.extend(path.read_text(errors="replace").splitlines()[-30:])
    out.append(run["procs"].tails())
    return "\n".join(out)


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------

def test_nightly_run_succeeds_on_celery_workers(celery_run):
    run = celery_run
    assert run["state"] == "success", _failure_context(run)
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in run["tis"]}
    n_images = N_EXPOSURES * N_CCDS
    assert states == {("check_schema", -1): "success", ("plan", -1): "success", ("finish", -1): "success",
                      ("night_failures", -1): "skipped",
                      **{(step, i): "success" for i in range(n_images) for step in ("process", "lumos")}}, \
        _failure_context(run)

    engine = run["photometry"]
    assert _count(engine, "SELECT count(*) FROM lumos.exposures WHERE night = :n AND status = 'done'",
                  n=NIGHT) == n_images
    for method in METHODS:
        assert _count(engine, "SELECT count(*) FROM lumos.measurements WHERE method = :m",
                      m=method) == n_images * N_SOURCES, method
    assert _count(engine, "SELECT count(*) FROM lumos.measurements") == len(METHODS) * n_images * N_SOURCES
    assert _count(engine, "SELECT count(*) FROM lumos.pipeline_runs WHERE dag_run_id = :d AND status = 'success'",
                  d=RUN_ID) == 1
    summary = json.loads(run["s3"].get_object(Bucket="celery", Key=f"survey/reports/{NIGHT}/summary.json")["Body"].read())
    assert (summary["status"], summary["n_done"]) == ("success", n_images)


def test_each_task_ran_on_its_queue_by_the_worker_of_that_queue(celery_run):
    """``lumos`` went to the GPU queue and pool and was run by the GPU worker; the other tasks
    (``process`` with the classical methods among them) went to the CPU queue and default pool and
    were run by the CPU worker. Which worker ran a task instance: its Celery task id
    (``external_executor_id``) in that worker's log, and the result backend (PostgreSQL) holding
    that id as SUCCESS."""
    run = celery_run
    assert run["state"] == "success", _failure_context(run)
    worker_of_queue = {run["cpu_queue"]: "worker-cpu", run["gpu_queue"]: "worker-gpu"}
    assert run["cpu_queue"] != run["gpu_queue"]
    by_worker = {"worker-cpu": set(), "worker-gpu": set()}
    for ti in run["tis"]:
        expected_queue = run["gpu_queue"] if ti["task_id"] == "lumos" else run["cpu_queue"]
        assert ti["queue"] == expected_queue, ti
        assert ti["pool"] == (run["gpu_pool"] if ti["task_id"] == "lumos" else "default_pool"), ti
        celery_id = ti["external_executor_id"]
        assert celery_id, ti
        ran_by = [name for name, log in run["worker_logs"].items()
                  if re.search(rf"\[{re.escape(celery_id)}\] Executing workload in Celery", log)]
        assert ran_by == [worker_of_queue[expected_queue]], (ti, ran_by)
        assert run["celery"].get(celery_id) == "SUCCESS", (ti, run["celery"].get(celery_id))
        by_worker[ran_by[0]].add(ti["task_id"])
    assert by_worker == {"worker-cpu": {"check_schema", "plan", "process", "finish", "night_failures"},
                         "worker-gpu": {"lumos"}}


def test_every_worker_process_was_warmed_once(celery_run):
    """The compose file's Celery configuration warms each worker process when it starts (imports
    of the measuring code and the store's catalogue; the tasks forked from it inherit them)."""
    for name, log in celery_run["worker_logs"].items():
        assert re.search(r"lumos worker warm-up \(pid \d+\): imports_s=[^\n]*catalog_s=", log), name


def test_classical_tasks_ran_at_once_and_lumos_after_them(celery_run):
    """Nothing serialised the two ``process`` tasks behind the GPU pool: both ran in the default
    pool and both were queued to the CPU worker (concurrency 2) before either had ended (whether
    their few seconds of running then overlap depends on the load of the machine); every ``lumos``
    task started after both had ended, one at a time (pool of 1 slot)."""
    run = celery_run
    assert run["state"] == "success", _failure_context(run)
    spans = {step: sorted((ti["start_date"], ti["end_date"]) for ti in run["tis"] if ti["task_id"] == step)
             for step in ("process", "lumos")}
    process = [ti for ti in run["tis"] if ti["task_id"] == "process"]
    assert len(process) == N_EXPOSURES * N_CCDS == 2
    assert {ti["pool"] for ti in process} == {"default_pool"}
    assert max(ti["queued_dttm"] for ti in process) < min(ti["end_date"] for ti in process), process
    assert min(start for start, _ in spans["lumos"]) >= max(end for _, end in spans["process"])
    for (_, end), (start, _) in zip(spans["lumos"], spans["lumos"][1:]):
        assert start >= end, spans["lumos"]
