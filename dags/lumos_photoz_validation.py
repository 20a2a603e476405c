"""``lumos_photoz_validation``: weekly photo-z check of the photometry database (paper §6.4).

check_schema -> photoz (template photo-z of every method's latest co-adds against the catalogue's
spectroscopic redshifts: one row per method in ``lumos.photoz_checks``, JSON + PNG reports under
``<report_prefix>/photoz/`` in object storage). Compare the rows between checks (``lumos db query
photoz_trend``) to catch a photometry regression after a new model version or calibration.

``photoz`` is skipped, with the reason, while there is nothing to validate (no co-add of a source with
a spectroscopic redshift, or co-adds covering fewer than ``MIN_SURVEY_BANDS`` bands), and fails when a
method's co-adds cover enough bands but no source got a photo-z; it never records NULL metrics. A bad
configuration or input (a malformed catalogue, an invalid setting:
``lumos_ops.exceptions.NOT_RETRYABLE``) fails it at once; network and database errors are
retried (``LUMOS_TASK_RETRIES``).

Settings come from ``LUMOS_*`` environment variables, as for ``lumos_nightly``;
``LUMOS_PHOTOZ_SCHEDULE`` sets the schedule (default Sundays 14:00 UTC, ``none`` for manual runs).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, get_current_context, task

from lumos_ops.airflow.operators import LumosSchemaOperator, fail_fast
from lumos_ops.pipeline.config import DagSettings, PipelineSettings

SETTINGS = DagSettings.from_env()


@dag(
    dag_id="lumos_photoz_validation",
    schedule=SETTINGS.photoz_schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": SETTINGS.task_retries, "retry_delay": dt.timedelta(minutes=5),
                  "queue": SETTINGS.cpu_queue},
    tags=["lumos", "validation", "photo-z"],
    doc_md=__doc__,
)
def lumos_photoz_validation() -> None:
    schema = LumosSchemaOperator(task_id="check_schema", conn_id=SETTINGS.db_conn_id)

    @task
    def photoz() -> list[dict]:
        """Check every method; skipped when there is nothing to validate yet (no co-add of a source with
        a spectroscopic redshift, too few bands), failed when a method has enough bands but no source
        got a photo-z; the log says how many sources and bands each metric was computed on."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from lumos_ops.airflow.hooks import pipeline_runtime
        from lumos_ops.pipeline.photoz_check import PhotozCheckFailed, PhotozCheckSkipped, check_photoz, require_checked

        with fail_fast():
            settings = PipelineSettings.from_env()
            with pipeline_runtime(settings) as (engine, store):
                results = check_photoz(engine, store, dag_run_id=get_current_context()["dag_run"].run_id,
                                       report_prefix=settings.night.report_prefix)
        for r in results:
            print(r.summary())
        try:
            require_checked(results)
        except PhotozCheckFailed as exc:
            print(exc)  # in the task log whatever its level
            raise AirflowFailException(str(exc)) from exc
        except PhotozCheckSkipped as exc:
            print(exc)
            raise AirflowSkipException(str(exc)) from exc
        return [r.to_dict() for r in results]

    schema >> photoz()


lumos_photoz_validation()
