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
hostnames (``redis``, ``postgres``, ``airflow-apiserver``) replaced by loopback ports.

``LUMOS_METHODS=aperture,lumos`` sends the mapped ``process`` tasks to the GPU queue and pool
(``SETTINGS.night.needs_gpu``); every other task goes to the CPU queue. LUMOS runs on the CPU
here: the "GPU" worker is a queue, the device is whatever torch finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
import yaml
from harness import postgres_conn, s3_conn
from nightdata import make_catalog, write_catalog, write_night

from lumos_ops.pipeline.database import make_engine, upgrade
from lumos_ops.pipeline.local_postgres import LocalPostgres, free_port

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.yaml"
DAG_ID = "lumos_nightly"
RUN_ID = "celery_end_to_end"
NIGHT = "2026-11-24"
N_SOURCES = 6
N_EXPOSURES, N_CCDS = 1, 2
METHODS = ("aperture", "lumos")
RUN_TIMEOUT_S = 300


# --------------------------------------------------------------------------------------------------
# What docker/compose.yaml deploys
# --------------------------------------------------------------------------------------------------

def compose_deployment() -> dict:
    """Executor settings, Celery worker commands and GPU pool of ``docker/compose.yaml``."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    env = {k: str(v) for k, v in services["airflow-scheduler"]["environment"].items()}
    workers = {}
    for service in services.values():
        command = service.get("command")
        argv = shlex.split(command) if isinstance(command, str) else []
        if argv[:2] == ["celery", "worker"]:
            queues = argv[argv.index("--queues") + 1]
            workers[queues] = argv
    pool = re.search(r"airflow pools set (\S+) (\d+) ", services["airflow-init"]["command"][0])
    return {"env": env, "workers": workers, "gpu_pool": (pool.group(1), pool.group(2))}


# --------------------------------------------------------------------------------------------------
# Processes: each in its own session (process group), stopped group-wise
# --------------------------------------------------------------------------------------------------

def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Processes:
    """Long-running services started as process-group leaders, with one log file each."""

    def __init__(self, log_dir: Path, env: dict[str, str]):
        self.log_dir, self.env = log_dir, env
        self.procs: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, argv: list[str], *, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.log(name), "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**self.env, **(extra_env or {})}, cwd=self.log_dir,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def assert_running(self) -> None:
        dead = {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}
        if dead:
            raise AssertionError(f"services exited: {dead}\n{self.tails()}")

    def tails(self, lines: int = 25) -> str:
        """The end of every service's log (without the API server's access lines)."""
        out = []
        for name in self.procs:
            text = self.log(name).read_text(errors="replace").splitlines() if self.log(name).exists() else []
            text = [line for line in text if "[http.access]" not in line]
            out.append(f"----- {name} (last {lines} lines of {self.log(name)}) -----")
            out.extend(text[-lines:])
        return "\n".join(out)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every group (Celery's warm shutdown, Airflow's graceful exits), then SIGKILL
        whatever is left, children of leaders that already exited included."""
        procs = list(self.procs.values())[::-1]
        for proc in procs:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in procs:
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def wait_for(what: str, check, *, timeout_s: float, procs: Processes, interval_s: float = 1.0):
    """Poll ``check()`` until it returns something truthy; fail with every service's log tail."""
    deadline = time.monotonic() + timeout_s
    while True:
        procs.assert_running()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{procs.tails()}")
        time.sleep(interval_s)


def airflow_cli(env: dict[str, str], *commands: list[str], timeout_s: float = 300) -> None:
    """Run ``airflow`` CLI commands at the same time (each takes seconds to import Airflow); all must succeed."""
    running = [(args, subprocess.Popen([sys.executable, "-m", "airflow", *args], env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, cwd=env["AIRFLOW_HOME"]))
               for args in commands]
    failed = []
    for args, proc in running:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        if proc.returncode != 0:
            failed.append(f"airflow {shlex.join(args)}: exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}")
    assert not failed, "\n".join(failed)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# The stack and one DAG run
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
    home = root / "airflow"
    (home / "logs").mkdir(parents=True)
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

        # Airflow's metadata database (also Celery's result backend): a server of its own
        meta_pg = LocalPostgres.start(database="airflow")
        stack.callback(meta_pg.stop)
        meta = sa.create_engine(meta_pg.url, poolclass=sa.pool.NullPool)
        stack.callback(meta.dispose)
        redis_port, api_port = free_port(), free_port()
        broker = f"redis://127.0.0.1:{redis_port}/0"
        execution_api = f"http://127.0.0.1:{api_port}/execution/"
        assert compose_env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert compose_env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
        assert compose_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith(":8080/execution/")

        from cryptography.fernet import Fernet

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMOS_"))}
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": compose_env["AIRFLOW__CORE__EXECUTOR"],
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": compose_env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": execution_api,
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),  # per run, never stored
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_pg.url,
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta_pg.url.replace("+psycopg2", ""),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_LUMOS_DB": postgres_conn(photometry_url),
            "AIRFLOW_CONN_LUMOS_S3": s3_conn(s3_server),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LUMOS_STORE_URL": "s3://celery/survey",
            "LUMOS_METHODS": ",".join(METHODS),
            "LUMOS_CPU_QUEUE": cpu_queue,
            "LUMOS_GPU_QUEUE": gpu_queue,
            "LUMOS_GPU_POOL": compose_env["LUMOS_GPU_POOL"],
            "LUMOS_SCHEDULE": "none",
            "LUMOS_PHOTOZ_SCHEDULE": "none",
            "LUMOS_RETRAIN_SCHEDULE": "none",
            "LUMOS_TASK_RETRIES": "0",
            "LUMOS_CACHE_DIR": str(root / "cache"),
            "LUMOS_CODE_VERSION": "lumos-ops test",
        })

        procs = Processes(root, env)
        stack.callback(procs.stop)
        procs.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                              "--appendonly", "no", "--dir", str(root), "--protected-mode", "yes"])
        airflow_cli(env, ["db", "migrate"])
        migrated_s = time.monotonic() - started

        airflow = [sys.executable, "-m", "airflow"]
        procs.start("api-server", [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(api_port),
                                   "--workers", "1"])
        procs.start("scheduler", [*airflow, "scheduler"])
        procs.start("dag-processor", [*airflow, "dag-processor"])
        for queue, argv in deployment["workers"].items():
            name = "worker-cpu" if queue == cpu_queue else "worker-gpu"
            procs.start(name, [*airflow, *argv, "--celery-hostname", f"{name}@%h"],
                        extra_env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())})
        pool_name, pool_slots = deployment["gpu_pool"]
        airflow_cli(env, ["pools", "set", pool_name, pool_slots, "GPU workers (LUMOS inference)"])

        def dag_parsed():
            with meta.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM serialized_dag WHERE dag_id = :d"),
                                    {"d": DAG_ID}).scalar()

        wait_for(f"the DAG processor to serialize {DAG_ID}", dag_parsed, timeout_s=180, procs=procs)
        wait_for("the API server", lambda: _healthy(f"http://127.0.0.1:{api_port}/execution/health"),
                 timeout_s=120, procs=procs)
        # DAGs start paused: a run triggered while paused waits for the unpause, so both at once
        airflow_cli(env, ["dags", "unpause", DAG_ID],
                    ["dags", "trigger", DAG_ID, "--run-id", RUN_ID, "--conf", json.dumps({"night": NIGHT})])
        triggered_s = time.monotonic() - started

        def run_state():
            with meta.connect() as conn:
                state = conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                                     {"d": DAG_ID, "r": RUN_ID}).scalar()
            return state if state in ("success", "failed") else None

        state = wait_for(f"DAG run {RUN_ID} to finish", run_state, timeout_s=RUN_TIMEOUT_S, procs=procs)
        finished_s = time.monotonic() - started

        with meta.connect() as conn:
            tis = [dict(row._mapping) for row in conn.execute(sa.text(
                "SELECT task_id, map_index, state, queue, pool, hostname, external_executor_id, "
                "extract(epoch FROM end_date - start_date) AS seconds FROM task_instance "
                "WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index"), {"d": DAG_ID, "r": RUN_ID})]
            celery = dict(conn.execute(sa.text("SELECT task_id, status FROM celery_taskmeta")).all())
        timings = {"migrate_s": migrated_s, "trigger_s": triggered_s - migrated_s, "run_s": finished_s - triggered_s}
        print(f"CeleryExecutor stack: {timings}; task instances: {tis}")
        yield {
            "state": state, "tis": tis, "celery": celery, "keys": keys, "photometry": photometry, "s3": client,
            "procs": procs, "cpu_queue": cpu_queue, "gpu_queue": gpu_queue, "gpu_pool": pool_name,
            "worker_logs": {name: procs.log(name).read_text(errors="replace")
                            for name in ("worker-cpu", "worker-gpu")},
            "task_logs": home / "logs",
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
                      **{("process", i): "success" for i in range(n_images)}}, _failure_context(run)

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
    """``process`` (LUMOS) went to the GPU queue and pool and was run by the GPU worker; the other
    tasks went to the CPU queue and were run by the CPU worker. Which worker ran a task instance:
    its Celery task id (``external_executor_id``) in that worker's log, and the result backend
    (PostgreSQL) holding that id as SUCCESS."""
    run = celery_run
    assert run["state"] == "success", _failure_context(run)
    worker_of_queue = {run["cpu_queue"]: "worker-cpu", run["gpu_queue"]: "worker-gpu"}
    assert run["cpu_queue"] != run["gpu_queue"]
    by_worker = {"worker-cpu": set(), "worker-gpu": set()}
    for ti in run["tis"]:
        expected_queue = run["gpu_queue"] if ti["task_id"] == "process" else run["cpu_queue"]
        assert ti["queue"] == expected_queue, ti
        if ti["task_id"] == "process":
            assert ti["pool"] == run["gpu_pool"], ti
        celery_id = ti["external_executor_id"]
        assert celery_id, ti
        ran_by = [name for name, log in run["worker_logs"].items()
                  if re.search(rf"\[{re.escape(celery_id)}\] Executing workload in Celery", log)]
        assert ran_by == [worker_of_queue[expected_queue]], (ti, ran_by)
        assert run["celery"].get(celery_id) == "SUCCESS", (ti, run["celery"].get(celery_id))
        by_worker[ran_by[0]].add(ti["task_id"])
    assert by_worker == {"worker-cpu": {"check_schema", "plan", "finish", "night_failures"},
                         "worker-gpu": {"process"}}
