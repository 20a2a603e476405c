#!/usr/bin/env bash
# Install everything (scripts/setup.sh) and run the full test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=900 "$@"
