"""Airflow operators of lumos-ops (thin: the work is in ``lumos_ops.pipeline``), and the retry
policy of every lumos-ops task.

Importing this module imports nothing heavy (the hooks, SQLAlchemy and the pipeline load when a
task runs), so that DAG files parse fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from lumos_ops.exceptions import NOT_RETRYABLE

__all__ = ["LumosSchemaOperator", "fail_fast", "upstream_xcom"]



@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """Fail the running task at once, without its retries, on an error of :data:`lumos_ops.exceptions.NOT_RETRYABLE`.

    The error becomes ``AirflowFailException`` with the same message (the original is chained, so
    the task log shows it); any other error propagates unchanged and is retried as configured.

    Examples
    --------
    >>> with fail_fast():  # doctest: +SKIP
    ...     plan_night(engine, store, settings.night, night=night, dag_run_id=run_id)
    """
    try:
        yield
    except NOT_RETRYABLE as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def upstream_xcom(task_id: str, key: str) -> Any:
    """The XCom ``key`` that ``task_id`` pushed in the running DAG run, or None when it pushed none
    (it failed, was skipped or has not run). Tasks with ``trigger_rule="all_done"`` read their
    upstream values with it instead of taking them as ``XComArg`` arguments, which Airflow resolves
    before the task starts and which fail the task with ``XComNotFound`` when the upstream task
    failed."""
    from airflow.sdk import get_current_context

    return get_current_context()["ti"].xcom_pull(task_ids=task_id, key=key)


class LumosSchemaOperator(BaseOperator):
    """Check (or, with ``upgrade=True``, bring up to date) the photometry database schema.

    Parameters
    ----------
    conn_id : str
        Airflow Connection of the database (type ``postgres``).
    upgrade : bool, keyword-only
        Apply missing migrations instead of failing on them.
    """

    template_fields: Sequence[str] = ("conn_id",)

    def __init__(self, *, conn_id: str = "lumos_db", upgrade: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.upgrade = upgrade

    def execute(self, context: Any) -> int:
        from lumos_ops.airflow.hooks import LumosPostgresHook
        from lumos_ops.pipeline.database import check_schema, upgrade

        engine = LumosPostgresHook(postgres_conn_id=self.conn_id).get_lumos_engine()
        try:
            with fail_fast():
                if self.upgrade:
                    self.log.info("applied migrations: %s", upgrade(engine) or "none (schema current)")
                version = check_schema(engine)
        finally:
            engine.dispose()
        self.log.info("photometry schema at version %d", version)
        return version
