"""Run ``lumos_nightly`` through Airflow in-process and inspect the result (used by the DAG tests)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

from lumos_ops.airflow.local_stack import postgres_conn, s3_conn

__all__ = ["postgres_conn", "s3_conn", "load_dag", "run_dag", "task_states", "clear_map_index", "clear_failed", "resume_dag_run", "env"]


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    """Temporarily set environment variables."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_dag(dag_id: str = "lumos_nightly"):
    """A DAG parsed from the dags folder, and the DagBag's import errors."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return bag.dags.get(dag_id), bag.import_errors


def run_dag(dag, *, night: str | None = None, logical_date: dt.datetime | None = None, conf: dict | None = None):
    """One DAG run through ``dag.test()`` with ``conf`` (``night``: the param of ``lumos_nightly``)."""
    when = logical_date or dt.datetime.now(dt.UTC)
    run_conf = {**({"night": night} if night else {}), **(conf or {})}
    return dag.test(logical_date=when, run_conf=run_conf or None)


def task_states(dag_run_id: str) -> dict[tuple[str, int], str]:
    """``{(task_id, map_index): state}`` of a DAG run, from Airflow's metadata database."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == "lumos_nightly",
                                                  TaskInstance.run_id == dag_run_id).all()
        return {(ti.task_id, ti.map_index): str(ti.state.value if hasattr(ti.state, "value") else ti.state)
                for ti in rows}


def rendered_map_indexes(dag_run_id: str, dag_id: str = "lumos_nightly") -> dict[int, str]:
    """``{map_index: rendered label}`` of the mapped ``process`` tasks."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id,
                                                  TaskInstance.run_id == dag_run_id,
                                                  TaskInstance.task_id == "process").all()
        return {ti.map_index: ti.rendered_map_index for ti in rows}


def clear_map_index(dag_run_id: str, map_index: int) -> dict[str, Any]:
    """``POST /api/v2/dags/lumos_nightly/clearTaskInstances`` for one mapped ``process`` task and
    its downstream tasks, through Airflow's REST API app (in-process)."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as client:
        reply = client.post(
            "/api/v2/dags/lumos_nightly/clearTaskInstances",
            json={"dry_run": False, "dag_run_id": dag_run_id, "task_ids": [["process", map_index]],
                  "only_failed": False, "include_downstream": True, "reset_dag_runs": True},
        )
    assert reply.status_code == 200, reply.text
    return reply.json()


def clear_failed(dag_run_id: str, task_ids: list[str]) -> dict[str, Any]:
    """``POST /api/v2/dags/lumos_nightly/clearTaskInstances`` with ``only_failed: true`` and the
    downstream tasks: what an operator does to retry whatever failed, leaving successes alone."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as client:
        reply = client.post(
            "/api/v2/dags/lumos_nightly/clearTaskInstances",
            json={"dry_run": False, "dag_run_id": dag_run_id, "task_ids": task_ids, "only_failed": True,
                  "include_downstream": True, "reset_dag_runs": True},
        )
    assert reply.status_code == 200, reply.text
    return reply.json()


def resume_dag_run(dag, dag_run_id: str) -> dict[tuple[str, int], str]:
    """Run the cleared task instances of an existing DAG run, upstream tasks first, each through
    Airflow's CLI ``airflow tasks test DAG_ID TASK_ID RUN_ID --map-index N`` (in-process: it runs
    that run's instance and records its state), what the scheduler does after a clear; every
    cleared instance runs (no trigger rules). Returns :func:`task_states` afterwards."""
    from airflow.cli import cli_parser

    depth = _depths(dag)
    cleared = sorted((key for key, state in task_states(dag_run_id).items() if state == "None"),
                     key=lambda key: (depth[key[0]], key[1]))
    parser = cli_parser.get_parser()
    saved = dict(os.environ)  # `tasks test` sets AIRFLOW_TEST_MODE for the process
    try:
        for task_id, map_index in cleared:
            args = parser.parse_args(["tasks", "test", dag.dag_id, task_id, dag_run_id, "--map-index", str(map_index)])
            args.func(args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return task_states(dag_run_id)


def _depths(dag) -> dict[str, int]:
    """Length of the longest upstream chain of every task of ``dag``."""
    depth: dict[str, int] = {}

    def visit(task_id: str) -> int:
        if task_id not in depth:
            upstream = dag.task_dict[task_id].upstream_task_ids
            depth[task_id] = 1 + max((visit(t) for t in upstream), default=-1)
        return depth[task_id]

    for task_id in dag.task_dict:
        visit(task_id)
    return depth


def task_durations(dag_run_id: str) -> dict[tuple[str, int], float]:
    """``{(task_id, map_index): seconds}`` of a DAG run's finished task instances."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == "lumos_nightly",
                                                  TaskInstance.run_id == dag_run_id).all()
        return {(ti.task_id, ti.map_index): (ti.end_date - ti.start_date).total_seconds()
                for ti in rows if ti.start_date and ti.end_date}
