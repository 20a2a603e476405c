"""``lumos_nightly``: forced photometry of a night's exposures, from object storage to PostgreSQL.

check_schema -> plan (discover + register the night's CCD images) -> process (one mapped task per
image: download, validate, measure, write) [-> lumos] -> finish (exposures left running by a dead task are
marked failed, every source touched is co-added across all its exposures, the report with counts,
failures, timings and PNG plots goes to object storage and the run record is closed) ->
night_failures (fails the run with the counts and errors while the database holds an exposure of
the night that is not done, skipped otherwise).

Without ``LUMOS_GPU_INFERENCE`` (the default) ``process`` measures every method, LUMOS included,
on the CPU queue in the default pool. With ``LUMOS_GPU_INFERENCE=true`` and classical methods
besides LUMOS, ``process`` measures the classical methods on the CPU queue, in parallel, and
``lumos`` (mapped over the same chunks, after every ``process`` task has ended) runs the network on
the GPU queue behind the GPU pool. Each writes its own rows; an exposure is done once both have
written in this run, and a failed LUMOS step keeps the classical rows (the exposure is failed
until ``lumos`` is cleared and succeeds).

A failed ``plan`` leaves nothing to finish: ``finish`` is skipped and ``night_failures`` fails the
run in one line pointing at ``plan``'s error (the run's state follows ``night_failures``, its last
task). Errors a retry cannot fix (a bad input or configuration:
``lumos_ops.exceptions.NOT_RETRYABLE``) fail their task at once; network and database
errors get ``LUMOS_TASK_RETRIES`` retries.

Recovery: clear whatever failed (one mapped ``process`` task, only the failed tasks, or the whole
run, from the UI or REST). A ``process`` task that succeeds after the night was reported refreshes
the co-adds of its sources and the report itself, and ``night_failures`` reads the database, so
every path ends with co-adds, report and run record matching the database. Failures never delete
measurements: an exposure that cannot be read keeps the rows of its last successful write (stale).

Settings come from ``LUMOS_*`` environment variables (``lumos_ops.pipeline.config.ENV_VARS``);
only ``DagSettings`` (schedule, queues, pool, retries, chunking) are read when the file is parsed,
the rest when a task runs. A night of more than ``LUMOS_MAX_MAPPED_TASKS`` (512) exposures is
mapped in chunks of consecutive exposures (``LUMOS_IMAGES_PER_TASK`` sets the fewest per chunk,
default 1); a retried or cleared chunk measures only what is not done. Parsing touches no network,
database or model. The ``night`` param (``YYYY-MM-DD``) selects the night of a manual run or
backfill; without it a run processes the day before its logical date.
"""

from __future__ import annotations

import datetime as dt
import time

from airflow.sdk import Param, dag, get_current_context, task

from lumos_ops.airflow.operators import LumosSchemaOperator, fail_fast, upstream_xcom
from lumos_ops.pipeline.config import DagSettings, PipelineSettings

SETTINGS = DagSettings.from_env()
LUMOS_QUEUE, LUMOS_POOL = SETTINGS.placement(runs_lumos=True)


@dag(
    dag_id="lumos_nightly",
    schedule=SETTINGS.schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
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
        "priority_weight": 10,
        "weight_rule": "absolute",
    },
    tags=["lumos", "photometry"],
    doc_md=__doc__,
)
def lumos_nightly() -> None:
    schema = LumosSchemaOperator(task_id="check_schema", conn_id=SETTINGS.db_conn_id)

    @task
    def plan() -> list[list[dict]]:
        """The night's exposures in at most ``max_mapped_tasks`` chunks (the return value, which
        Airflow maps ``process`` over); the night, run id and start time go to XCom keys for
        ``finish`` and ``night_failures``."""
        from lumos_ops.airflow.hooks import pipeline_runtime
        from lumos_ops.airflow.night import resolve_night
        from lumos_ops.pipeline.night import plan_night

        context = get_current_context()
        dag_run = context["dag_run"]
        with fail_fast():
            night = resolve_night(context["params"].get("night"), dag_run.logical_date, dag_run.run_after)
            settings = PipelineSettings.from_env()
            with pipeline_runtime(settings) as (engine, store):
                result = plan_night(engine, store, settings.night, night=night, dag_id=dag_run.dag_id,
                                    dag_run_id=dag_run.run_id)
                if result.empty:
                    print(f"night {night}: no exposures in {store.describe()}: nothing to do")
        ti = context["ti"]
        ti.xcom_push(key="night", value=result.night)
        ti.xcom_push(key="run_id", value=result.run_id)
        ti.xcom_push(key="started", value=time.time())
        chunks = result.chunks(SETTINGS.max_mapped_tasks, SETTINGS.images_per_task)
        return [[t.to_dict() for t in chunk] for chunk in chunks]

    @task(map_index_template="{{ exposure_label }}", queue=SETTINGS.process_queue, pool=SETTINGS.process_pool)
    def process(exposures: list[dict]) -> list[dict]:
        """Measure a chunk of exposures (one while the night has at most ``max_mapped_tasks``): every
        method, or the classical ones when LUMOS is its own step."""
        from lumos_ops.airflow.night import process_task

        with fail_fast():
            return process_task(exposures, step="classical" if SETTINGS.lumos_step else None)

    @task(map_index_template="{{ exposure_label }}", queue=LUMOS_QUEUE, pool=LUMOS_POOL, trigger_rule="all_done")
    def lumos(exposures: list[dict]) -> list[dict]:
        """LUMOS inference of a chunk of exposures, after every ``process`` task has ended."""
        from lumos_ops.airflow.night import process_task

        with fail_fast():
            return process_task(exposures, step="lumos")

    @task(trigger_rule="all_done")
    def finish() -> dict:
        """Recover exposures left running, co-add and report (``lumos_ops.pipeline.night.finish_night``);
        skipped when ``plan`` planned nothing (it failed: its log has the error)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from lumos_ops.airflow.hooks import pipeline_runtime
        from lumos_ops.pipeline.night import finish_night

        night = upstream_xcom("plan", "night")
        if night is None:
            raise AirflowSkipException("plan failed, so no night was planned: nothing to finish (see plan's log)")
        lumos_run_id, started = upstream_xcom("plan", "run_id"), upstream_xcom("plan", "started")
        settings = PipelineSettings.from_env()
        with fail_fast(), pipeline_runtime(settings) as (engine, store):
            summary = finish_night(engine, store, settings.night, night=night, run_id=lumos_run_id,
                                   wall_s=time.time() - started)
        print(summary.summary())
        return summary.to_dict()

    @task(trigger_rule="all_done", retries=0)
    def night_failures() -> None:
        """Runs last whatever happened upstream; fails the run, naming the counts and errors, while the
        database holds an exposure of the night that is not done, and is skipped otherwise. When
        ``plan`` failed there is no night to check: it fails in one line naming ``plan`` (skipped, it
        would let the run succeed, as a run's state follows its last task)."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from lumos_ops.airflow.hooks import pipeline_runtime
        from lumos_ops.pipeline.report import failure_message

        night = upstream_xcom("plan", "night")
        if night is None:
            raise AirflowFailException("plan failed, so no night was planned or measured: see plan's log for "
                                       "the error, fix it, then clear plan with its downstream tasks")
        with fail_fast(), pipeline_runtime(PipelineSettings.from_env()) as (engine, _):
            message = failure_message(engine, night)
        if message:
            raise AirflowFailException(message)
        raise AirflowSkipException(f"night {night}: every exposure is done")

    planned = plan()
    schema >> planned
    processed = process.expand(exposures=planned)
    measured = [processed]
    if SETTINGS.lumos_step:
        inferred = lumos.expand(exposures=planned)
        processed >> inferred
        measured.append(inferred)
    # finish and night_failures read plan's XComs in their bodies (upstream_xcom), not as XComArg
    # arguments: run after a failed plan (all_done), those would fail with XComNotFound
    finished = finish()
    [planned, *measured] >> finished
    failures = night_failures()
    [planned, *measured, finished] >> failures


lumos_nightly()
