"""Fixtures of the pipeline tests: the throwaway PostgreSQL (one server per session, one fresh
database per test) and moto's S3 server."""

from __future__ import annotations

import itertools

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


