"""Which night a ``lumos_nightly`` run processes, and the body of its mapped measuring tasks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from lumos_ops.pipeline.keys import validate_night

__all__ = ["resolve_night", "lumos_night", "process_task"]


def resolve_night(param: str | None, logical_date: dt.datetime | None, run_after: dt.datetime | None = None) -> str:
    """The night (``YYYY-MM-DD``) of a run.

    The ``night`` param wins (manual runs, re-processing); otherwise the night that ended before
    the run: the calendar day before the run's logical date (or ``run_after`` for runs without a
    logical date), so the 10:00 UTC run of 2026-11-21 processes night 2026-11-20.
    """
    if param:
        return validate_night(param)
    when = logical_date or run_after or dt.datetime.now(dt.UTC)
    return (when.date() - dt.timedelta(days=1)).isoformat()


def lumos_night(dag_run: Any) -> str:
    """Template macro: the night processed by ``dag_run``."""
    conf = getattr(dag_run, "conf", None) or {}
    return resolve_night(conf.get("night"), getattr(dag_run, "logical_date", None), getattr(dag_run, "run_after", None))


def process_task(exposures: list[dict], *, step: str | None) -> list[dict]:
    """Body of ``process`` and ``lumos``: :func:`lumos_ops.pipeline.night.process_chunk` of one chunk
    (``ExposureTask`` dicts from ``plan``) with ``step`` (None: every method; ``"classical"``;
    ``"lumos"``); input errors fail the task without retries (``AirflowFailException``)."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from lumos_ops.airflow.hooks import pipeline_runtime
    from lumos_ops.exceptions import BadInputError
    from lumos_ops.pipeline.config import PipelineSettings
    from lumos_ops.pipeline.night import process_chunk
    from lumos_ops.pipeline.plan import ExposureTask, chunk_label

    items = [ExposureTask.from_dict(e) for e in exposures]
    get_current_context()["exposure_label"] = chunk_label(items)
    settings = PipelineSettings.from_env()
    with pipeline_runtime(settings) as (engine, store):
        try:
            return [r.to_dict() for r in process_chunk(engine, store, settings.night, items, step=step)]
        except BadInputError as exc:
            raise AirflowFailException(str(exc)) from exc
