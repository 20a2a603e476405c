"""Run ``lumos_nightly`` through Airflow (``dag.test()``), for ``lumos demo`` and ``lumos night run``.
Airflow's metadata database must be migrated (``airflow db migrate``; a database that is not is
one error saying so), and Airflow's dags folder must be the one parsed here, set before Airflow is
first imported: ``dag.test()`` serialises the DAG from it.

:func:`run_nightly` runs the DAG in this process. :func:`run_nightly_stoppable` runs it in a child
process of its own session, which SIGTERM and Ctrl-C stop at once: Airflow's in-process task runner
replaces the SIGTERM handler with one that only calls the task's ``on_kill`` and goes on with the
run, retries included."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from lumos_ops.exceptions import LumosError

__all__ = ["DAG_ID", "default_dags_folder", "run_nightly", "run_nightly_stoppable"]

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


STOP_GRACE_S = 10.0
"""Seconds the child run gets to end after SIGTERM before it is killed."""


def run_nightly_stoppable(*, night: str) -> tuple[str, str, dict[str, str]]:
    """:func:`run_nightly` in a child process (this environment, its own session), so that SIGTERM
    or Ctrl-C ends the run at once: the child's process group gets SIGTERM, then SIGKILL after
    :data:`STOP_GRACE_S`, and :class:`KeyboardInterrupt` is raised here. Exposures and runs the
    child left ``running`` are closed by ``lumos night recover``.

    Raises
    ------
    LumosError
        What the child's run raised (one line), or the child died without a result.
    """
    with tempfile.TemporaryDirectory(prefix="lumos-nightly-") as tmp:
        result = Path(tmp) / "result.json"
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            child = subprocess.Popen([sys.executable, "-m", "lumos_ops.airflow.runner", night, str(result)],
                                     start_new_session=True, preexec_fn=_die_with_parent)
            try:
                code = child.wait()
            except KeyboardInterrupt:
                _stop(child)
                raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not result.is_file():
            raise LumosError(f"the Airflow run of {DAG_ID} for night {night} ended without a result (exit {code}); "
                             "its log is above")
        outcome = json.loads(result.read_text())
    if "error" in outcome:
        raise LumosError(outcome["error"])
    return outcome["state"], outcome["run_id"], outcome["states"]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the child, before it runs: the kernel kills it when this process dies, however (Linux
    ``PR_SET_PDEATHSIG``; elsewhere nothing)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, SIGKILL after :data:`STOP_GRACE_S` or at a second
    Ctrl-C / SIGTERM: the child is gone when this returns."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=STOP_GRACE_S)
    except (ProcessLookupError, subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    finally:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def _child_main(argv: list[str]) -> int:
    """``python -m lumos_ops.airflow.runner NIGHT RESULT``: run the night, write the outcome to RESULT."""
    night, result = argv
    try:
        state, run_id, states = run_nightly(night=night)
        outcome: dict[str, object] = {"state": state, "run_id": run_id, "states": states}
    except LumosError as exc:
        outcome = {"error": str(exc)}
    Path(result).write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
