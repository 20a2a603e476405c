"""``lumos night run | status | recover``: process one night (through Airflow or, with
``--no-airflow``, in this process), show what the database holds for it, and recover exposures
left ``running`` by a task that died.

Both paths run the same ``lumos_ops.pipeline`` functions. Settings come from the ``LUMOS_*``
environment variables (see ``docs/pipeline.md``) and the options below. The database: ``--db-url``,
else (through Airflow) the Airflow Connection ``lumos_db`` when it is defined, else
``$LUMOS_DATABASE_URL``, else the local PostgreSQL of ``lumos db start`` when it runs. An S3
store: ``--endpoint-url``, else (through Airflow) the Airflow Connection ``lumos_s3`` when it is
defined, else ``$LUMOS_S3_ENDPOINT_URL``; credentials from the Connection or boto3's usual chain.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lumos night run | reprocess | status | recover``."""
    parser = subparsers.add_parser("night", help="run the nightly pipeline for one night")
    sub = parser.add_subparsers(dest="night_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="discover, measure, co-add and report one night")
    run.add_argument("--night", required=True, help="night to process (YYYY-MM-DD)")
    run.add_argument("--no-airflow", action="store_true",
                     help="run the steps in this process instead of through the lumos_nightly DAG")
    run.add_argument("--store", help="object store: directory, file:///dir or s3://bucket/prefix "
                                     "(default $LUMOS_STORE_URL)")
    run.add_argument("--endpoint-url", help="S3-compatible endpoint, e.g. http://localhost:9000 (MinIO); through "
                                            "Airflow it replaces the lumos_s3 Connection's (default: the "
                                            "Connection's, else $LUMOS_S3_ENDPOINT_URL)")
    run.add_argument("--methods", help="comma-separated photometry methods (default $LUMOS_METHODS or aperture)")
    run.add_argument("--db-url", help="SQLAlchemy URL of the photometry database (default: through Airflow the "
                                      "lumos_db Connection when defined, else $LUMOS_DATABASE_URL, else the "
                                      "local PostgreSQL of `lumos db start`)")
    run.add_argument("--survey", metavar="FILE",
                     help="survey description file the exposures are read with (sets $LUMOS_SURVEY; default: "
                          "$LUMOS_SURVEY, else the built-in PAUS)")
    run.set_defaults(func=_run)
    reprocess = sub.add_parser(
        "reprocess", help="measure the registered exposures of a range of nights again under new model versions, in "
                          "this process (the lumos_reprocess DAG's steps; production rows and co-adds stay as they "
                          "are until a version is promoted)")
    reprocess.add_argument("--first-night", required=True, help="first night of the range (YYYY-MM-DD)")
    reprocess.add_argument("--last-night", help="last night of the range, inclusive (default: --first-night)")
    reprocess.add_argument("--methods", required=True, help="comma-separated photometry methods, e.g. optimal,lumos")
    reprocess.add_argument("--model-versions", required=True, metavar="METHOD=VERSION,...",
                           help="the version each method's rows are written under, e.g. optimal=optimal-2")
    reprocess.add_argument("--model-key", help="object key of the LUMOS checkpoint of that version "
                                               "(default $LUMOS_MODEL_KEY, else the shipped default)")
    reprocess.add_argument("--store", help="object store (default $LUMOS_STORE_URL)")
    reprocess.add_argument("--db-url", help="SQLAlchemy URL (default $LUMOS_DATABASE_URL, else `lumos db start`'s)")
    reprocess.add_argument("--survey", metavar="FILE", help="survey description file (default $LUMOS_SURVEY, else PAUS)")
    reprocess.set_defaults(func=_reprocess)
    status = sub.add_parser("status", help="the night's exposures, stale rows and co-adds, from the database; "
                                           "exit 1 while an exposure is not done")
    status.add_argument("--night", required=True, help="night (YYYY-MM-DD)")
    status.add_argument("--db-url", help="SQLAlchemy URL (default $LUMOS_DATABASE_URL, else `lumos db start`'s)")
    status.set_defaults(func=_status)
    recover = sub.add_parser("recover", help="mark exposures left 'running' by a dead task as failed "
                                             "(their stored measurements are kept); with --runs-older-than, also "
                                             "close the runs a dead process or a lost database left open")
    recover.add_argument("--older-than", type=float, required=True, metavar="HOURS",
                         help="only exposures marked running more than HOURS ago; use more than the longest a task "
                              "can run, so that none still running is caught")
    recover.add_argument("--runs-older-than", type=float, metavar="HOURS",
                         help="also close as failed the runs still 'running' that started more than HOURS ago; use "
                              "more than the longest a whole run can take (a night, a reprocessing)")
    recover.add_argument("--night", help="only this night (YYYY-MM-DD)")
    recover.add_argument("--db-url", help="SQLAlchemy URL (default $LUMOS_DATABASE_URL, else `lumos db start`'s)")
    recover.set_defaults(func=_recover)


def _reprocess(args: argparse.Namespace) -> int:
    """Body of ``lumos night reprocess``: plan, measure every exposure left, co-add, print the progress
    per night; exit 1 while an exposure of the range lacks rows of a requested version."""
    import dataclasses
    import os
    import uuid

    from lumos_ops.exceptions import LumosError
    from lumos_ops.pipeline.config import PipelineSettings, parse_model_versions
    from lumos_ops.pipeline.database import database_url_from_env, make_engine
    from lumos_ops.pipeline.night import open_night_store
    from lumos_ops.pipeline.reprocess import finish_reprocess, plan_reprocess, reprocess_chunk

    if args.store:
        os.environ["LUMOS_STORE_URL"] = args.store
    if args.survey:
        os.environ["LUMOS_SURVEY"] = os.path.abspath(args.survey)
    night = PipelineSettings.from_env().night
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    versions = parse_model_versions(args.model_versions, name="--model-versions")
    config = dataclasses.replace(night, methods=methods, model_versions=versions,  # not the nights' LUMOS_MODEL_VERSIONS
                                 model_key=args.model_key or night.model_key)
    engine = make_engine(args.db_url or database_url_from_env())
    try:
        plan = plan_reprocess(engine, open_night_store(config), config, first_night=args.first_night,
                              last_night=args.last_night or args.first_night, dag_id="cli-reprocess",
                              dag_run_id=f"cli-{uuid.uuid4().hex[:12]}")
        print(f"reprocess: {len(plan.tasks)} of {plan.n_registered} registered exposures to measure "
              f"({', '.join(f'{m}={v}' for m, v in plan.versions.items())})")
        failure = None
        if plan.tasks:
            try:
                reprocess_chunk(engine, open_night_store(config), config, plan.tasks)
            except LumosError as exc:  # every exposure was attempted; the progress below says what is left
                failure = exc
        progress = finish_reprocess(engine, plan.runs, plan.versions,
                                    outlier_fraction=config.survey.coadd_outlier_fraction)
    finally:
        engine.dispose()
    print(progress.to_string(index=False) if len(progress) else "(no registered exposure in the range)")
    if failure is not None:
        print(f"lumos night: {failure}; run the same command again to measure what is left", file=sys.stderr)
    return 0 if (progress["n_complete"] == progress["n_exposures"]).all() else 1


def _status(args: argparse.Namespace) -> int:
    from lumos_ops.pipeline.database import database_url_from_env, make_engine, older_schema_is_one_error
    from lumos_ops.pipeline.keys import validate_night
    from lumos_ops.pipeline.report import failure_message, night_counts

    night = validate_night(args.night)
    engine = make_engine(args.db_url or database_url_from_env())
    try:
        with older_schema_is_one_error(engine):
            counts = night_counts(engine, night)
            message = failure_message(engine, night)
    finally:
        engine.dispose()
    print(f"night {night}: " + ", ".join(f"{k.removeprefix('n_')}={v}" for k, v in counts.items()))
    if not counts["n_exposures"]:
        print(f"night {night}: no exposure registered (never run, or its store held none)")
    if message:
        print(message)
    return 1 if message else 0


def _recover(args: argparse.Namespace) -> int:
    from lumos_ops.exceptions import LumosValueError
    from lumos_ops.pipeline.database import database_url_from_env, make_engine
    from lumos_ops.pipeline.keys import validate_night
    from lumos_ops.pipeline.writer import close_stale_runs, recover_interrupted

    for option, hours in (("--older-than", args.older_than), ("--runs-older-than", args.runs_older_than)):
        if hours is not None and (hours < 0 or (hours == 0 and not args.night)):
            raise LumosValueError(f"{option} {hours}: give a positive number of hours (0, everything left "
                                  "running, only with --night, for a run known to be stopped)")
    night = validate_night(args.night) if args.night else None
    engine = make_engine(args.db_url or database_url_from_env())
    try:
        keys = recover_interrupted(engine, night=night, older_than_s=args.older_than * 3600.0)
        runs = ([] if args.runs_older_than is None else
                close_stale_runs(engine, night=night, older_than_s=args.runs_older_than * 3600.0))
    finally:
        engine.dispose()
    for key in keys:
        print(f"{key}: marked failed (interrupted); clear its 'process' task or rerun the night")
    print(f"{len(keys)} exposure(s) recovered")
    if runs:
        print(f"{len(runs)} run(s) left running closed as failed: {', '.join(map(str, runs))}")
    return 0


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
    if args.survey:
        os.environ["LUMOS_SURVEY"] = os.path.abspath(args.survey)
    settings = PipelineSettings.from_env()
    if not args.no_airflow:
        from lumos_ops.airflow.runner import default_dags_folder, run_nightly_stoppable

        # before Airflow is imported: dag.test() serialises the DAG from the dags folder Airflow reads then
        os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(default_dags_folder())
        _default_airflow_db_connection(settings.db_conn_id, args.db_url)
        if settings.night.store_url.startswith("s3://"):
            _default_airflow_s3_connection(settings.s3_conn_id, args.endpoint_url, settings.night)

        try:
            state, run_id, states = run_nightly_stoppable(night=night)
        except KeyboardInterrupt:
            print(f"lumos night: the run of {night} was stopped; `lumos night recover --older-than 0 "
                  f"--runs-older-than 0 --night {night}` closes the exposures and runs it left running",
                  file=sys.stderr)
            raise
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


def _default_airflow_db_connection(conn_id: str, url: str | None) -> None:
    """Point the Airflow Connection ``conn_id`` at ``url``, or at the default database when undefined.

    ``url`` (``--db-url``) always wins. Otherwise a Connection defined in the environment
    (``AIRFLOW_CONN_<ID>``) or in Airflow's secrets backends / metadata database is kept; only an
    undefined one is set, for this process, to ``$LUMOS_DATABASE_URL`` or the running local
    PostgreSQL of ``lumos db start`` (:func:`~lumos_ops.pipeline.database.database_url_from_env`,
    whose error says to set one or the other).
    """
    import os

    from lumos_ops.pipeline.database import database_url_from_env

    env_name = f"AIRFLOW_CONN_{conn_id.upper()}"
    if url is None and (env_name in os.environ or _airflow_connection_defined(conn_id)):
        return
    from lumos_ops.airflow.local_stack import postgres_conn

    os.environ[env_name] = postgres_conn(url or database_url_from_env())


def _default_airflow_s3_connection(conn_id: str, endpoint_url: str | None, night: Any) -> None:
    """Give the DAG's S3 Connection ``conn_id`` the endpoint the command names.

    ``--endpoint-url`` always wins: a defined Connection keeps its credentials and gets that
    endpoint. An undefined Connection is set, for this process, to ``$LUMOS_S3_ENDPOINT_URL`` and
    ``$LUMOS_S3_REGION`` (credentials from boto3's usual chain: ``AWS_ACCESS_KEY_ID``...), so that
    a store reached without Airflow is reached the same way through it.
    """
    import json
    import os

    env_name = f"AIRFLOW_CONN_{conn_id.upper()}"
    defined = env_name in os.environ or _airflow_connection_defined(conn_id)
    if defined and endpoint_url is None:
        return
    conn: dict[str, Any] = {"conn_type": "aws", "extra": {}}
    if defined:
        from airflow.models.connection import Connection

        existing = Connection.get_connection_from_secrets(conn_id)
        conn.update({k: v for k, v in (("login", existing.login), ("password", existing.password)) if v})
        conn["extra"] = dict(existing.extra_dejson)
    endpoint = endpoint_url or night.endpoint_url
    if endpoint:
        conn["extra"]["endpoint_url"] = endpoint
    if night.region and "region_name" not in conn["extra"]:
        conn["extra"]["region_name"] = night.region
    os.environ[env_name] = json.dumps(conn)


def _airflow_connection_defined(conn_id: str) -> bool:
    """Whether Airflow's secrets backends (environment, metadata database, ...) know ``conn_id``."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return False
    except Exception:  # noqa: BLE001 - metadata database unreachable: let the DAG run report it
        return True
    return True
