"""``lumos_retrain``: monthly adaptation of LUMOS to the survey's own exposures, with its evidence.

check_schema -> retrain: the exposures measured in the last ``nights`` nights go through
``lumos_ops.lumos.adapt.adapt`` (the ``lumos adapt`` command): a seeded split by exposure, TEAHUPOO
stamps on the training exposures' backgrounds under the reference flux prior, fine-tuning of the
current production model (all layers, or the last with ``last_layer``; the eq. 11/12 pair term
where galaxies repeat), and injection-recovery on the held-out exposures for the base model, the
candidate and the classical methods. The candidate checkpoint and its ``injection_report.json``
go to object storage; the candidate is registered in ``lumos.model_versions`` (status
``candidate``) with the report attached, so that ``lumos model promote`` decides through the
registry's gates (``docs/registry.md``, ``docs/adapt.md``).

``LUMOS_RETRAIN_SCHEDULE`` sets the schedule (default 06:00 UTC on the 1st, ``none`` for manual
runs). The retrain task runs on the GPU queue and pool (CUDA when the worker has it). Nothing
downstream reads its XCom, and it is not retried (hours of training): a bad param, input or
checkpoint fails it with ``AirflowFailException`` and the error's one-line message.
"""

from __future__ import annotations

import datetime as dt
import tempfile

from airflow.sdk import Param, dag, get_current_context, task

from lumos_ops.airflow.operators import LumosSchemaOperator, fail_fast
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
                            description="Checkpoint path or shipped-model name to start from; empty: the production version"),
        "epochs": Param(14, type="integer", minimum=1, description="Fine-tuning epochs"),
        "n_stamps": Param(60000, type="integer", minimum=1, description="TEAHUPOO stamps on the training exposures"),
        "holdout": Param(0.25, type="number", exclusiveMinimum=0, exclusiveMaximum=1,
                         description="Fraction of each band's exposures held out for the injection"),
        "last_layer": Param(False, type="boolean", description="Fine-tune only the output layer"),
        "n_galaxies": Param(300, type="integer", minimum=1, description="Injected galaxies per population"),
        "psf_profile": Param("stars", type="string", enum=["stars", "kolmogorov", "moffat"],
                             description="PSF of the injected galaxies (docs/adapt.md): each exposure's PSF built from "
                                         "its stars, a kolmogorov at each exposure's FWHM, or the measurement's moffat"),
        "training_psf": Param("stars", type="string", enum=["stars", "model"],
                              description="PSF of the TEAHUPOO training galaxies (docs/adapt.md): each training "
                                          "exposure's PSF built from its stars, or the measurement's Moffat model"),
        "balanced_weights": Param(True, type="boolean",
                                  description="Weight the fine-tuning loss by g(matched-filter flux) / g(true flux) "
                                              "(docs/likelihood.md §15); false: the importance weights alone"),
        "shared_error_populations": Param(["sersic"], type="array", minItems=1,
                                          items={"type": "string", "enum": ["sersic", "knots", "blended"]},
                                          description="Injected populations the co-adds' shared-error term is "
                                                      "measured on (docs/likelihood.md §3); add knots to pool "
                                                      "knotty galaxies"),
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
        from lumos_ops.lumos.adapt import AdaptConfig
        from lumos_ops.pipeline.retrain import RetrainConfig, retrain_candidate

        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        with fail_fast():
            until = dt.date.fromisoformat(resolve_night(params.get("until"), dag_run.logical_date, dag_run.run_after))
            config = RetrainConfig(
                nights=int(params["nights"]), base_model=params.get("base_model") or None,
                adapt=AdaptConfig(n_stamps=int(params["n_stamps"]), epochs=int(params["epochs"]),
                                  holdout=float(params["holdout"]),
                                  train_layers="last" if params["last_layer"] else "all",
                                  n_galaxies=int(params["n_galaxies"]), psf_profile=params.get("psf_profile") or "stars",
                                  training_psf=params.get("training_psf") or "stars",
                                  balanced_weights=bool(params.get("balanced_weights", True)),
                                  shared_error_populations=tuple(params.get("shared_error_populations") or ("sersic",)),
                                  progress=False),
            )
            settings = PipelineSettings.from_env()
            with (pipeline_runtime(settings) as (engine, store),
                  tempfile.TemporaryDirectory(prefix="lumos-retrain-") as work):
                result = retrain_candidate(engine, store, settings.night, config, until=until, work_dir=work)
        print(f"candidate {result.model_version}: {result.n_train} training, {result.n_heldout} held-out exposures "
              f"({result.pairs}); targets met {result.targets_met}; report attached: {result.report_attached}; "
              f"stored at {result.object_key}")
        return result.to_dict()

    schema >> retrain()


lumos_retrain()
