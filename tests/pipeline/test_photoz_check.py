"""The periodic photo-z check reads the latest co-adds, recovers simulated redshifts and records them."""

import json

import pytest
import sqlalchemy as sa

from lumos_ops.exceptions import LumosError, LumosValueError
from lumos_ops.photoz.coadd_check import MIN_SURVEY_BANDS
from lumos_ops.pipeline.photoz_check import (
    PhotozCheckFailed,
    PhotozCheckSkipped,
    check_photoz,
    require_checked,
)
from lumos_ops.pipeline.queries import run_query
from lumos_ops.pipeline.storage import LocalObjectStore

from nightdata import SED_BANDS, load_sed_coadds

pytestmark = pytest.mark.postgres


def test_check_recovers_redshifts_records_rows_and_reports(engine, tmp_path):
    galaxies = load_sed_coadds(engine, noise=3.0)
    store = LocalObjectStore(tmp_path / "store")
    results = check_photoz(engine, store, dag_run_id="pz-1", report_prefix="reports")
    assert [r.method for r in results] == ["aperture", "lumos"]
    exact, noisy = results[1], results[0]
    assert exact.n_sources == exact.n_fitted == len(galaxies) - 5 and exact.n_bands_median == len(SED_BANDS)
    # Noiseless fluxes of the simulator's own SEDs: the template fit finds the redshift.
    assert exact.sigma68 < 0.005 and exact.outlier_fraction < 0.05
    assert noisy.sigma68 > exact.sigma68  # 3-sigma scatter added to the aperture co-adds
    report = json.loads(store.get_bytes(exact.report_key))
    assert report["n_fitted"] == exact.n_fitted and report["model_versions"] == ["lumos-test"]
    assert store.local_path(exact.report_key.replace(".json", ".png")).stat().st_size > 1000
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT method, n_fitted, sigma68, metrics FROM lumos.photoz_checks ORDER BY method")).all()
    assert [r.method for r in rows] == ["aperture", "lumos"]
    assert rows[1].sigma68 == pytest.approx(exact.sigma68) and rows[1].metrics[0]["bin"] == "all"
    check_photoz(engine, store, dag_run_id="pz-2", methods=["lumos"])
    trend = run_query(engine, "photoz_trend", {"limit": 10})
    assert list(trend["method"]).count("lumos") == 2 and len(trend) == 3
    assert all(r.status == "checked" and r.reason is None and r.n_bands == len(SED_BANDS) for r in results)
    assert require_checked(results) == results
    assert f"computed on {exact.n_fitted} sources ({len(SED_BANDS)} bands)" in exact.summary()


def test_check_without_redshifts_is_nothing_to_do(engine, tmp_path):
    assert check_photoz(engine, LocalObjectStore(tmp_path / "s"), dag_run_id="pz-0") == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.photoz_checks")).scalar() == 0
    with pytest.raises(PhotozCheckSkipped, match=r"n_sources=0.*zspec") as info:
        require_checked([])
    assert isinstance(info.value, LumosError) and info.value.results == []


def _count_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM lumos.photoz_checks")).scalar()


def test_too_few_bands_is_skipped_with_the_counts_never_recorded(engine, tmp_path):
    """A 2-band night: no photo-z is fitted and no row with NULL metrics is written."""
    galaxies = load_sed_coadds(engine)
    with engine.begin() as conn:  # the aperture co-adds of an early survey: two bands so far
        conn.execute(sa.text("DELETE FROM lumos.coadds WHERE method = 'aperture' AND band NOT IN (:a, :b)"),
                     {"a": SED_BANDS[0], "b": SED_BANDS[1]})
    store = LocalObjectStore(tmp_path / "store")
    aperture, lumos = check_photoz(engine, store, dag_run_id="pz-2b")
    n_scored = len(galaxies) - 5
    assert (aperture.status, aperture.n_sources, aperture.n_bands, aperture.n_fitted) == ("too_few_bands", n_scored, 2, 0)
    assert f"cover 2 band(s) ({SED_BANDS[0]}, {SED_BANDS[1]}), fewer than min_survey_bands={MIN_SURVEY_BANDS}" in aperture.reason
    assert f"n_sources={n_scored}, n_bands=2, n_fitted=0" in aperture.reason
    assert "not checked (too_few_bands)" in aperture.summary()
    report = json.loads(store.get_bytes(aperture.report_key))
    assert report["status"] == "too_few_bands" and report["reason"] == aperture.reason and report["n_fitted"] == 0
    assert not store.local_path(aperture.report_key.replace(".json", ".png")).exists()
    with engine.connect() as conn:  # only the method that was validated has a row
        rows = conn.execute(sa.text("SELECT method, n_fitted, sigma68 FROM lumos.photoz_checks")).all()
    assert [(r.method, r.n_fitted) for r in rows] == [("lumos", n_scored)] and rows[0].sigma68 is not None
    assert lumos.checked and require_checked([aperture, lumos]) == [lumos]
    results = check_photoz(engine, store, dag_run_id="pz-2c", methods=["aperture"])
    with pytest.raises(PhotozCheckSkipped, match=r"aperture: .*n_bands=2, n_fitted=0.*lower min_survey_bands"):
        require_checked(results)
    assert _count_rows(engine) == 1
    # The threshold is a parameter; the per-source minimum still applies below it.
    assert check_photoz(engine, store, dag_run_id="pz-2d", methods=["aperture"], min_survey_bands=2)[0].status \
        == "too_few_bands"  # 2 bands < min_bands = 3
    with pytest.raises(LumosValueError, match="min_survey_bands"):
        check_photoz(engine, store, dag_run_id="pz-x", min_survey_bands=0)


def test_no_fitted_source_fails_with_the_counts(engine, tmp_path):
    """Co-adds covering every band, but each source with only two of them: nothing can be scored."""
    galaxies = load_sed_coadds(engine)
    with engine.begin() as conn:  # source k keeps bands k and k + 1 (mod 20): 2 per source, 20 in all
        conn.execute(sa.text("DELETE FROM lumos.coadds WHERE (ref_id + array_position(CAST(:bands AS text[]), band)) "
                             "% 20 NOT IN (0, 1)"), {"bands": list(SED_BANDS)})
    results = check_photoz(engine, LocalObjectStore(tmp_path / "store"), dag_run_id="pz-3")
    n_scored = len(galaxies) - 5
    assert [(r.status, r.n_bands, r.n_fitted, r.n_bands_median) for r in results] == [("none_fitted", 20, 0, 2.0)] * 2
    assert _count_rows(engine) == 0
    with pytest.raises(PhotozCheckFailed) as info:
        require_checked(results)
    message = str(info.value)
    assert f"0 of {n_scored} sources" in message and f"n_sources={n_scored}, n_bands=20, n_fitted=0" in message
    assert "fewer than min_bands=3 co-added bands (median 2)" in message
    assert message.count("aperture:") == 1 and message.count("lumos:") == 1 and len(info.value.results) == 2
