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


def rendered_map_indexes(dag_run_id: str) -> dict[int, str]:
    """``{map_index: rendered label}`` of the mapped ``process`` tasks."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == "lumos_nightly",
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


def resume_dag_run(dag, dag_run_id: str):
    """Run the cleared task instances of an existing DAG run to completion, the way ``dag.test()``
    runs a new one (a minimal in-process scheduler loop); returns the run's final state."""
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    with create_session() as session:
        dr = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id, DagRun.run_id == dag_run_id).one()
        dr.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
        dr.state = DagRunState.RUNNING
        session.commit()
        for _ in range(200):
            session.expire_all()
            schedulable, _ = dr.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            scheduled = [ti for ti in dr.get_task_instances(session=session) if ti.state == TaskInstanceState.SCHEDULED]
            if dr.state != DagRunState.RUNNING:
                break
            for ti in scheduled:
                try:
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id])
                except Exception:  # noqa: BLE001 - the task's state records the failure
                    pass
    with create_session() as session:
        return str(session.query(DagRun.state).filter(DagRun.dag_id == dag.dag_id,
                                                      DagRun.run_id == dag_run_id).scalar())


def task_durations(dag_run_id: str) -> dict[tuple[str, int], float]:
    """``{(task_id, map_index): seconds}`` of a DAG run's finished task instances."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == "lumos_nightly",
                                                  TaskInstance.run_id == dag_run_id).all()
        return {(ti.task_id, ti.map_index): (ti.end_date - ti.start_date).total_seconds()
                for ti in rows if ti.start_date and ti.end_date}
