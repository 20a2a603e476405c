"""Celery configuration of the Airflow workers: Airflow's default, plus a warm-up of every worker process.

Set ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=lumos_ops.airflow.celery_config.CELERY_CONFIG``
(``docker/compose.yaml`` does). Airflow 3 runs each task in a child forked from a Celery worker
process, so what that process imported and loaded is every task's for free: when a worker process
starts, it imports the measuring code (numpy, astropy, torch, the photometry) and, unless LUMOS
runs on GPU workers, loads the shipped LUMOS model on the CPU
(:func:`lumos_ops.pipeline.worker_cache.warm_up`); then it fetches and reads the survey catalogue
of the environment's store (``LUMOS_STORE_URL``, ``LUMOS_CATALOG_KEY``) into the same cache
(:func:`lumos_ops.pipeline.worker_cache.warm_catalog`) and, on CPU workers, loads the checkpoint
of the registry's production LUMOS version
(:func:`lumos_ops.pipeline.worker_cache.warm_production_model`). Importing this module (the
scheduler does too) only registers the signal handler.
"""

from __future__ import annotations

import logging
import os

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_process_init

__all__ = ["CELERY_CONFIG", "warm_worker_process"]

log = logging.getLogger(__name__)

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "worker_proc_alive_timeout": 120}
"""Airflow's Celery configuration; a new worker process may take up to 120 s (Celery's default: 4 s)
to report that it started, because it warms up first."""


@worker_process_init.connect
def warm_worker_process(**_: object) -> None:
    """Warm a new Celery worker process (``worker_process_init``); failures are logged, never raised."""
    from lumos_ops.pipeline.config import LUMOS_METHODS
    from lumos_ops.pipeline.worker_cache import warm_up

    methods = {m.strip() for m in os.environ.get("LUMOS_METHODS", "").split(",")}
    on_gpu = os.environ.get("LUMOS_GPU_INFERENCE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        timings = warm_up(load_model=bool(methods & LUMOS_METHODS) and not on_gpu)
    except Exception as exc:  # noqa: BLE001 - a cold worker still works
        log.warning("lumos worker warm-up failed (tasks will import and load what they need): %s", exc)
        return
    try:
        timings["catalog_s"] = _warm_catalog()
    except Exception as exc:  # noqa: BLE001 - e.g. no catalogue in the store yet: tasks read it themselves
        log.warning("lumos worker warm-up: catalogue not preloaded (tasks will read it): %s", exc)
    if bool(methods & LUMOS_METHODS) and not on_gpu:
        try:
            timings["production_model_s"] = _warm_production_model()
        except Exception as exc:  # noqa: BLE001 - e.g. no database yet: tasks load the model themselves
            log.warning("lumos worker warm-up: production model not preloaded (tasks will load it): %s", exc)
    log.info("lumos worker warm-up (pid %d): %s", os.getpid(),
                ", ".join(f"{k}={v:.2f}" for k, v in timings.items()))


def _warm_catalog() -> float:
    """Read the environment's survey catalogue into this process's cache (seconds)."""
    from lumos_ops.airflow.hooks import night_store
    from lumos_ops.pipeline.config import PipelineSettings
    from lumos_ops.pipeline.worker_cache import warm_catalog

    settings = PipelineSettings.from_env()
    store = night_store(settings.night, s3_conn_id=settings.s3_conn_id)
    return warm_catalog(store, settings.night.catalog_key, settings.night.resolved_cache_dir())


def _warm_production_model() -> float:
    """Load the LUMOS checkpoint the nightly run would use now (the registry's production version)
    into this process's cache, on the CPU (seconds)."""
    from lumos_ops.airflow.hooks import pipeline_runtime
    from lumos_ops.pipeline.config import PipelineSettings
    from lumos_ops.pipeline.worker_cache import warm_production_model

    settings = PipelineSettings.from_env()
    with pipeline_runtime(settings) as (engine, store):
        return warm_production_model(engine, store, settings.night)[1]
