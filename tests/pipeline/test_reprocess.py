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


def test_reprocessing_needs_new_explicit_versions(engine, survey, monkeypatch):
    """Every method needs an explicit version, and not the one the nights write (its rows would be
    replaced): production rows stay what users query until a promotion."""
    store, _, config = survey
    for methods in (("lumos",), ("optimal",)):
        implicit = NightConfig(store_url=config.store_url, methods=methods, cache_dir=config.cache_dir)
        with pytest.raises(LumosValueError, match="needs their model version"):
            plan_reprocess(engine, store, implicit, first_night=NIGHTS[0], last_night=NIGHTS[1], dag_run_id="re-x")
    shipped = NightConfig(store_url=config.store_url, methods=("lumos",)).model_version("lumos")
    for versions in ({"aperture": "aperture-1"}, {"lumos": shipped}):
        nightly = NightConfig(store_url=config.store_url, methods=tuple(versions), cache_dir=config.cache_dir,
                              model_versions=versions)
        with pytest.raises(LumosValueError, match="a version the nights write"):
            plan_reprocess(engine, store, nightly, first_night=NIGHTS[0], last_night=NIGHTS[1], dag_run_id="re-z")
    monkeypatch.setenv("LUMOS_MODEL_VERSIONS", "aperture=aperture-5")  # an operator override of the nights
    override = NightConfig(store_url=config.store_url, methods=("aperture",), cache_dir=config.cache_dir,
                           model_versions={"aperture": "aperture-5"})
    with pytest.raises(LumosValueError, match="aperture=aperture-5: a version the nights write"):
        plan_reprocess(engine, store, override, first_night=NIGHTS[0], last_night=NIGHTS[1], dag_run_id="re-o")
    twice = NightConfig(store_url=config.store_url, methods=("aperture", "optimal"), cache_dir=config.cache_dir,
                        model_versions={"aperture": "v-2", "optimal": "v-2"})
    with pytest.raises(LumosValueError, match="give each method its own version string"):
        plan_reprocess(engine, store, twice, first_night=NIGHTS[0], last_night=NIGHTS[1], dag_run_id="re-t")
    with pytest.raises(LumosValueError, match="before first_night"):
        plan_reprocess(engine, store, config, first_night=NIGHTS[1], last_night=NIGHTS[0], dag_run_id="re-y")


def test_a_reprocessed_version_is_a_candidate_until_promoted_and_production_coadds_keep_their_provenance(engine,
                                                                                                      survey):
    """Reprocessing a method the nights do not measure registers its version as a candidate (not
    production, though the method has none); production's co-adds keep their run and time; once the
    version is promoted, the nightly measures that method under it."""
    from lumos_ops.pipeline.registry import get_version, promote, resolve_production

    store, _, config = survey

    def production_coadds():
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT ref_id, band, run_id, updated_at FROM lumos.coadds "
                                        "WHERE model_version = 'aperture-1' ORDER BY ref_id, band")).all()

    before = production_coadds()
    optimal = NightConfig(store_url=config.store_url, cache_dir=config.cache_dir, methods=("optimal",),
                          model_versions={"optimal": "optimal-7"})
    plan = plan_reprocess(engine, store, optimal, first_night=NIGHTS[0], last_night=NIGHTS[1], dag_run_id="re-o")
    reprocess_chunk(engine, store, optimal, plan.tasks)
    finish_reprocess(engine, plan.runs, plan.versions)
    assert get_version(engine, "optimal-7").status == "candidate"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.coadds WHERE model_version = 'optimal-7'")
                            ).scalar() == 2 * N_SOURCES
        # not shown, though optimal has no production version: a reprocessing candidate waits for a promotion
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.latest_coadds WHERE method = 'optimal'")).scalar() == 0
    assert production_coadds() == before

    # the nights then measure optimal too: its first version becomes production and is what is shown
    nightly = NightConfig(store_url=config.store_url, cache_dir=config.cache_dir, methods=("aperture", "optimal"))
    assert resolve_production(engine, nightly) == {"aperture": "aperture-1", "optimal": "optimal-1"}
    for night in NIGHTS:
        assert run_night(engine, store, nightly, night=night, dag_run_id=f"both-{night}").status == "success"
    assert get_version(engine, "optimal-1").status == "production"
    with engine.connect() as conn:
        shown = conn.execute(sa.text("SELECT DISTINCT model_version, model_status FROM lumos.latest_coadds "
                                     "WHERE method = 'optimal'")).all()
    assert shown == [("optimal-1", "production")]
    promote(engine, "optimal-7", force=True, reason="reprocessed with the new background")
    assert resolve_production(engine, nightly) == {"aperture": "aperture-1", "optimal": "optimal-7"}


def test_an_unknown_method_is_refused_before_anything_is_registered(engine, survey):
    store, _, config = survey
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM lumos.model_versions")).scalar()
    typo = NightConfig(store_url=config.store_url, cache_dir=config.cache_dir, methods=("aperture", "optimla"),
                       model_versions={"optimla": "optimla-2"})
    with pytest.raises(LumosValueError, match="unknown photometry method.*'optimla'; choose from aperture"):
        plan_reprocess(engine, store, typo, first_night=NIGHTS[0], last_night=NIGHTS[1], dag_run_id="re-t")
    with pytest.raises(LumosValueError, match="unknown photometry method.*'optimla'"):
        run_night(engine, store, typo, night=NIGHTS[0], dag_run_id="typo")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.model_versions")).scalar() == before
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.pipeline_runs WHERE dag_run_id IN ('re-t', 'typo')")
                            ).scalar() == 0


def test_one_version_string_for_two_methods_is_refused(engine):
    """Within one registration too: the second method's rows would otherwise be written under a
    version the registry holds for the first."""
    from lumos_ops.pipeline.writer import ModelVersion, register_model_versions

    with pytest.raises(LumosValueError, match="given to methods 'aperture' and 'optimal'"):
        register_model_versions(engine, [ModelVersion("shared-7", "aperture", kind="classical"),
                                         ModelVersion("shared-7", "optimal", kind="classical")], overwrite=False)
