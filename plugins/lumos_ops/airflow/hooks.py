"""Airflow hooks: object storage and the photometry database, from Airflow Connections.

They add one domain method each to the providers' hooks, which own the Connections (credentials
never leave them): :meth:`LumosS3Hook.object_store` and :meth:`LumosPostgresHook.get_lumos_engine`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.postgres.hooks.postgres import PostgresHook

from lumos_ops.pipeline.config import NightConfig, PipelineSettings
from lumos_ops.pipeline.database import make_engine
from lumos_ops.pipeline.night import open_night_store
from lumos_ops.pipeline.storage import ObjectStore, S3Settings

__all__ = ["LumosS3Hook", "LumosPostgresHook", "night_store", "pipeline_runtime"]


class LumosS3Hook(S3Hook):
    """``S3Hook`` whose client retries with back-off (botocore ``Config``) and serves the pipeline.

    Parameters
    ----------
    aws_conn_id : str
        Airflow Connection of type ``aws``; its extra ``endpoint_url`` selects MinIO/Ceph.
    max_attempts : int, keyword-only
        Attempts per request (exponential back-off between them, botocore ``standard`` mode).
    """

    def __init__(self, aws_conn_id: str = "lumos_s3", *, max_attempts: int = 5, **kwargs: Any) -> None:
        if "config" not in kwargs:
            kwargs["config"] = S3Settings(bucket="unused", max_attempts=max_attempts).botocore_config()
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)

    def object_store(self, config: NightConfig) -> ObjectStore:
        """The night's store (``config.store_url`` must be ``s3://bucket/prefix``) over this hook's client."""
        return open_night_store(config, client=self.get_conn())


class LumosPostgresHook(PostgresHook):
    """``PostgresHook`` that hands out the SQLAlchemy engine used by ``lumos_ops.pipeline``."""

    def __init__(self, postgres_conn_id: str = "lumos_db", **kwargs: Any) -> None:
        super().__init__(postgres_conn_id=postgres_conn_id, **kwargs)

    def get_lumos_engine(self, **kwargs: Any) -> sa.Engine:
        """Engine (psycopg2 driver, small pool) for the Connection; dispose of it after use."""
        kwargs.setdefault("pool_size", 2)
        return make_engine(self.sqlalchemy_url, **kwargs)


def night_store(config: NightConfig, *, s3_conn_id: str) -> ObjectStore:
    """The store of ``config``: through :class:`LumosS3Hook` for ``s3://`` URLs, a local directory otherwise."""
    if config.store_url.startswith("s3://"):
        return LumosS3Hook(aws_conn_id=s3_conn_id).object_store(config)
    return open_night_store(config)


@contextlib.contextmanager
def pipeline_runtime(settings: PipelineSettings) -> Iterator[tuple[sa.Engine, ObjectStore]]:
    """The photometry database engine and the object store of a DAG task; the engine is disposed of
    when the block ends, however it ends.

    Examples
    --------
    >>> with pipeline_runtime(PipelineSettings.from_env()) as (engine, store):  # doctest: +SKIP
    ...     plan_night(engine, store, settings.night, night="2026-11-20", dag_run_id="manual")
    """
    engine = LumosPostgresHook(postgres_conn_id=settings.db_conn_id).get_lumos_engine()
    try:
        yield engine, night_store(settings.night, s3_conn_id=settings.s3_conn_id)
    finally:
        engine.dispose()
