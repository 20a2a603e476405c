"""The per-process cache of LUMOS models and catalogues (``lumos_ops.pipeline.worker_cache``)."""

from __future__ import annotations

import os
import shutil

import pytest

from lumos_ops.lumos.checkpoint import resolve_model_path
from lumos_ops.pipeline import worker_cache

from nightdata import make_catalog


@pytest.fixture(autouse=True)
def empty_cache():
    worker_cache.clear()
    yield
    worker_cache.clear()


def test_a_model_is_reused_until_its_file_changes(tmp_path):
    path = tmp_path / "model.pt"
    shutil.copyfile(resolve_model_path(None), path)
    first = worker_cache.lumos_method(path)
    assert worker_cache.lumos_method(str(path)) is first
    assert worker_cache.lumos_method(path, device="cpu") is not first  # another device, another entry
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))  # replaced in place
    assert worker_cache.lumos_method(path) is not first
    assert worker_cache.stats()["models"] == {"hits": 1, "misses": 3, "entries": 2}  # the oldest was dropped


def test_the_shipped_default_model_is_one_entry():
    assert worker_cache.lumos_method(None) is worker_cache.lumos_method(resolve_model_path(None))


def test_a_catalogue_is_read_once_per_content(tmp_path):
    path = tmp_path / "catalog.csv"
    make_catalog(5).to_csv(path, index=False)
    first = worker_cache.catalog(path)
    assert worker_cache.catalog(path) is first and len(first) == 5
    make_catalog(7).to_csv(path, index=False)
    assert len(worker_cache.catalog(path)) == 7
