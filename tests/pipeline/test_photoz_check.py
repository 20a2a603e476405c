"""The periodic photo-z check reads the latest co-adds, recovers simulated redshifts and records them."""

import json

import pytest
import sqlalchemy as sa
from nightdata import SED_BANDS, load_sed_coadds

from lumos_ops.pipeline.photoz_check import check_photoz
from lumos_ops.pipeline.queries import run_query
from lumos_ops.pipeline.storage import LocalObjectStore

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


def test_check_without_redshifts_is_nothing_to_do(engine, tmp_path):
    assert check_photoz(engine, LocalObjectStore(tmp_path / "s"), dag_run_id="pz-0") == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.photoz_checks")).scalar() == 0
