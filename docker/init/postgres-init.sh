#!/usr/bin/env bash
# First start of the PostgreSQL container: Airflow's metadata database and the photometry database
# with its login users. Passwords come from the environment (docker/.env), never from this file.
# The NOLOGIN roles lumos_writer / lumos_reader are created by the lumos migrations; airflow-init
# grants them to lumos_pipeline / lumos_analyst after `lumos db upgrade`.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v owner_pw="$LUMOS_OWNER_PASSWORD" \
  -v pipeline_pw="$LUMOS_PIPELINE_PASSWORD" -v analyst_pw="$LUMOS_ANALYST_PASSWORD" <<'SQL'
CREATE USER airflow PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE USER lumos_owner PASSWORD :'owner_pw' CREATEROLE;
CREATE DATABASE lumos OWNER lumos_owner;
CREATE USER lumos_pipeline PASSWORD :'pipeline_pw';
CREATE USER lumos_analyst PASSWORD :'analyst_pw';
SQL
