"""A local Airflow CeleryExecutor deployment for development and benchmarks (no containers).

``docker/compose.yaml`` is the deployment; this module runs the same thing as plain processes on
loopback ports: a Redis broker (``redis-server``, no persistence), a PostgreSQL metadata database
that is also Celery's result backend (:class:`~lumos_ops.pipeline.local_postgres.LocalPostgres`),
the API server (with the Task Execution API the workers' tasks report to), the scheduler, the DAG
processor and one Celery worker per ``celery worker`` command of the compose file. The executor,
queue and pool settings and the worker commands are read from the compose file
(:func:`compose_deployment`), with the container hostnames (``redis``, ``postgres``,
``airflow-apiserver``) replaced by loopback ports.

Every service is a process-group leader with one log file (:class:`Processes`) and is stopped
group-wise (SIGTERM, then SIGKILL of whatever is left, children included). Used by
``tests/dags/test_celery_executor.py`` and ``benchmarks/bench_survey.py``::

    with CeleryStack(root, photometry_conn=postgres_conn(url), extra_env={...}) as stack:
        stack.trigger("lumos_nightly", "run-1", {"night": "2026-11-24"})
        state = stack.wait_run("lumos_nightly", "run-1", timeout_s=600)

Needs ``redis-server`` on PATH and the PostgreSQL binaries :func:`find_pg_bin` finds. Nothing
listens beyond 127.0.0.1; secrets (Fernet key, JWT secret) are generated per stack, never stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "COMPOSE",
    "CeleryStack",
    "Processes",
    "ServiceError",
    "airflow_cli",
    "compose_deployment",
    "http_ok",
    "postgres_conn",
    "s3_conn",
    "signal_group",
    "wait_for",
]

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker" / "compose.yaml"
T = TypeVar("T")


class ServiceError(RuntimeError):
    """A service exited, a wait timed out or an ``airflow`` CLI command failed (message: logs)."""


# --------------------------------------------------------------------------------------------------
# What docker/compose.yaml deploys
# --------------------------------------------------------------------------------------------------

def compose_deployment(compose: str | os.PathLike[str] = COMPOSE) -> dict[str, Any]:
    """Executor settings, Celery worker commands and GPU pool of ``docker/compose.yaml``.

    Returns ``{"env": scheduler environment, "workers": {queues: argv of "celery worker ..."},
    "gpu_pool": (name, slots)}``.
    """
    import yaml

    services = yaml.safe_load(Path(compose).read_text())["services"]
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


def postgres_conn(url: str) -> str:
    """``AIRFLOW_CONN_*`` JSON (type ``postgres``) of a SQLAlchemy URL.

    URL query parameters (e.g. ``passfile``) go to the extra ``sqlalchemy_query``, which the
    Postgres provider's hook passes on to the engine.
    """
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    conn: dict[str, object] = {"conn_type": "postgres", "host": parsed.host, "port": parsed.port,
                               "login": parsed.username, "password": parsed.password, "schema": parsed.database}
    if parsed.query:
        conn["extra"] = {"sqlalchemy_query": {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}}
    return json.dumps({k: v for k, v in conn.items() if v is not None})


def s3_conn(endpoint: str, key: str = "testing", secret: str = "testing") -> str:
    """``AIRFLOW_CONN_*`` JSON of an S3 endpoint (moto's server accepts any key pair)."""
    return json.dumps({"conn_type": "aws", "login": key, "password": secret,
                       "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})


# --------------------------------------------------------------------------------------------------
# Processes: each in its own session (process group), stopped group-wise
# --------------------------------------------------------------------------------------------------

def signal_group(pgid: int, sig: int) -> None:
    """Signal a process group; gone or not ours is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Processes:
    """Long-running services started as process-group leaders, with one log file each."""

    def __init__(self, log_dir: Path, env: Mapping[str, str]):
        self.log_dir, self.env = Path(log_dir), dict(env)
        self.procs: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, argv: list[str], *, extra_env: Mapping[str, str] | None = None) -> subprocess.Popen:
        with open(self.log(name), "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**self.env, **(extra_env or {})}, cwd=self.log_dir,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def dead(self) -> dict[str, int]:
        """Services that exited, with their exit codes."""
        return {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}

    def assert_running(self) -> None:
        dead = self.dead()
        if dead:
            raise ServiceError(f"services exited: {dead}\n{self.tails()}")

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
            signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in procs:
            signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def wait_for(what: str, check: Callable[[], T], *, timeout_s: float, procs: Processes | None = None,
             interval_s: float = 1.0) -> T:
    """Poll ``check()`` until it returns something truthy; raise :class:`ServiceError` with every
    service's log tail when a service exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if procs is not None:
            procs.assert_running()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tails = f"\n{procs.tails()}" if procs is not None else ""
            raise ServiceError(f"timed out after {timeout_s:.0f} s waiting for {what}{tails}")
        time.sleep(interval_s)


def airflow_cli(env: Mapping[str, str], *commands: list[str], timeout_s: float = 300) -> list[str]:
    """Run ``airflow`` CLI commands at the same time (each takes seconds to import Airflow); all must
    succeed (:class:`ServiceError` otherwise). Returns their standard outputs."""
    running = [(args, subprocess.Popen([sys.executable, "-m", "airflow", *args], env=dict(env),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       stdin=subprocess.DEVNULL, cwd=env["AIRFLOW_HOME"]))
               for args in commands]
    failed, outputs = [], []
    for args, proc in running:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        outputs.append(out)
        if proc.returncode != 0:
            failed.append(f"airflow {shlex.join(args)}: exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}")
    if failed:
        raise ServiceError("\n".join(failed))
    return outputs


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------------

class CeleryStack:
    """The compose file's CeleryExecutor deployment as local process groups (a context manager).

    Parameters
    ----------
    root : path
        Working directory: AIRFLOW_HOME (``root/airflow``), the service logs, Redis's directory.
    photometry_conn : str
        ``AIRFLOW_CONN_LUMOS_DB`` (e.g. :func:`postgres_conn`).
    extra_env : mapping
        More environment of every service (``AIRFLOW_CONN_LUMOS_S3``, ``LUMOS_*``, AWS keys); the
        queues and the GPU pool come from the compose file unless given here.
    concurrency : mapping, optional
        ``--concurrency`` per worker queue, replacing the compose file's.
    pool_slots : int, optional
        Slots of the GPU pool, replacing the compose file's.
    dag_ids : iterable of str
        DAGs to wait for the DAG processor to serialize before :meth:`start` returns.

    ``workers`` maps the worker names (``worker-cpu``, ``worker-gpu``) to their queues.
    """

    def __init__(self, root: str | os.PathLike[str], *, photometry_conn: str,
                 extra_env: Mapping[str, str] | None = None, concurrency: Mapping[str, int] | None = None,
                 pool_slots: int | None = None, dag_ids: Iterable[str] = ("lumos_nightly",),
                 compose: str | os.PathLike[str] = COMPOSE, dags_folder: str | os.PathLike[str] = REPO / "dags"):
        self.root = Path(root)
        self.home = self.root / "airflow"
        self.deployment = compose_deployment(compose)
        compose_env = self.deployment["env"]
        extra = dict(extra_env or {})
        self.cpu_queue = extra.get("LUMOS_CPU_QUEUE", compose_env["LUMOS_CPU_QUEUE"])
        self.gpu_queue = extra.get("LUMOS_GPU_QUEUE", compose_env["LUMOS_GPU_QUEUE"])
        self.pool_name, slots = self.deployment["gpu_pool"]
        self.pool_slots = int(pool_slots if pool_slots is not None else slots)
        self.concurrency = dict(concurrency or {})
        self.dag_ids = tuple(dag_ids)
        self.photometry_conn, self.extra_env, self.dags_folder = photometry_conn, extra, Path(dags_folder)
        self.meta_pg: Any = None
        self.meta: Any = None
        self.procs: Processes | None = None
        self.env: dict[str, str] = {}
        self.api_port = 0
        self.workers: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> CeleryStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Metadata database, Redis, ``db migrate``, services, workers, pool; returns when the DAGs
        are serialized and the execution API answers."""
        import sqlalchemy as sa
        from cryptography.fernet import Fernet

        from lumos_ops.pipeline.local_postgres import LocalPostgres, free_port

        started = time.monotonic()
        compose_env = self.deployment["env"]
        if not (compose_env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
                and compose_env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
                and compose_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith(":8080/execution/")):
            raise ServiceError("docker/compose.yaml no longer deploys Redis + PostgreSQL result backend + "
                               "the execution API on :8080; update lumos_ops.airflow.local_stack")
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        # Airflow's metadata database (also Celery's result backend): a server of its own
        self.meta_pg = LocalPostgres.start(database="airflow")
        self._stack.callback(self.meta_pg.stop)
        self.meta = sa.create_engine(self.meta_pg.url, poolclass=sa.pool.NullPool)
        self._stack.callback(self.meta.dispose)
        redis_port, self.api_port = free_port(), free_port()

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUMOS_"))}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": compose_env["AIRFLOW__CORE__EXECUTOR"],
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": compose_env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),  # per stack, never stored
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.meta_pg.url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.meta_pg.url.replace("+psycopg2", ""),
            **{k: compose_env[k] for k in ("AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS",) if k in compose_env},
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_LUMOS_DB": self.photometry_conn,
            "LUMOS_CPU_QUEUE": self.cpu_queue,
            "LUMOS_GPU_QUEUE": self.gpu_queue,
            "LUMOS_GPU_POOL": compose_env["LUMOS_GPU_POOL"],
            "LUMOS_GPU_INFERENCE": compose_env.get("LUMOS_GPU_INFERENCE", "false"),
            "LUMOS_SCHEDULE": "none",
            "LUMOS_PHOTOZ_SCHEDULE": "none",
            "LUMOS_RETRAIN_SCHEDULE": "none",
            "LUMOS_TASK_RETRIES": "0",
            "LUMOS_CACHE_DIR": str(self.root / "cache"),
        })
        env.update(self.extra_env)
        self.env = env

        self.procs = procs = Processes(self.root, env)
        self._stack.callback(procs.stop)
        procs.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                              "--appendonly", "no", "--dir", str(self.root), "--protected-mode", "yes"])
        airflow_cli(env, ["db", "migrate"])
        self.timings["migrate_s"] = time.monotonic() - started

        airflow = [sys.executable, "-m", "airflow"]
        procs.start("api-server", [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port),
                                   "--workers", "1"])
        procs.start("scheduler", [*airflow, "scheduler"])
        procs.start("dag-processor", [*airflow, "dag-processor"])
        for queue, argv in self.deployment["workers"].items():
            name = "worker-cpu" if queue == self.cpu_queue else "worker-gpu" if queue == self.gpu_queue else \
                f"worker-{queue}"
            argv = list(argv)
            if queue in self.concurrency:
                argv[argv.index("--concurrency") + 1] = str(self.concurrency[queue])
            self.workers[name] = queue
            procs.start(name, [*airflow, *argv, "--celery-hostname", f"{name}@%h"],
                        extra_env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())})
        airflow_cli(env, ["pools", "set", self.pool_name, str(self.pool_slots), "GPU workers (LUMOS inference)"])
        for dag_id in self.dag_ids:
            wait_for(f"the DAG processor to serialize {dag_id}", lambda d=dag_id: self._scalar(
                "SELECT count(*) FROM serialized_dag WHERE dag_id = :d", d=d), timeout_s=180, procs=procs)
        wait_for("the API server", lambda: http_ok(f"http://127.0.0.1:{self.api_port}/execution/health"),
                 timeout_s=120, procs=procs)
        self.timings["ready_s"] = time.monotonic() - started

    def stop(self) -> None:
        """Every process group, then the metadata database (the root directory is the caller's)."""
        self._stack.close()

    def _scalar(self, sql: str, **params: Any) -> Any:
        import sqlalchemy as sa

        with self.meta.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def cli(self, *commands: list[str], timeout_s: float = 300) -> list[str]:
        """``airflow`` CLI commands in this stack's environment (run at the same time)."""
        return airflow_cli(self.env, *commands, timeout_s=timeout_s)

    def trigger(self, dag_id: str, run_id: str, conf: Mapping[str, Any] | None = None) -> None:
        """Unpause and trigger at once (a run triggered while paused waits for the unpause)."""
        self.cli(["dags", "unpause", dag_id],
                 ["dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(dict(conf or {}))])

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        """``success`` / ``failed`` once the run ended, None before."""
        state = self._scalar("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
        return state if state in ("success", "failed") else None

    def wait_run(self, dag_id: str, run_id: str, *, timeout_s: float, interval_s: float = 1.0,
                 on_poll: Callable[[], object] | None = None) -> str:
        """Wait for a run to end (``on_poll`` called at every poll, e.g. a memory sampler)."""
        def check() -> str | None:
            if on_poll is not None:
                on_poll()
            return self.run_state(dag_id, run_id)

        return wait_for(f"DAG run {run_id} to finish", check, timeout_s=timeout_s, procs=self.procs,
                        interval_s=interval_s)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Task instances of a run: ids, state, queue, pool, hostname, Celery id, seconds, queued/start/end times."""
        import sqlalchemy as sa

        with self.meta.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(
                "SELECT task_id, map_index, state, queue, pool, hostname, external_executor_id, "
                "extract(epoch FROM end_date - start_date) AS seconds, queued_dttm, start_date, end_date FROM task_instance "
                "WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index"), {"d": dag_id, "r": run_id})]

    def celery_results(self) -> dict[str, str]:
        """Celery task id -> status in the result backend."""
        import sqlalchemy as sa

        with self.meta.connect() as conn:
            return dict(conn.execute(sa.text("SELECT task_id, status FROM celery_taskmeta")).all())

    def worker_pids(self) -> dict[str, int]:
        """Worker name -> pid of its process-group leader."""
        assert self.procs is not None
        return {name: self.procs.procs[name].pid for name in self.workers}
