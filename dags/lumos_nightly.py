"""``lumos_nightly``: forced photometry of a night's exposures, from object storage to PostgreSQL.

check_schema -> plan (discover + register the night's CCD images) -> process (one mapped task per
image: download, validate, measure, write) -> coadd (every source touched, across all its
exposures) -> report (counts, failures, timings, PNG plots in object storage). ``night_failures``
runs after the report whatever happened upstream: it fails the run, naming the counts, when an
exposure failed or no report was made, and is skipped otherwise.

Settings come from ``LUMOS_*`` environment variables (``lumos_ops.pipeline.config.ENV_VARS``);
only the schedule, queues, pool and retries are read when the file is parsed, the rest when a task
runs. Parsing touches no network, database or model. The ``night`` param (``YYYY-MM-DD``) selects
the night of a manual run or backfill; without it a run processes the day before its logical date.
"""

from __future__ import annotations

import datetime as dt
import time

from airflow.sdk import Param, dag, get_current_context, task

from lumos_ops.airflow.operators import LumosSchemaOperator
from lumos_ops.pipeline.config import PipelineSettings

SETTINGS = PipelineSettings.from_env()
INPUT_ERRORS = ("InputFileError", "HeaderError", "CatalogError", "LumosValueError")


def _runtime() -> tuple[PipelineSettings, object, object]:
    from lumos_ops.airflow.hooks import pipeline_runtime

    settings = PipelineSettings.from_env()
    return settings, *pipeline_runtime(settings)


@dag(
    dag_id="lumos_nightly",
    schedule=SETTINGS.schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=2,
    params={
        "night": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}-\d{2}$",
                       description="Night to process (YYYY-MM-DD); empty: the day before the run's logical date"),
    },
    default_args={
        "retries": SETTINGS.task_retries,
        "retry_delay": dt.timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "queue": SETTINGS.cpu_queue,
    },
    tags=["lumos", "photometry"],
    doc_md=__doc__,
)
def lumos_nightly() -> None:
    schema = LumosSchemaOperator(task_id="check_schema", conn_id=SETTINGS.db_conn_id)

    @task
    def plan() -> list[dict]:
        from lumos_ops.airflow.night import resolve_night
        from lumos_ops.pipeline.night import plan_night

        context = get_current_context()
        dag_run = context["dag_run"]
        night = resolve_night(context["params"].get("night"), dag_run.logical_date, dag_run.run_after)
        settings, engine, store = _runtime()
        try:
            result = plan_night(engine, store, settings.night, night=night, dag_id=dag_run.dag_id,
                                dag_run_id=dag_run.run_id)
        finally:
            engine.dispose()
        if result.empty:
            print(f"night {night}: no exposures in {store.describe()}: nothing to do")
        ti = context["ti"]
        ti.xcom_push(key="night", value=result.night)
        ti.xcom_push(key="run_id", value=result.run_id)
        ti.xcom_push(key="started", value=time.time())
        return [t.to_dict() for t in result.tasks]

    @task(
        map_index_template="{{ exposure_label }}",
        queue=SETTINGS.gpu_queue if SETTINGS.night.needs_gpu else SETTINGS.cpu_queue,
        pool=SETTINGS.gpu_pool if SETTINGS.night.needs_gpu else "default_pool",
    )
    def process(exposure: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from lumos_ops.pipeline.night import process_exposure
        from lumos_ops.pipeline.plan import ExposureTask

        item = ExposureTask.from_dict(exposure)
        get_current_context()["exposure_label"] = item.label
        settings, engine, store = _runtime()
        try:
            return process_exposure(engine, store, settings.night, item).to_dict()
        except Exception as exc:
            if type(exc).__name__ in INPUT_ERRORS:
                raise AirflowFailException(str(exc)) from exc
            raise
        finally:
            engine.dispose()

    @task(trigger_rule="all_done")
    def coadd(night: str, lumos_run_id: int) -> dict:
        from lumos_ops.pipeline.coadd import coadd_night

        _, engine, _ = _runtime()
        try:
            return coadd_night(engine, night=night, run_id=lumos_run_id).to_dict()
        finally:
            engine.dispose()

    @task(trigger_rule="all_done")
    def report(night: str, lumos_run_id: int, started: float, coadd_summary: dict | None) -> dict:
        from lumos_ops.pipeline.plan import CoaddSummary
        from lumos_ops.pipeline.report import report_night

        settings, engine, store = _runtime()
        try:
            summary = report_night(
                engine, store, settings.night, night=night, run_id=lumos_run_id,
                coadd=CoaddSummary.from_dict(coadd_summary) if coadd_summary else None,
                wall_s=time.time() - started,
            )
        finally:
            engine.dispose()
        print(summary.summary())
        return summary.to_dict()

    @task(trigger_rule="all_done", retries=0)
    def night_failures(summary: dict | None) -> None:
        """Runs after ``report`` whatever happened upstream; fails the run, with the counts, when an
        exposure failed or the report could not be made, and is skipped otherwise."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        if not summary:
            raise AirflowFailException("the night's report was not produced (see the 'report' task's log); "
                                       "clear 'report' once the database and object store are reachable")
        if summary["n_failed"]:
            raise AirflowFailException(
                f"night {summary['night']}: {summary['n_failed']} of {summary['n_exposures']} exposures failed; "
                "fix the files and clear their mapped 'process' tasks (co-adds and report rerun downstream)"
            )
        raise AirflowSkipException(f"night {summary['night']}: no exposure failed")

    planned = plan()
    schema >> planned
    processed = process.expand(exposure=planned)
    coadded = coadd(planned["night"], planned["run_id"])
    processed >> coadded
    summary = report(planned["night"], planned["run_id"], planned["started"], coadded)
    failures = night_failures(summary)
    processed >> failures


lumos_nightly()
