"""Paths of the survey tests: the example SDSS survey file and the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SDSS_SURVEY = REPO / "examples" / "surveys" / "sdss-gri.json"
REALDATA = Path(os.environ.get("LUMOS_REALDATA", REPO.parent / "shared" / "realdata"))


def realdata_frame(name: str) -> Path:
    """A file of the real-data folder; skips the test when it is missing."""
    path = REALDATA / name
    if not path.is_file():
        pytest.skip(f"real data {path} not available")
    return path
