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
    assert worker_cache.lumos_method(path, device="cuda") is not first  # another device, another entry
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


def test_a_warmed_catalogue_is_what_a_task_reads_from_the_download_cache(s3_server, tmp_path):
    import boto3

    from lumos_ops.pipeline.storage import DownloadCache, open_store

    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket="warm")
    store = open_store("s3://warm/survey", endpoint_url=s3_server, max_attempts=2)
    store.put_bytes("catalog.csv", make_catalog(6).to_csv(index=False).encode())
    seconds = worker_cache.warm_catalog(store, "catalog.csv", tmp_path / "cache")
    assert seconds > 0 and worker_cache.stats()["catalogs"] == {"hits": 0, "misses": 1, "entries": 1}
    path, _, downloaded = DownloadCache(tmp_path / "cache").fetch(store, "catalog.csv")  # as measure_task does
    assert not downloaded and len(worker_cache.catalog(path)) == 6
    assert worker_cache.stats()["catalogs"] == {"hits": 1, "misses": 1, "entries": 1}
    store.put_bytes("catalog.csv", make_catalog(8).to_csv(index=False).encode())  # a new catalogue version
    path, _, downloaded = DownloadCache(tmp_path / "cache").fetch(store, "catalog.csv")
    assert downloaded and len(worker_cache.catalog(path)) == 8


_FORKED_WORKER = """
import os, sys
from lumos_ops.lumos import checkpoint
from lumos_ops.pipeline import worker_cache
from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure
from lumos_ops.io.exposure import read_exposure
from lumos_ops.measure import measure_exposure

timings = worker_cache.warm_up(load_model=True)
loads = []
real = checkpoint.load_checkpoint
checkpoint.load_checkpoint = lambda *a, **k: loads.append(a) or real(*a, **k)
catalog = random_catalog(4, shape=(160, 160), margin=40, seed=1)
exposure = read_exposure(synthetic_exposure(catalog, [300.0] * 4, shape=(160, 160), seed=2).write(sys.argv[1]))
statuses = []
for _ in range(2):  # two tasks forked from the warm process, as Airflow 3's Celery worker does
    pid = os.fork()
    if pid == 0:
        method = worker_cache.lumos_method(None)
        table = measure_exposure(exposure, catalog, methods=("lumos",), instances={"lumos": method})
        os._exit(0 if len(table) == 4 and not loads else 3)
    statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(sorted(timings), statuses)
"""


def test_children_forked_from_a_warm_process_measure_with_its_model(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FORKED_WORKER, str(tmp_path / "exposure.fits")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "['imports_s', 'model_s'] [0, 0]"
