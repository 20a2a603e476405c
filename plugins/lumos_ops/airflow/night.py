"""Which night a ``lumos_nightly`` run processes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from lumos_ops.pipeline.keys import validate_night

__all__ = ["resolve_night", "lumos_night"]


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
