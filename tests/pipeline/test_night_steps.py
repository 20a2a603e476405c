"""A night measured in two steps (``lumos_nightly``'s ``process`` then ``lumos``): classical methods
first, LUMOS inference second, each writing its own rows.

Against the throwaway PostgreSQL, with the pipeline functions the DAG tasks call. The end state of
every scenario is the healthy one of ``test_faults.py`` for two methods: every row once, every
exposure done with current rows, complete co-adds, no run left open.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from lumos_ops.exceptions import LumosError
from lumos_ops.measure import measure_exposure
from lumos_ops.pipeline import worker_cache
from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.night import finish_night, plan_night, process_chunk
from lumos_ops.pipeline.storage import LocalObjectStore

from nightdata import make_catalog, night_state, write_catalog, write_night

pytestmark = pytest.mark.postgres

NIGHT = "2026-11-20"
N_SOURCES = 8
N_KEYS = 4
METHODS = ("aperture", "lumos")
HEALTHY = {"rows": N_SOURCES * N_KEYS * 2, "duplicates": 0, "status": {"done": N_KEYS},
           "rows_state": {"current": N_KEYS}, "n_measurements": N_SOURCES * N_KEYS * 2,
           "coadds": 2 * N_SOURCES * 2, "coadds_partial": 0, "open_runs": 0}


def state(engine: sa.Engine) -> dict[str, object]:
    """The operator's checks of :data:`HEALTHY` (``nightdata.night_state``)."""
    return night_state(engine, HEALTHY)


def rows_by_method(engine: sa.Engine, exposure_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT method, count(*) FROM lumos.measurements WHERE exposure_id = :e "
                                         "GROUP BY 1"), {"e": exposure_id}).all())


def exposure_row(engine: sa.Engine, exposure_id: int) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT status, error, rows_state FROM lumos.exposure_rows "
                                         "WHERE exposure_id = :e"), {"e": exposure_id}).mappings().one())


@pytest.fixture
def two_step_night(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    catalog = make_catalog(N_SOURCES)
    write_catalog(store.put_bytes, catalog)
    write_night(store.put_bytes, NIGHT, n_exposures=2, n_ccds=2, catalog=catalog)
    config = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"), methods=METHODS)
    return store, config


def failing_for(task, *, methods_containing: str):
    """A measurer that fails on ``task``'s image when asked for ``methods_containing``."""

    def measurer(exposure, catalog, *, methods, **options):
        if methods_containing in methods and (exposure.expnum, exposure.ccdnum) == (task.expnum, task.ccd):
            raise LumosError(f"{methods_containing} failed on this image")
        return measure_exposure(exposure, catalog, methods=methods, **options)

    return measurer


def test_classical_step_leaves_exposures_running_until_lumos_writes(engine, two_step_night):
    store, config = two_step_night
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="two-steps")
    (chunk,) = plan.chunks(1)
    results = process_chunk(engine, store, config, chunk, step="classical")
    assert [r.status for r in results] == ["done"] * N_KEYS
    assert all(rows_by_method(engine, t.exposure_id) == {"aperture": N_SOURCES} for t in plan.tasks)
    assert state(engine)["status"] == {"running": N_KEYS}  # LUMOS still to come
    results = process_chunk(engine, store, config, chunk, step="lumos")
    assert [r.status for r in results] == ["done"] * N_KEYS
    report = finish_night(engine, store, config, night=NIGHT, run_id=plan.run_id)
    assert report.status == "success" and state(engine) == HEALTHY
    assert [r.status for r in process_chunk(engine, store, config, chunk, step="lumos")] == ["skipped"] * N_KEYS


def test_a_failed_lumos_step_keeps_the_classical_rows(engine, two_step_night):
    store, config = two_step_night
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="lumos-fails")
    (chunk,) = plan.chunks(1)
    bad = plan.tasks[1]
    process_chunk(engine, store, config, chunk, step="classical")
    with pytest.raises(LumosError, match="1 of 4 exposures failed: .*lumos failed on this image"):
        process_chunk(engine, store, config, chunk, step="lumos",
                      measurer=failing_for(bad, methods_containing="lumos"))
    assert rows_by_method(engine, bad.exposure_id) == {"aperture": N_SOURCES}
    assert exposure_row(engine, bad.exposure_id) == {"status": "failed", "error": f"{bad.key}: lumos failed on this image",
                                                     "rows_state": "stale"}
    report = finish_night(engine, store, config, night=NIGHT, run_id=plan.run_id)
    assert (report.status, report.n_done, report.n_failed, report.n_stale) == ("partial", 3, 1, 1)
    assert state(engine)["rows"] == N_SOURCES * (2 * N_KEYS - 1)

    results = process_chunk(engine, store, config, chunk, step="lumos")  # the operator clears the failed lumos task
    assert [r.status for r in results] == ["skipped", "done", "skipped", "skipped"]
    assert state(engine) == HEALTHY  # the rerun after the report refreshed co-adds and report


def test_a_failed_classical_step_stands_until_it_is_rerun(engine, two_step_night):
    """LUMOS (run after every classical task ended) writes its rows for an exposure whose classical
    step failed but leaves it failed with that error; clearing only the failed classical task
    then completes it."""
    store, config = two_step_night
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="classical-fails")
    (chunk,) = plan.chunks(1)
    bad = plan.tasks[2]
    with pytest.raises(LumosError, match="aperture failed on this image"):
        process_chunk(engine, store, config, chunk, step="classical",
                      measurer=failing_for(bad, methods_containing="aperture"))
    process_chunk(engine, store, config, chunk, step="lumos")
    assert rows_by_method(engine, bad.exposure_id) == {"lumos": N_SOURCES}
    assert exposure_row(engine, bad.exposure_id)["status"] == "failed"
    assert "aperture failed" in exposure_row(engine, bad.exposure_id)["error"]
    assert state(engine)["status"] == {"done": 3, "failed": 1}
    finish_night(engine, store, config, night=NIGHT, run_id=plan.run_id)
    results = process_chunk(engine, store, config, chunk, step="classical")
    assert [r.status for r in results] == ["skipped", "skipped", "done", "skipped"]
    assert state(engine) == HEALTHY


def test_consecutive_exposures_of_a_worker_load_the_model_once(engine, two_step_night, monkeypatch):
    from lumos_ops.lumos import checkpoint

    loads = []
    real = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: loads.append(a) or real(*a, **k))
    worker_cache.clear()
    store, config = two_step_night
    plan = plan_night(engine, store, config, night=NIGHT, dag_run_id="cached")
    (chunk,) = plan.chunks(1)
    process_chunk(engine, store, config, chunk, step="classical")
    process_chunk(engine, store, config, chunk, step="lumos")
    assert len(loads) == 1
    assert worker_cache.stats()["models"] == {"hits": N_KEYS - 1, "misses": 1, "entries": 1}
    assert worker_cache.stats()["catalogs"]["misses"] == 1
    worker_cache.clear()
