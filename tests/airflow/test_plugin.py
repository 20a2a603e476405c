"""The Airflow plugin (airflow/plugin.py) as Airflow's plugins manager loads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]


_LOAD_PLUGINS = """
import json
from importlib import metadata

from airflow import plugins_manager

plugins = plugins_manager.get_plugin_info(attrs_to_dump=["source"])  # what `airflow plugins` prints
print("RESULT " + json.dumps({
    "plugins": [p["name"] for p in plugins], "sources": [str(p["source"]) for p in plugins],
    "errors": plugins_manager.get_import_errors(),
    "dists": [str(getattr(d, "_path", d)) for d in metadata.distributions() if d.metadata["Name"] == "lumos-ops"],
}))
"""


def test_plugin_manager_registers_lumos_ops_once():
    """A fresh process (as each Airflow component is) loads the plugin once: no "already registered"
    warning and no plugin import error, i.e. one copy of the lumos-ops metadata on ``sys.path``."""
    done = subprocess.run([sys.executable, "-c", _LOAD_PLUGINS], capture_output=True, text=True, cwd=REPO,
                          timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert len(result["dists"]) == 1, (
        f"lumos-ops metadata found {len(result['dists'])} times on sys.path: {result['dists']}; delete the "
        "stale copies (e.g. plugins/lumos_ops.egg-info) and reinstall with scripts/setup.sh"
    )
    assert result["plugins"].count("lumos_ops") == 1, result
    assert "lumos-ops==" in result["sources"][result["plugins"].index("lumos_ops")]  # from the entry point
    assert "already registered" not in output and result["errors"] == {}, (output[-2000:], result["errors"])
