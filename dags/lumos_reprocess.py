"""``lumos_reprocess``: re-measure a range of nights with given model versions, below the nightly run.

check_schema -> plan (every exposure the nightly runs registered in ``first_night..last_night``
that does not yet hold rows of every requested (method, version); a run record per night) ->
process (mapped chunks of exposures, ``priority_weight`` 1 against the nightly run's 10, so
workers serve the night first) -> finish (co-adds of each night, per model version; run records
closed) -> incomplete (fails with the per-night progress while an exposure lacks the new rows,
skipped otherwise).

Rows are written under the requested versions only: production rows, exposure states and what
``lumos.latest_coadds`` shows stay as they are until the version is promoted (``lumos model
promote``). Resumable: rerun (or clear) the run and only what is left is measured; progress:
``lumos db query reprocess_progress -p model_version=... -p method=...``.

Params: ``first_night``, ``last_night`` (``YYYY-MM-DD``, required), ``methods`` (comma-separated,
default ``lumos``), ``model_versions`` (``method=version`` pairs, required: the versions the rows are
written under; every method of ``methods`` needs one, never a version the nights write), ``model_key`` (checkpoint in the
object store), ``exposures_per_task`` (at least this many CCD images per mapped task; a field's
reprocessing pays each task's scheduling and start-up once per chunk). ``process`` measures every
method of the ``methods`` param at once, each under its version: on the GPU queue and pool when
``LUMOS_METHODS`` includes LUMOS and ``LUMOS_GPU_INFERENCE=true`` (placement is fixed when the file
is parsed), else on the CPU queue.

A bad param or configuration (``lumos_ops.exceptions.NOT_RETRYABLE``) fails its task at
once, without retries; a failed ``plan`` leaves nothing to finish: ``finish`` is skipped and
``incomplete`` fails the run in one line pointing at ``plan``'s error.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from lumos_ops.airflow.operators import LumosSchemaOperator, fail_fast, upstream_xcom
from lumos_ops.pipeline.config import DagSettings, PipelineSettings

SETTINGS = DagSettings.from_env()
PROCESS_QUEUE, PROCESS_POOL = SETTINGS.placement(runs_lumos=SETTINGS.needs_gpu)
_NIGHT = r"^\d{4}-\d{2}-\d{2}$"
_VERSIONS = r"^\s*[a-z0-9_]+\s*=\s*[^\s,=]+\s*(,\s*[a-z0-9_]+\s*=\s*[^\s,=]+\s*)*,?\s*$"


def _config(params: dict):
    """The night settings of the environment with the run's methods, versions and checkpoint."""
    import dataclasses

    from lumos_ops.pipeline.config import parse_model_versions

    night = PipelineSettings.from_env().night
    methods = tuple(m.strip() for m in (params.get("methods") or "").split(",") if m.strip()) or night.methods
    versions = parse_model_versions(params.get("model_versions") or "", name="model_versions")
    return dataclasses.replace(night, methods=methods, model_versions=versions,  # not the nights' LUMOS_MODEL_VERSIONS
                               model_key=params.get("model_key") or night.model_key)


@dag(
    dag_id="lumos_reprocess",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "first_night": Param(type="string", pattern=_NIGHT, description="First night (YYYY-MM-DD)"),
        "last_night": Param(type="string", pattern=_NIGHT, description="Last night (YYYY-MM-DD), inclusive"),
        "methods": Param("lumos", type="string", description="Comma-separated methods to re-measure"),
        "model_versions": Param(type="string", pattern=_VERSIONS,
                                description="method=version pairs the rows are written under, e.g. "
                                            "lumos=lumos-2026.12 (required; every method needs a new one)"),
        "model_key": Param(None, type=["null", "string"], description="Checkpoint object key of the LUMOS version"),
        "exposures_per_task": Param(None, type=["null", "integer"], minimum=1,
                                    description="At least this many CCD images per mapped process task (fewer, "
                                                "longer tasks for a bulk run; default: LUMOS_IMAGES_PER_TASK)"),
    },
    default_args={"retries": SETTINGS.task_retries, "retry_delay": dt.timedelta(minutes=2),
                  "retry_exponential_backoff": True, "queue": SETTINGS.cpu_queue,
                  "priority_weight": 1, "weight_rule": "absolute"},
    tags=["lumos", "photometry", "reprocessing"],
    doc_md=__doc__,
)
def lumos_reprocess() -> None:
    schema = LumosSchemaOperator(task_id="check_schema", conn_id=SETTINGS.db_conn_id)

    @task
    def plan() -> list[list[dict]]:
        """Chunks of the exposures left (the return value ``process`` maps over); the run records
        and versions go to the XCom key ``plan`` for ``finish`` and ``incomplete``."""
        from lumos_ops.airflow.hooks import pipeline_runtime
        from lumos_ops.pipeline.reprocess import plan_reprocess

        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        with fail_fast():
            config = _config(params)
            with pipeline_runtime(PipelineSettings.from_env()) as (engine, store):
                result = plan_reprocess(engine, store, config, first_night=params["first_night"],
                                        last_night=params["last_night"], dag_id=dag_run.dag_id,
                                        dag_run_id=dag_run.run_id)
        print(f"{len(result.tasks)} of {result.n_registered} exposures left to measure with {dict(result.versions)}")
        context["ti"].xcom_push(key="plan", value={"runs": dict(result.runs), "versions": dict(result.versions)})
        per_task = params.get("exposures_per_task") or SETTINGS.images_per_task
        chunks = result.chunks(SETTINGS.max_mapped_tasks, per_task)
        return [[t.to_dict() for t in chunk] for chunk in chunks]

    @task(map_index_template="{{ exposure_label }}", queue=PROCESS_QUEUE, pool=PROCESS_POOL)
    def process(exposures: list[dict]) -> int:
        from lumos_ops.airflow.hooks import pipeline_runtime
        from lumos_ops.pipeline.plan import ExposureTask, chunk_label
        from lumos_ops.pipeline.reprocess import reprocess_chunk

        context = get_current_context()
        items = [ExposureTask.from_dict(e) for e in exposures]
        context["exposure_label"] = chunk_label(items)
        with fail_fast(), pipeline_runtime(PipelineSettings.from_env()) as (engine, store):
            results = reprocess_chunk(engine, store, _config(context["params"]), items)
        return sum(r.n_measurements for r in results)

    @task(trigger_rule="all_done")
    def finish() -> list[dict]:
        """Co-add each night per model version and close the run records; skipped when ``plan``
        planned nothing (it failed: its log has the error)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from lumos_ops.airflow.hooks import pipeline_runtime
        from lumos_ops.pipeline.reprocess import finish_reprocess

        planned = upstream_xcom("plan", "plan")
        if planned is None:
            raise AirflowSkipException("plan failed, so nothing was planned: nothing to finish (see plan's log)")
        with fail_fast(), pipeline_runtime(PipelineSettings.from_env()) as (engine, _):
            outlier_fraction = _config(get_current_context()["params"]).survey.coadd_outlier_fraction
            progress = finish_reprocess(engine, planned["runs"], planned["versions"], outlier_fraction=outlier_fraction)
        print(progress.to_string(index=False))
        return progress.to_dict("records")

    @task(trigger_rule="all_done", retries=0)
    def incomplete() -> None:
        """Fails, with the per-night counts, while an exposure lacks rows of the new versions; fails in
        one line naming ``plan`` when it failed (skipped, it would let the run succeed, as a run's state
        follows its last task)."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        if upstream_xcom("plan", "plan") is None:
            raise AirflowFailException("plan failed, so nothing was planned or measured: see plan's log for the "
                                       "error, fix it (or the params), then clear plan with its downstream tasks")
        progress = upstream_xcom("finish", "return_value")
        if progress is None:
            raise AirflowFailException("finish did not run: see its log, then clear it")
        left = [p for p in progress if p["n_complete"] < p["n_exposures"]]
        if left:
            raise AirflowFailException("not complete: " + ", ".join(
                f"{p['night']} {p['n_complete']}/{p['n_exposures']}" for p in left)
                + "; clear the failed 'process' tasks (only what is left is measured)")
        raise AirflowSkipException(f"{len(progress)} nights complete")

    planned = plan()
    schema >> planned
    processed = process.expand(exposures=planned)
    # finish and incomplete read the XComs of plan and finish in their bodies (upstream_xcom), not as
    # XComArg arguments: run after a failed plan (all_done), those would fail with XComNotFound
    finished = finish()
    [planned, processed] >> finished
    failures = incomplete()
    [planned, processed, finished] >> failures


lumos_reprocess()
