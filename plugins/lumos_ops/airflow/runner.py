"""Run ``lumos_nightly`` in-process through Airflow (``dag.test()``), for ``lumos demo`` and
``lumos night run``. Airflow's metadata database must be migrated (``airflow db migrate``; a
database that is not is one error saying so), and Airflow's dags folder must be the one parsed
here, set before Airflow is first imported: ``dag.test()`` serialises the DAG from it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from lumos_ops.exceptions import LumosError

__all__ = ["DAG_ID", "default_dags_folder", "run_nightly"]

DAG_ID = "lumos_nightly"


def default_dags_folder() -> Path:
    """``$LUMOS_DAGS_FOLDER``, Airflow's configured dags folder, or the repository's ``dags/``."""
    if os.environ.get("LUMOS_DAGS_FOLDER"):
        return Path(os.environ["LUMOS_DAGS_FOLDER"])
    if os.environ.get("AIRFLOW__CORE__DAGS_FOLDER"):
        return Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return Path(__file__).resolve().parents[3] / "dags"


def run_nightly(*, night: str, dags_folder: str | os.PathLike[str] | None = None) -> tuple[str, str, dict[str, str]]:
    """Parse the DAG and run it once for ``night``.

    Returns
    -------
    state : str
        The DAG run's final state (``success`` or ``failed``).
    run_id : str
        Airflow's DAG run id.
    task_states : dict of str -> str
        ``task_id[map_index]`` -> state.
    """
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    folder = Path(dags_folder) if dags_folder else default_dags_folder()
    bag = DagBag(str(folder))
    if DAG_ID not in bag.dags:
        raise LumosError(f"{folder}: no DAG {DAG_ID!r} ({bag.import_errors or 'not found'})")
    try:
        run = bag.dags[DAG_ID].test(logical_date=dt.datetime.now(dt.UTC), run_conf={"night": night})
    except Exception as exc:
        text = str(exc)
        if "no such table" in text or ("relation" in text and "does not exist" in text):
            raise LumosError(f"Airflow's metadata database ({os.environ.get('AIRFLOW_HOME', '~/airflow')}) is not "
                             "migrated: run `airflow db migrate` once, or run the night with --no-airflow") from None
        raise
    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run.run_id)
        states = {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(getattr(ti.state, "value", ti.state))
            for ti in rows
        }
    return str(getattr(run.state, "value", run.state)), run.run_id, states
