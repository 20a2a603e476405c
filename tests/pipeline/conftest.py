"""Fixtures of the pipeline tests: the throwaway PostgreSQL (one server per session, one fresh
database per test) and moto's S3 server."""

from __future__ import annotations

import itertools
import logging

import pytest

_COUNTER = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    """The throwaway PostgreSQL server."""
    from lumos_ops.pipeline.local_postgres import LocalPostgres

    server = LocalPostgres.start(database="pipeline")
    yield server
    server.stop()


@pytest.fixture
def db_url(pg_server) -> str:
    """URL of a new empty database."""
    return pg_server.create_database(f"t{next(_COUNTER)}")


@pytest.fixture
def engine(db_url):
    """Engine on a new database with every migration applied."""
    from lumos_ops.pipeline.database import make_engine, upgrade

    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def s3_server(monkeypatch_session_env):
    """moto's S3 server (real HTTP) on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    from lumos_ops.pipeline.local_postgres import free_port

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def monkeypatch_session_env():
    """Dummy AWS credentials for moto (restored afterwards)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield
    mp.undo()
