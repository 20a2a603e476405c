#!/usr/bin/env bash
# Install everything (scripts/setup.sh), lint (ruff, config in pyproject.toml) and run the full test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check plugins dags tests benchmarks scripts
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=900 "$@"
