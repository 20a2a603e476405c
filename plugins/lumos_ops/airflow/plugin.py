"""The Airflow plugin entry point of lumos-ops (``airflow plugins`` lists it).

Airflow 3 plugins no longer carry operators or hooks (DAGs import them from
``lumos_ops.airflow.operators`` / ``.hooks``); the plugin registers the ``lumos_night`` macro, the
night a run processes, so templated fields can use ``{{ macros.lumos_ops.lumos_night(dag_run) }}``.

Airflow finds the plugin through the ``airflow.plugins`` entry point of the installed distribution,
and only there: Airflow 3 does not merge two copies of a distribution's metadata on ``sys.path``
(e.g. a ``lumos_ops.egg-info`` in a directory on the path) nor this module found again in
``[core] plugins_folder``; either logs "Plugin 'lumos_ops' already registered, skipping" and records a
plugin import error. So never point ``plugins_folder`` at the repository's ``plugins/`` (the Docker
images keep the default, empty ``$AIRFLOW_HOME/plugins``); pyproject.toml keeps the editable install
from putting ``plugins/`` on ``sys.path``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from lumos_ops.airflow.night import lumos_night

__all__ = ["LumosOpsPlugin"]


class LumosOpsPlugin(AirflowPlugin):
    """Registers lumos-ops with Airflow."""

    name = "lumos_ops"
    macros = [lumos_night]
