"""Reprocessing a range of nights under a new model version: production rows and exposure states
untouched, resumable, progress per night."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from lumos_ops.exceptions import LumosError, LumosValueError
from lumos_ops.pipeline.config import NightConfig
from lumos_ops.pipeline.night import run_night
from lumos_ops.pipeline.queries import run_query
from lumos_ops.pipeline.reprocess import finish_reprocess, plan_reprocess, reprocess_chunk, reprocess_progress
from lumos_ops.pipeline.storage import LocalObjectStore

from nightdata import make_catalog, write_catalog, write_night

pytestmark = pytest.mark.postgres
NIGHTS = ("2026-11-20", "2026-11-21")
N_SOURCES = 8


@pytest.fixture
def survey(engine, tmp_path):
    """Two nights of 2 CCD images each, measured by the nightly run with aperture-1."""
    store = LocalObjectStore(tmp_path / "store")
    catalog = make_catalog(N_SOURCES)
    write_catalog(store.put_bytes, catalog)
    keys = []
    for i, night in enumerate(NIGHTS):
        keys += write_night(store.put_bytes, night, n_exposures=1, n_ccds=2, catalog=catalog, first_expnum=5000 + 10 * i)
    nightly = NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"))
    for night in NIGHTS:
        assert run_night(engine, store, nightly, night=night, dag_run_id=f"nightly-{night}").status == "success"
    return store, keys, NightConfig(store_url=str(store.root), cache_dir=str(tmp_path / "cache"),
                                    model_versions={"aperture": "aperture-2"})


def _snapshot(engine):
    with engine.connect() as conn:
        exposures = conn.execute(sa.text("SELECT exposure_id, status, run_id, measured_run_id, n_measurements "
                                         "FROM lumos.exposures ORDER BY exposure_id")).all()
        production = conn.execute(sa.text("SELECT count(*), sum(flux) FROM lumos.measurements "
                                          "WHERE model_version = 'aperture-1'")).one()
        coadds = conn.execute(sa.text("SELECT count(*), sum(flux_njy) FROM lumos.coadds "
                                      "WHERE model_version = 'aperture-1'")).one()
    return exposures, tuple(production), tuple(coadds)


def test_reprocessing_writes_the_new_version_beside_production_and_resumes(engine, survey):
    store, keys, config = survey
    before = _snapshot(engine)
    plan = plan_reprocess(engine, store, config, first_night=NIGHTS[0], last_night=NIGHTS[1], dag_run_id="re-1")
    assert (len(plan.tasks), plan.n_registered, set(plan.runs)) == (4, 4, set(NIGHTS))
    gone = store.get_bytes(keys[3])
    (store.root / keys[3]).unlink()  # one file gone: that exposure fails, the others are written
    with pytest.raises(LumosError, match=r"1 of 4 exposures failed: .*exp0005010_ccd02"):
        reprocess_chunk(engine, store, config, plan.tasks)
    progress = finish_reprocess(engine, plan.runs, plan.versions)
    assert progress.to_dict("records") == [
        {"night": NIGHTS[0], "n_exposures": 2, "n_complete": 2, "n_rows": 2 * N_SOURCES},
        {"night": NIGHTS[1], "n_exposures": 2, "n_complete": 1, "n_rows": N_SOURCES}]
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT night::text, status FROM lumos.pipeline_runs "
                                             "WHERE dag_run_id = 're-1'")).all())
    assert statuses == {NIGHTS[0]: "success", NIGHTS[1]: "partial"}
    assert _snapshot(engine) == before  # production rows, co-adds and exposure states untouched

    store.put_bytes(keys[3], gone)
    again = plan_reprocess(engine, store, config, first_night=NIGHTS[0], last_night=NIGHTS[1], dag_run_id="re-2")
    assert [t.key for t in again.tasks] == [keys[3]]  # resumable: only what is left
    reprocess_chunk(engine, store, config, again.tasks)
    progress = finish_reprocess(engine, again.runs, again.versions)
    assert list(progress["n_complete"]) == [2, 2]
    assert _snapshot(engine) == before
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.measurements WHERE model_version = 'aperture-2'")
                            ).scalar() == 4 * N_SOURCES
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.coadds WHERE model_version = 'aperture-2'")
                            ).scalar() == 2 * N_SOURCES  # 2 bands x 8 sources, each over both nights
    query = run_query(engine, "reprocess_progress", {"method": "aperture", "model_version": "aperture-2"})
    assert list(query["n_done"]) == [2, 2] and list(query["n_rows"]) == [2 * N_SOURCES] * 2
    assert reprocess_progress(engine, {"aperture": "aperture-2"}, first_night=NIGHTS[0],
                              last_night=NIGHTS[0])["n_complete"].tolist() == [2]


def test_reprocessing_lumos_needs_an_explicit_version(engine, survey):
    store, _, config = survey
    lumos = NightConfig(store_url=config.store_url, methods=("lumos",), cache_dir=config.cache_dir)
    with pytest.raises(LumosValueError, match="needs their model version"):
        plan_reprocess(engine, store, lumos, first_night=NIGHTS[0], last_night=NIGHTS[1], dag_run_id="re-x")
    with pytest.raises(LumosValueError, match="before first_night"):
        plan_reprocess(engine, store, config, first_night=NIGHTS[1], last_night=NIGHTS[0], dag_run_id="re-y")
