"""Fault injection: every failure of the night pipeline ends with zero rows lost or duplicated and
a state that says what happened (``docs/faults.md`` lists the scenarios and what each asserts).

Real services throughout: a throwaway PostgreSQL (stopped and restarted for the database
outage), moto's S3 server (stopped and restarted for the object-store outages) and a worker
process killed with SIGKILL. The pipeline steps are the functions the ``lumos_nightly`` tasks
call (``plan_night``, ``process_exposure``, ``finish_night``); a test calling ``process_exposure``
again plays Airflow's retry or an operator clearing the task.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from lumos_ops.exceptions import DatabaseError, StorageError
from lumos_ops.pipeline import night as night_module
from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.database import make_engine, upgrade
from lumos_ops.pipeline.night import finish_night, plan_night, process_exposure, run_night
from lumos_ops.pipeline.report import failure_message
from lumos_ops.pipeline.storage import LocalObjectStore, open_store
from lumos_ops.pipeline.writer import INTERRUPTED_ERROR

from nightdata import corrupt, lumos_night, make_catalog, night_state, write_catalog, write_night

pytestmark = pytest.mark.postgres

NIGHT = "2026-11-20"
N_SOURCES = 8
N_KEYS = 4  # 2 exposures x 2 CCDs; CCD c is band NB455 + 10 c, so each band has 2 exposures
N_ROWS = N_SOURCES * N_KEYS


def _scalar(engine: sa.Engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def state(engine: sa.Engine) -> dict[str, object]:
    """The operator's checks of :data:`HEALTHY` (``nightdata.night_state``)."""
    return night_state(engine, HEALTHY)


HEALTHY = {"rows": N_ROWS, "duplicates": 0, "status": {"done": N_KEYS}, "rows_state": {"current": N_KEYS},
           "coadds": 2 * N_SOURCES, "coadds_partial": 0, "coadds_stale": 0, "coadd_n_used": N_ROWS, "open_runs": 0}


class RowMonitor:
    """Polls the number of measurements in a thread; ``minimum`` is the lowest count seen."""

    def __init__(self, url: str, interval_s: float = 0.05) -> None:
        self.engine = make_engine(url, pool_size=1)
        self.minimum: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            try:
                n = _scalar(self.engine, "SELECT count(*) FROM lumos.measurements")
            except sa.exc.DBAPIError:
                n = None
            if n is not None:
                self.minimum = n if self.minimum is None else min(self.minimum, n)
            time.sleep(interval_s)

    def __enter__(self) -> RowMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.engine.dispose()


@pytest.fixture
def local_night(tmp_path):
    """A night of 4 CCD images and the catalogue in a directory store."""
    store = LocalObjectStore(tmp_path / "store")
    catalog = make_catalog(N_SOURCES)
    write_catalog(store.put_bytes, catalog)
    keys = write_night(store.put_bytes, NIGHT, n_exposures=2, n_ccds=2, catalog=catalog)
    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    return store, keys, config


# --------------------------------------------------------------------------- object store outages


class S3Outage:
    """moto's S3 server on its own port; :meth:`down` stops it, :meth:`up` restarts it on the same
    port (moto keeps the buckets in memory, so the objects survive, as on a real outage)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        from lumos_ops.pipeline.local_postgres import free_port

        self._cls = ThreadedMotoServer
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.up()

    def up(self) -> None:
        for _ in range(50):
            try:
                self.server = self._cls(ip_address="127.0.0.1", port=self.port, verbose=False)
                self.server.start()
                return
            except OSError:  # the port is released a moment after the stop
                time.sleep(0.1)
        raise RuntimeError(f"moto could not restart on port {self.port}")

    def down(self) -> None:
        self.server.stop()


@pytest.fixture
def s3_night(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    outage = S3Outage()
    client = boto3.client("s3", endpoint_url=outage.endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="survey")
    catalog = make_catalog(N_SOURCES)

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket="survey", Key=f"paus/{key}", Body=data)

    write_catalog(put, catalog)
    keys = write_night(put, NIGHT, n_exposures=2, n_ccds=2, catalog=catalog)
    config = NightConfig(store_url="s3://survey/paus", endpoint_url=outage.endpoint, region="us-east-1",
                         cache_dir=str(tmp_path / "cache"))
    store = open_store(config.store_url, endpoint_url=outage.endpoint, region="us-east-1", max_attempts=2)
    yield store, keys, config, outage
    outage.server.stop()


def _fresh_cache(config: NightConfig, tmp_path: Path, name: str) -> NightConfig:
    return NightConfig(**{**config.__dict__, "cache_dir": str(tmp_path / name)})


def test_s3_outage_within_the_retries_loses_no_row(engine, db_url, s3_night, tmp_path):
    store, keys, config, outage = s3_night
    run_night(engine, store, config, night=NIGHT, dag_run_id="first")
    assert state(engine) == HEALTHY
    config = _fresh_cache(config, tmp_path, "cache2")  # a new worker: nothing cached
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="second")
    with RowMonitor(db_url) as monitor:
        outage.down()
        for task in plan.tasks:  # first attempts fail while the store is down
            with pytest.raises(StorageError):
                process_exposure(engine, store, config, task)
        during = state(engine)
        outage.up()
        for task in plan.tasks:  # Airflow's retries, once the store is back
            process_exposure(engine, store, config, task)
        finish_night(engine, store, config, night=NIGHT, run_id=plan.run_id)
    assert monitor.minimum == N_ROWS
    assert during["rows"] == N_ROWS and during["status"] == {"failed": N_KEYS}
    assert during["rows_state"] == {"stale": N_KEYS}
    assert state(engine) == HEALTHY
    assert failure_message(engine, NIGHT) is None


def test_s3_outage_longer_than_the_retries_keeps_rows_and_says_so(engine, db_url, s3_night, tmp_path):
    store, keys, config, outage = s3_night
    run_night(engine, store, config, night=NIGHT, dag_run_id="first")
    config = _fresh_cache(config, tmp_path, "cache2")
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="second")
    with RowMonitor(db_url) as monitor:
        outage.down()
        for task in plan.tasks:
            with pytest.raises(StorageError):
                process_exposure(engine, store, config, task)
        with pytest.raises(StorageError):  # the report cannot be stored ...
            finish_night(engine, store, config, night=NIGHT, run_id=plan.run_id)
    after = state(engine)
    assert monitor.minimum == N_ROWS
    # ... but the database says what happened: rows kept and stale, co-adds partial and counting them,
    # the run closed as failed
    assert after["rows"] == N_ROWS and after["duplicates"] == 0
    assert after["status"] == {"failed": N_KEYS} and after["rows_state"] == {"stale": N_KEYS}
    assert after["coadds_partial"] == after["coadds_stale"] == 2 * N_SOURCES
    assert _scalar(engine, "SELECT min(n_stale) FROM lumos.coadds") == 2
    assert _scalar(engine, "SELECT status FROM lumos.pipeline_runs WHERE run_id = :r", r=plan.run_id) == "failed"
    message = failure_message(engine, NIGHT)
    assert "4 of 4 exposures not done" in message and "stale" in message and keys[0] in message

    outage.up()
    for task in plan.tasks:  # the operator clears the failed process tasks only
        process_exposure(engine, store, config, task)
    assert state(engine) == HEALTHY
    assert _scalar(engine, "SELECT status FROM lumos.pipeline_runs WHERE run_id = :r", r=plan.run_id) == "success"
    summary = json.loads(store.get_bytes(f"reports/{NIGHT}/summary.json"))
    assert (summary["status"], summary["n_done"], summary["n_stale"]) == ("success", N_KEYS, 0)


# --------------------------------------------------------------------------- database outage


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test only (it is stopped and restarted)."""
    from lumos_ops.pipeline.local_postgres import LocalPostgres

    server = LocalPostgres.start(database="faults")
    yield server
    server.stop()


def _pg_ctl(server, action: str) -> None:
    argv = [str(server.pg_bin / "pg_ctl"), "-D", str(server.data_dir), "-l", str(server.log_file), "-w"]
    if action == "stop":
        argv += ["-m", "fast", "stop"]
    else:
        argv += ["-o", f"-c listen_addresses=127.0.0.1 -c port={server.port} -c unix_socket_directories={server.root}",
                 "start"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def test_database_stopped_mid_write_then_restarted(own_postgres, local_night, monkeypatch):
    store, keys, config = local_night
    engine = make_engine(own_postgres.url)
    upgrade(engine)
    run_night(engine, store, config, night=NIGHT, dag_run_id="first")
    assert state(engine) == HEALTHY
    monkeypatch.setattr(night_module, "_record_failure",
                        functools.partial(night_module._record_failure, attempts=2, wait_s=0.05))
    from lumos_ops.measure import measure_exposure

    def measure_then_stop_database(*args, **kwargs):
        table = measure_exposure(*args, **kwargs)
        _pg_ctl(own_postgres, "stop")
        return table

    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="second")
    with pytest.raises(DatabaseError, match="rolled back|cannot connect|connection"):
        process_exposure(engine, store, config, plan.tasks[0], measurer=measure_then_stop_database)
    _pg_ctl(own_postgres, "start")
    # the write rolled back and recording the failure could not reach the database: still 'running'
    assert _scalar(engine, "SELECT status FROM lumos.exposures WHERE object_key = :k", k=keys[0]) == "running"
    for task in plan.tasks[1:]:
        process_exposure(engine, store, config, task)
    report = finish_night(engine, store, config, night=NIGHT, run_id=plan.run_id)
    after = state(engine)
    assert after["rows"] == N_ROWS and after["duplicates"] == 0
    assert after["status"] == {"done": N_KEYS - 1, "failed": 1} and after["rows_state"]["stale"] == 1
    assert _scalar(engine, "SELECT error FROM lumos.exposures WHERE object_key = :k", k=keys[0]) == INTERRUPTED_ERROR
    assert report.status == "partial" and report.n_stale == 1 and after["coadds_partial"] == N_SOURCES
    process_exposure(engine, store, config, plan.tasks[0])  # cleared by the operator
    assert state(engine) == HEALTHY
    engine.dispose()


# --------------------------------------------------------------------------- worker killed


_WORKER = """
import json, sys, time
from pathlib import Path
from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.database import make_engine
from lumos_ops.pipeline.night import process_exposure
from lumos_ops.pipeline.plan import ExposureTask
from lumos_ops.pipeline.storage import LocalObjectStore

url, root, cache, task, ready = sys.argv[1:]

def hang(*args, **kwargs):
    Path(ready).write_text("measuring")
    time.sleep(120)

engine = make_engine(url)
process_exposure(engine, LocalObjectStore(root), NightConfig(store_url=root, cache_dir=cache),
                 ExposureTask.from_dict(json.loads(task)), measurer=hang)
"""


def test_worker_killed_mid_task_is_recovered(engine, db_url, local_night, tmp_path):
    store, keys, config = local_night
    run_night(engine, store, config, night=NIGHT, dag_run_id="first")
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="second")
    ready = tmp_path / "ready"
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, db_url, str(store.root), config.cache_dir,
                               json.dumps(plan.tasks[1].to_dict()), str(ready)])
    try:
        for _ in range(600):
            if ready.exists() or worker.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), "the worker did not start measuring"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    host_pid = _scalar(engine, "SELECT worker FROM lumos.exposures WHERE object_key = :k", k=keys[1])
    assert host_pid.endswith(f":{worker.pid}")
    assert _scalar(engine, "SELECT status FROM lumos.exposures WHERE object_key = :k", k=keys[1]) == "running"
    for task in (plan.tasks[0], *plan.tasks[2:]):
        process_exposure(engine, store, config, task)
    report = finish_night(engine, store, config, night=NIGHT, run_id=plan.run_id)
    after = state(engine)
    assert after["rows"] == N_ROWS and after["status"] == {"done": N_KEYS - 1, "failed": 1}
    assert report.status == "partial" and report.failures[0][0] == keys[1]
    process_exposure(engine, store, config, plan.tasks[1])
    assert state(engine) == HEALTHY


# --------------------------------------------------------------------------- bad files


def test_corrupt_truncated_and_missing_files_keep_the_rows_they_had(engine, local_night):
    store, keys, config = local_night
    run_night(engine, store, config, night=NIGHT, dag_run_id="first")
    good = {k: store.get_bytes(k) for k in keys}
    store.put_bytes(keys[0], corrupt(good[keys[0]], "truncated"))
    store.put_bytes(keys[1], corrupt(good[keys[1]], "corrupt"))
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="second")
    (store.root / keys[2]).unlink()  # gone between planning and processing
    for task in plan.tasks:
        try:
            process_exposure(engine, store, config, task)
        except Exception:  # noqa: BLE001 - recorded in the database
            pass
    report = finish_night(engine, store, config, night=NIGHT, run_id=plan.run_id)
    after = state(engine)
    assert after["rows"] == N_ROWS and after["duplicates"] == 0
    assert after["status"] == {"failed": 3, "done": 1} and after["rows_state"] == {"stale": 3, "current": 1}
    assert after["coadds_partial"] == 2 * N_SOURCES and after["coadd_n_used"] == N_ROWS
    assert (report.status, report.n_stale, report.n_stale_measurements) == ("partial", 3, 3 * N_SOURCES)
    errors = dict(report.failures)
    assert "truncated" in errors[keys[0]] and "FITS" in errors[keys[1]] and "no object" in errors[keys[2]]
    for key, data in good.items():
        store.put_bytes(key, data)
    run_night(engine, store, config, night=NIGHT, dag_run_id="third")
    assert state(engine) == HEALTHY


# --------------------------------------------------------------------------- concurrency


def test_the_same_night_triggered_twice_at_once(engine, db_url, local_night):
    store, keys, config = local_night
    errors: list[BaseException] = []

    def run(name: str) -> None:
        own = make_engine(db_url)
        try:
            run_night(own, store, config, night=NIGHT, dag_run_id=name)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=run, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert errors == []
    assert state(engine) == HEALTHY
    assert _scalar(engine, "SELECT count(*) FROM lumos.pipeline_runs WHERE status = 'success'") == 2
    # they took turns: the second planned the night after the first had closed it
    assert _scalar(engine, "SELECT max(started_at) >= min(finished_at) FROM lumos.pipeline_runs") is True


# --------------------------------------------------------------------------- least privilege


def test_writer_role_runs_the_night_but_cannot_touch_the_registry(pg_server, engine, db_url, local_night):
    store, keys, config = local_night
    with engine.begin() as conn:
        conn.execute(sa.text("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'night_worker') "
                             "THEN CREATE ROLE night_worker LOGIN IN ROLE lumos_writer; END IF; END $$"))
    writer = make_engine(sa.make_url(db_url).set(username="night_worker"))
    report = run_night(writer, store, config, night=NIGHT, dag_run_id="as-writer")
    assert report.status == "success" and state(engine) == HEALTHY
    for sql in ("UPDATE lumos.model_versions SET checksum = 'x'", "DELETE FROM lumos.model_versions",
                "DELETE FROM lumos.exposures", "DELETE FROM lumos.coadds", "DELETE FROM lumos.pipeline_runs",
                "DELETE FROM lumos.exposure_rows", "UPDATE lumos.exposure_rows SET status = 'done'",
                "UPDATE lumos.photoz_checks SET sigma68 = 0", "DELETE FROM lumos.photoz_checks"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), writer.begin() as conn:
            conn.execute(sa.text(sql))
    writer.dispose()
    assert state(engine) == HEALTHY


# --------------------------------------------------------------------------- chunked mapped tasks


def test_a_retried_chunk_measures_only_what_is_not_done(engine, local_night):
    from lumos_ops.exceptions import BadInputError, LumosError
    from lumos_ops.pipeline.night import process_chunk

    store, keys, config = local_night
    good = store.get_bytes(keys[1])
    store.put_bytes(keys[1], corrupt(good, "truncated"))
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="chunked")
    (chunk,) = plan.chunks(1)
    with pytest.raises(BadInputError, match=r"1 of 4 exposures failed: .*exp0005000_ccd02.*truncated"):
        process_chunk(engine, store, config, chunk)  # input errors only: no retry would help
    (store.root / keys[1]).unlink()
    with pytest.raises(LumosError, match="a retry measures only the exposures not done") as info:
        process_chunk(engine, store, config, chunk)  # a vanished object may come back: retryable
    assert not isinstance(info.value, BadInputError)
    store.put_bytes(keys[1], good)
    results = process_chunk(engine, store, config, chunk)
    assert [r.status for r in results] == ["skipped", "done", "skipped", "skipped"]
    finish_night(engine, store, config, night=NIGHT, run_id=plan.run_id)
    assert state(engine)["rows"] == N_ROWS and state(engine)["status"] == {"done": N_KEYS}


# --------------------------------------------------------------------------- bad pixels in one exposure


def test_a_cosmic_ray_on_one_exposure_is_discounted_by_the_lumos_coadd(engine, tmp_path):
    """Five exposures of six sources; in the third, a cosmic ray (2 x 2 px, 200 ADU) on the first
    source. LUMOS reads it 7 sigma high there; the night's co-add (a PAUS survey file with
    coadd_outlier_fraction 0.01) discounts that exposure, counts it in n_outliers and lands where
    the four clean exposures do, where the plain product of the five moves by about a third of its
    width. (From about 9 sigma out LUMOS's mixtures, whose low-weight broad components soften an
    exposure that far out, keep even the plain product within a tenth of its width.)"""
    import dataclasses
    import io

    import numpy as np
    from astropy.io import fits

    from lumos_ops.lumos.coadd import coadd_likelihoods
    from lumos_ops.lumos.mixture_table import mixtures_from_arrays
    from lumos_ops.survey import paus_survey

    survey = dataclasses.replace(paus_survey(), coadd_outlier_fraction=0.01).write(tmp_path / "paus.json")
    store, catalog, keys, config = lumos_night(tmp_path, n_exposures=5, survey_file=str(survey))
    target = catalog.iloc[0]
    with fits.open(io.BytesIO(store.get_bytes(keys[2]))) as hdul:
        data, header = hdul[0].data.astype(np.float32), hdul[0].header.copy()
    x, y = int(round(target.x)), int(round(target.y))
    data[y : y + 2, x : x + 2] += 200.0
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buffer)
    store.put_bytes(keys[2], buffer.getvalue())
    run_night(engine, store, config, night=NIGHT, dag_run_id="cosmic-ray")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT e.expnum, m.flux, m.flux_err, m.mix_alpha, m.mix_mu, m.mix_sigma, m.mix_truncated, e.zero_point "
            "FROM lumos.measurements AS m JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id "
            "WHERE m.ref_id = :ref ORDER BY e.expnum"), {"ref": int(target.ref_id)}).all()
        coadds = {r.ref_id: r for r in conn.execute(sa.text(
            "SELECT ref_id, flux_njy, flux_err_njy, n_outliers, n_used FROM lumos.coadds"))}
    flux = np.array([r.flux for r in rows])
    err = np.array([r.flux_err for r in rows])
    others = np.delete(np.arange(5), 2)
    assert flux[2] - np.median(flux[others]) > 6 * err[2]
    assert coadds[int(target.ref_id)].n_outliers == 1 and coadds[int(target.ref_id)].n_used == 5
    assert all(c.n_outliers == 0 for ref, c in coadds.items() if ref != int(target.ref_id))
    mix = mixtures_from_arrays([r.mix_alpha for r in rows], [r.mix_mu for r in rows], [r.mix_sigma for r in rows],
                               [r.mix_truncated for r in rows])
    zp = np.array([r.zero_point for r in rows])
    clean = coadd_likelihoods(mix.alpha[None, others], mix.mu[None, others], mix.sigma[None, others], zp[None, others])
    plain = coadd_likelihoods(mix.alpha[None], mix.mu[None], mix.sigma[None], zp[None])
    width = clean.stats["sigma68"][0]
    robust_shift = coadds[int(target.ref_id)].flux_njy - clean.stats["median"][0]
    plain_shift = plain.stats["median"][0] - clean.stats["median"][0]
    assert abs(robust_shift) < 0.15 * width and plain_shift > 0.25 * width and plain_shift > 3 * abs(robust_shift)
