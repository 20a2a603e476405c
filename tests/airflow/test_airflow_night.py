"""Night resolution and the plugin's lumos_night macro (airflow/night.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from lumos_ops.exceptions import LumosValueError

pytestmark = pytest.mark.airflow


def test_night_resolution_and_plugin_macro():
    from lumos_ops.airflow.night import lumos_night, resolve_night
    from lumos_ops.airflow.plugin import LumosOpsPlugin

    run_at = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
    assert resolve_night(None, run_at) == "2026-11-20"
    assert resolve_night("2026-01-05", run_at) == "2026-01-05"
    with pytest.raises(LumosValueError):
        resolve_night("yesterday", run_at)
    assert LumosOpsPlugin.name == "lumos_ops" and lumos_night in LumosOpsPlugin.macros

    class Run:
        conf = {"night": "2026-02-03"}
        logical_date = run_at
        run_after = run_at

    assert lumos_night(Run()) == "2026-02-03"
