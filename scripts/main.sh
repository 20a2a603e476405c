#!/usr/bin/env bash
# Install everything (scripts/setup.sh) and run the main job on embedded defaults: `lumos demo`
# (throwaway PostgreSQL, local object store, a simulated night through the Airflow DAG, summary,
# an example SQL query). Extra arguments go to `lumos demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lumos demo "$@"
