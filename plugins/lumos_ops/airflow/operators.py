"""Airflow operators of lumos-ops (thin: the work is in ``lumos_ops.pipeline``).

Importing this module imports nothing heavy (the hooks, SQLAlchemy and the pipeline load when a
task runs), so that DAG files parse fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

__all__ = ["LumosSchemaOperator"]


class LumosSchemaOperator(BaseOperator):
    """Check (or, with ``upgrade=True``, bring up to date) the photometry database schema.

    Parameters
    ----------
    conn_id : str
        Airflow Connection of the database (type ``postgres``).
    upgrade : bool, keyword-only
        Apply missing migrations instead of failing on them.
    """

    template_fields: Sequence[str] = ("conn_id",)

    def __init__(self, *, conn_id: str = "lumos_db", upgrade: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.upgrade = upgrade

    def execute(self, context: Any) -> int:
        from lumos_ops.airflow.hooks import LumosPostgresHook
        from lumos_ops.pipeline.database import check_schema, upgrade

        engine = LumosPostgresHook(postgres_conn_id=self.conn_id).get_lumos_engine()
        try:
            if self.upgrade:
                self.log.info("applied migrations: %s", upgrade(engine) or "none (schema current)")
            version = check_schema(engine)
        finally:
            engine.dispose()
        self.log.info("photometry schema at version %d", version)
        return version
