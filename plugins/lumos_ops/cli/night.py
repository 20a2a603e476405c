"""``lumos night run``: process one night, through Airflow or (``--no-airflow``) in this process.

Both paths run the same ``lumos_ops.pipeline`` functions. Settings come from the ``LUMOS_*``
environment variables (see ``docs/pipeline.md``) and the options below; the database URL from
``--db-url`` or ``$LUMOS_DATABASE_URL``. S3 credentials come from boto3's usual chain.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lumos night run``."""
    parser = subparsers.add_parser("night", help="run the nightly pipeline for one night")
    sub = parser.add_subparsers(dest="night_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="discover, measure, co-add and report one night")
    run.add_argument("--night", required=True, help="night to process (YYYY-MM-DD)")
    run.add_argument("--no-airflow", action="store_true",
                     help="run the steps in this process instead of through the lumos_nightly DAG")
    run.add_argument("--store", help="object store: directory, file:///dir or s3://bucket/prefix "
                                     "(default $LUMOS_STORE_URL)")
    run.add_argument("--endpoint-url", help="S3-compatible endpoint, e.g. http://localhost:9000 (MinIO)")
    run.add_argument("--methods", help="comma-separated photometry methods (default $LUMOS_METHODS or aperture)")
    run.add_argument("--db-url", help="SQLAlchemy URL of the photometry database (default $LUMOS_DATABASE_URL)")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import os
    import uuid

    from lumos_ops.pipeline.config import PipelineSettings
    from lumos_ops.pipeline.keys import validate_night

    night = validate_night(args.night)
    if args.store:
        os.environ["LUMOS_STORE_URL"] = args.store
    if args.methods:
        os.environ["LUMOS_METHODS"] = args.methods
    if args.endpoint_url:
        os.environ["LUMOS_S3_ENDPOINT_URL"] = args.endpoint_url
    settings = PipelineSettings.from_env()
    if not args.no_airflow:
        from lumos_ops.airflow.runner import run_nightly

        state, run_id, states = run_nightly(night=night)
        print(f"lumos_nightly {run_id}: {state}")
        for task, task_state in sorted(states.items()):
            print(f"  {task}: {task_state}")
        return 0 if state == "success" else 1

    from lumos_ops.pipeline.database import database_url_from_env, make_engine
    from lumos_ops.pipeline.night import open_night_store, run_night

    engine = make_engine(args.db_url or database_url_from_env())
    try:
        config = settings.night
        report = run_night(engine, open_night_store(config), config, night=night,
                           dag_run_id=f"cli-{uuid.uuid4().hex[:12]}")
    finally:
        engine.dispose()
    print(report.summary())
    return 0 if report.status in ("success", "empty") else 1
