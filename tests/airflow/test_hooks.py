"""The LUMOS Airflow hooks (airflow/hooks.py): clients from connections, without network."""

from __future__ import annotations

import json

import pytest

from harness import env

pytestmark = pytest.mark.airflow


def test_hooks_build_clients_from_connections_without_network():
    from lumos_ops.airflow.hooks import LumosPostgresHook, LumosS3Hook

    conn = json.dumps({"conn_type": "postgres", "host": "db.example.org", "port": 5432, "login": "pipeline",
                       "password": "not-a-real-one", "schema": "lumos"})
    s3 = json.dumps({"conn_type": "aws", "login": "k", "password": "s",
                     "extra": {"endpoint_url": "http://minio:9000", "region_name": "us-east-1"}})
    with env(AIRFLOW_CONN_LUMOS_DB=conn, AIRFLOW_CONN_LUMOS_S3=s3):
        engine = LumosPostgresHook().get_lumos_engine()
        assert engine.url.drivername == "postgresql+psycopg2" and engine.url.host == "db.example.org"
        assert "not-a-real-one" not in repr(engine.url)
        engine.dispose()
        client = LumosS3Hook(max_attempts=4).get_conn()
        assert client.meta.endpoint_url == "http://minio:9000"
        assert client.meta.config.retries["total_max_attempts"] == 4
