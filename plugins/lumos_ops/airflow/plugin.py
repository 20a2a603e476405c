"""The Airflow plugin entry point of lumos-ops (``airflow plugins`` lists it).

Airflow 3 plugins no longer carry operators or hooks (DAGs import them from
``lumos_ops.airflow.operators`` / ``.hooks``); the plugin registers the ``lumos_night`` macro, the
night a run processes, so templated fields can use ``{{ macros.lumos_ops.lumos_night(dag_run) }}``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from lumos_ops.airflow.night import lumos_night

__all__ = ["LumosOpsPlugin"]


class LumosOpsPlugin(AirflowPlugin):
    """Registers lumos-ops with Airflow."""

    name = "lumos_ops"
    macros = [lumos_night]
