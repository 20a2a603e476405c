"""Fixtures running ``lumos_nightly`` through Airflow: a temporary AIRFLOW_HOME with a SQLite
metadata database, the throwaway PostgreSQL for photometry, and moto's S3 server (a real HTTP
endpoint). Airflow reads its configuration when first imported, so the environment (tests/airflow_env.py)
is set here, before any test module imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import airflow_env
import pytest

HOME = airflow_env.HOME


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrated Airflow metadata database (SQLite) in the temporary AIRFLOW_HOME."""
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                            env=os.environ.copy(), check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return HOME


@pytest.fixture(scope="session")
def postgres():
    """The throwaway PostgreSQL server."""
    from lumos_ops.pipeline.local_postgres import LocalPostgres

    server = LocalPostgres.start(database="photometry")
    yield server
    server.stop()


