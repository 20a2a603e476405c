"""``lumos measure`` with a classical method runs without importing torch, nor the modules its
start-up defers to where they are used or never needs (``benchmarks/README.md``,
``bench_startup.py``); with LUMOS it imports torch and still none of the others."""

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
    "psycopg2",
    "requests",
    "yaml",
    "PIL",
    "jinja2",
    "pyarrow.parquet",  # only for a .parquet catalogue or output
    "scipy.optimize",  # the scipy the path needs: ndimage, special, fft
    "scipy.stats",
    "scipy.interpolate",
    "scipy.signal",
    "scipy.sparse",
    "scipy.linalg",
    "astropy.table",  # the astropy the path needs: io.fits (and the units it imports)
    "astropy.time",
    "lumos_ops.pipeline",
    "lumos_ops.sim",
    "lumos_ops.evaluation",
    "lumos_ops.photoz",
    "lumos_ops.lumos.checkpoint",  # LUMOS only
)
"""Modules ``lumos measure --method aperture|optimal|modelfit --no-progress`` does not import on an
exposure without a WCS and an x/y catalogue."""

_LUMOS_IMPORTS = ("tqdm", "lumos_ops.lumos.checkpoint")
"""Modules of :data:`_DEFERRED` that ``--method lumos`` imports (torch imports tqdm from ``torch.hub``)."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("measure-imports")
    catalog = random_catalog(3, shape=(200, 200), margin=40, seed=1)
    image = synthetic_exposure(catalog, [200.0, 100.0, 50.0], shape=(200, 200), seed=2).write(work / "exposure.fits")
    path = work / "catalog.csv"
    catalog.to_csv(path, index=False)
    return Path(image), path


def _measure(method: str, watched: tuple[str, ...], inputs: tuple[Path, Path], out: Path) -> str:
    """stdout of ``lumos measure --method METHOD --no-progress`` on ``inputs`` in a fresh process,
    which reports whether torch and which of ``watched`` it imported."""
    image, catalog = inputs
    run = subprocess.run([sys.executable, "-c", _RUN, ",".join(watched), "measure", str(image), str(catalog),
                          "--method", method, "--out", str(out), "--no-progress"], capture_output=True, text=True,
                         check=True)
    table = pd.read_csv(out)
    assert len(table) == 3 and table["flux"].notna().all()
    return run.stdout


@pytest.mark.parametrize("method", ["aperture", "optimal", "modelfit"])
def test_classical_methods_import_neither_torch_nor_deferred_modules(method: str, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    stdout = _measure(method, _DEFERRED, inputs, tmp_path / f"{method}.csv")
    assert "TORCH False" in stdout
    assert "DEFERRED none" in stdout


def test_lumos_imports_torch_and_no_other_deferred_module(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    watched = tuple(name for name in _DEFERRED if name not in _LUMOS_IMPORTS)
    stdout = _measure("lumos", watched, inputs, tmp_path / "lumos.csv")
    assert "TORCH True" in stdout
    assert "DEFERRED none" in stdout
