"""The Airflow test environment: a temporary AIRFLOW_HOME with a SQLite metadata database, the dags
folder, dummy AWS credentials and a private LUMOS cache. Airflow reads its configuration when first
imported, so the conftest of each folder whose tests import Airflow (tests/airflow, tests/dags)
imports this module first; the first import sets the environment, later ones reuse it (``HOME``).
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

__all__ = ["HOME", "REPO"]

REPO = Path(__file__).resolve().parents[1]

HOME = Path(tempfile.mkdtemp(prefix="lumos-airflow-home-"))
if "airflow" in sys.modules:
    raise RuntimeError("Airflow was imported before tests/airflow_env.py could point AIRFLOW_HOME at a temp dir")
os.environ.update({
    "AIRFLOW_HOME": str(HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),  # generated per session, never stored
    "LUMOS_CACHE_DIR": str(HOME / "cache"),
    "LUMOS_CODE_VERSION": "lumos-ops test",
    "LUMOS_TASK_RETRIES": "0",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
})
