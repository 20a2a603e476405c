"""``lumos measure`` with a classical method runs without importing torch, nor the modules its
start-up defers to where they are used (``benchmarks/README.md``, ``bench_startup.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure

_RUN = """
import runpy, sys
watched = sys.argv[1].split(",")
sys.argv = ["lumos", *sys.argv[2:]]
try:
    runpy.run_module("lumos_ops.cli", run_name="__main__")
except SystemExit as exc:
    if exc.code:
        raise
print("TORCH", "torch" in sys.modules)
print("DEFERRED", ",".join(name for name in watched if name in sys.modules) or "none")
"""

_DEFERRED = (
    "astropy.wcs",  # only for a header with CTYPE1/CTYPE2 (it imports astropy.coordinates)
    "astropy.coordinates",
    "astropy.stats",  # only the historical median_clip background
    "matplotlib",
    "sqlalchemy",
    "tqdm",  # only for the progress bar
    "airflow",
    "boto3",
)
"""Modules ``lumos measure --method aperture|optimal|modelfit --no-progress`` does not import on an
exposure without a WCS and an x/y catalogue."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("measure-imports")
    catalog = random_catalog(3, shape=(200, 200), margin=40, seed=1)
    image = synthetic_exposure(catalog, [200.0, 100.0, 50.0], shape=(200, 200), seed=2).write(work / "exposure.fits")
    path = work / "catalog.csv"
    catalog.to_csv(path, index=False)
    return Path(image), path


@pytest.mark.parametrize("method", ["aperture", "optimal", "modelfit"])
def test_classical_methods_import_neither_torch_nor_deferred_modules(method: str, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    image, catalog = inputs
    out = tmp_path / f"{method}.csv"
    run = subprocess.run([sys.executable, "-c", _RUN, ",".join(_DEFERRED), "measure", str(image), str(catalog),
                          "--method", method, "--out", str(out), "--no-progress"], capture_output=True, text=True,
                         check=True)
    assert "TORCH False" in run.stdout
    assert "DEFERRED none" in run.stdout
    table = pd.read_csv(out)
    assert len(table) == 3 and table["flux"].notna().all()
