"""The Airflow layer's tests import Airflow: its environment (tests/airflow_env.py: a temporary
AIRFLOW_HOME, the dags folder, dummy AWS credentials) is set here, before any test module imports it."""

import airflow_env  # noqa: F401
