"""Fixtures running ``lumos_nightly`` through Airflow: a temporary AIRFLOW_HOME with a SQLite
metadata database, the throwaway PostgreSQL for photometry, and moto's S3 server (a real HTTP
endpoint). Airflow reads its configuration when first imported, so the environment is set here,
before any test module imports it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_HOME = Path(tempfile.mkdtemp(prefix="lumos-airflow-home-"))
if "airflow" in sys.modules:
    raise RuntimeError("Airflow was imported before tests/dags/conftest.py could point AIRFLOW_HOME at a temp dir")
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),  # generated per session, never stored
    "LUMOS_CACHE_DIR": str(_HOME / "cache"),
    "LUMOS_CODE_VERSION": "lumos-ops test",
    "LUMOS_TASK_RETRIES": "0",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
})


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrated Airflow metadata database (SQLite) in the temporary AIRFLOW_HOME."""
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                            env=os.environ.copy(), check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return _HOME


@pytest.fixture(scope="session")
def postgres():
    """The throwaway PostgreSQL server."""
    from lumos_ops.pipeline.local_postgres import LocalPostgres

    server = LocalPostgres.start(database="photometry")
    yield server
    server.stop()


