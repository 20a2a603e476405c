"""``lumos_retrain``: monthly transfer learning of LUMOS on the survey's own exposures (§4.3-4.4).

check_schema -> retrain (the exposures measured in the last ``nights`` nights: pairs of exposures of
the same galaxy in the same band, eq. 11, plus TEAHUPOO stamps cut on their backgrounds; only the
last layer of the current model learns, eq. 12) -> a candidate checkpoint in object storage,
registered in ``lumos.model_versions`` with ``status = candidate`` and the width of the D statistic
before and after. Promotion is an operator's decision: set ``LUMOS_MODEL_KEY`` and
``LUMOS_MODEL_VERSIONS=lumos=<version>`` for ``lumos_nightly`` (``docs/pipeline.md``).

``LUMOS_RETRAIN_SCHEDULE`` sets the schedule (default 06:00 UTC on the 1st, ``none`` for manual
runs). The retrain task runs on the GPU queue and pool.
"""

from __future__ import annotations

import datetime as dt
import tempfile

from airflow.sdk import Param, dag, get_current_context, task

from lumos_ops.airflow.operators import LumosSchemaOperator
from lumos_ops.pipeline.config import DagSettings, PipelineSettings

SETTINGS = DagSettings.from_env()


@dag(
    dag_id="lumos_retrain",
    schedule=SETTINGS.retrain_schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "nights": Param(30, type="integer", minimum=1, description="Look-back window (nights) of the exposures used"),
        "until": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}-\d{2}$",
                       description="Last night of the window (YYYY-MM-DD); empty: the day before the logical date"),
        "base_model": Param(None, type=["null", "string"],
                            description="Checkpoint path or shipped-model name to start from; empty: the shipped default"),
        "epochs": Param(20, type="integer", minimum=1, description="Transfer-learning epochs"),
        "n_sim": Param(20000, type="integer", minimum=1, description="TEAHUPOO stamps for the supervised term"),
    },
    default_args={"retries": 0, "queue": SETTINGS.cpu_queue},
    tags=["lumos", "training"],
    doc_md=__doc__,
)
def lumos_retrain() -> None:
    schema = LumosSchemaOperator(task_id="check_schema", conn_id=SETTINGS.db_conn_id)

    @task(queue=SETTINGS.gpu_queue, pool=SETTINGS.gpu_pool)
    def retrain() -> dict:
        from lumos_ops.airflow.hooks import pipeline_runtime
        from lumos_ops.airflow.night import resolve_night
        from lumos_ops.lumos.transfer import TransferConfig
        from lumos_ops.pipeline.retrain import RetrainConfig, retrain_candidate

        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        until = dt.date.fromisoformat(resolve_night(params.get("until"), dag_run.logical_date, dag_run.run_after))
        config = RetrainConfig(
            nights=int(params["nights"]), base_model=params.get("base_model") or None, n_sim=int(params["n_sim"]),
            transfer=TransferConfig(epochs=int(params["epochs"]), batch_size=500, lr=1e-4, lr_step=10, progress=False),
        )
        settings = PipelineSettings.from_env()
        with pipeline_runtime(settings) as (engine, store), tempfile.TemporaryDirectory(prefix="lumos-retrain-") as work:
            result = retrain_candidate(engine, store, settings.night, config, until=until, work_dir=work)
        print(f"candidate {result.model_version}: {result.n_pairs} pairs from {result.n_exposures} exposures, "
              f"D width {result.d_sigma68_before:.3f} -> {result.d_sigma68_after:.3f}; stored at {result.object_key}")
        return result.to_dict()

    schema >> retrain()


lumos_retrain()
