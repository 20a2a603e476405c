#!/usr/bin/env bash
# Create .venv and install lumos-ops with every pinned dependency (runtime, Airflow, tests).
# Idempotent: re-installs only when requirements.txt or pyproject.toml changed.
# The interpreter: $LUMOS_PYTHON, else python3.11, else python3 (Python 3.11 is required).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${LUMOS_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
"$PYTHON" - <<'PY' || { echo "setup: Python 3.11 is required (torch 2.13 CPU wheel)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY

if [ ! -x /usr/lib/postgresql/15/bin/initdb ] && [ ! -x "$(command -v pg_ctl 2>/dev/null || echo /nonexistent)" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing the PostgreSQL server (needed by the pipeline tests and the demo)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: PostgreSQL server binaries not found; install postgresql (15) first" >&2
    exit 1
  fi
fi

if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing the Redis server (Celery broker of the CeleryExecutor test and deployments)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "setup: redis-server not found; install Redis (Debian package redis-server) first" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.lumos-installed
want="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing pinned dependencies into .venv (a few minutes on a fresh machine)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi
echo "setup: .venv ready ($(.venv/bin/python -c 'import lumos_ops, torch; print("lumos-ops", lumos_ops.__version__, "torch", torch.__version__)'))"
