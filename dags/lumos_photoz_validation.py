"""``lumos_photoz_validation``: weekly photo-z check of the photometry database (paper §6.4).

check_schema -> photoz (template photo-z of every method's latest co-adds against the catalogue's
spectroscopic redshifts: one row per method in ``lumos.photoz_checks``, JSON + PNG reports under
``<report_prefix>/photoz/`` in object storage). Compare the rows between checks (``lumos db query
photoz_trend``) to catch a photometry regression after a new model version or calibration.

Settings come from ``LUMOS_*`` environment variables, as for ``lumos_nightly``;
``LUMOS_PHOTOZ_SCHEDULE`` sets the schedule (default Sundays 14:00 UTC, ``none`` for manual runs).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, get_current_context, task

from lumos_ops.airflow.operators import LumosSchemaOperator
from lumos_ops.pipeline.config import PipelineSettings

SETTINGS = PipelineSettings.from_env()


@dag(
    dag_id="lumos_photoz_validation",
    schedule=SETTINGS.photoz_schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
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
        from lumos_ops.airflow.hooks import pipeline_runtime
        from lumos_ops.pipeline.photoz_check import check_photoz

        settings = PipelineSettings.from_env()
        with pipeline_runtime(settings) as (engine, store):
            results = check_photoz(engine, store, dag_run_id=get_current_context()["dag_run"].run_id,
                                   report_prefix=settings.night.report_prefix)
        for r in results:
            print(f"{r.method}: {r.n_fitted}/{r.n_sources} sources, sigma68 {r.sigma68:.4f}, "
                  f"outliers {r.outlier_fraction:.3f}, bias {r.bias:+.4f} ({', '.join(r.model_versions)})")
        if not results:
            print("no co-adds of sources with a spectroscopic redshift: nothing to check")
        return [r.to_dict() for r in results]

    schema >> photoz()


lumos_photoz_validation()
