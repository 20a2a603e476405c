import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from lumos_ops.exceptions import DatabaseError, LumosValueError
from lumos_ops.pipeline.coadd import coadd_night
from lumos_ops.pipeline.writer import (
    ExposureMeta,
    ModelVersion,
    mark_failed,
    register_exposures,
    register_model_versions,
    start_run,
    write_measurements,
)

pytestmark = pytest.mark.postgres
NIGHT = "2026-11-20"


def _setup(engine, n_exposures=3):
    run_id = start_run(engine, dag_id="test", dag_run_id="r1", night=NIGHT, code_version="t", settings={})
    register_model_versions(engine, [ModelVersion("aperture-1", "aperture"),
                                     ModelVersion("lumos-t1", "lumos", kind="lumos", checksum="abc")])
    rows = [{"key": f"exposures/{NIGHT}/exp{e:07d}_ccd01.fits", "night": NIGHT, "expnum": e, "ccd": 1,
             "size": 10, "checksum": f"c{e}"} for e in range(n_exposures)]
    return run_id, register_exposures(engine, rows, run_id=run_id)


def _table(n=5, seed=0, method="aperture", band="NB685"):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"ref_id": np.arange(n), "method": method, "x": rng.uniform(0, 100, n),
                         "y": rng.uniform(0, 100, n), "band": band, "flux": rng.normal(100, 10, n),
                         "flux_err": rng.uniform(5, 10, n), "flag": np.zeros(n, int)})


def _meta(zp=25.0):
    return ExposureMeta(band="NB685", epoch=0, exptime=90.0, psf_fwhm=1.0, zero_point=zp, mjd=None, nan_fraction=0.0)


def _count(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def test_rerun_replaces_rows_and_drops_stale_ones(engine):
    run_id, (eid, *_) = _setup(engine)
    versions = {"aperture": "aperture-1"}
    assert write_measurements(engine, _table(5), exposure_id=eid, run_id=run_id, meta=_meta(),
                              model_versions=versions) == 5
    table = _table(4, seed=1)
    write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(), model_versions=versions)
    assert _count(engine, "SELECT count(*) FROM lumos.measurements") == 4
    stored = _count(engine, "SELECT flux FROM lumos.measurements WHERE ref_id = 0")
    assert stored == pytest.approx(table["flux"][0])
    assert _count(engine, "SELECT status FROM lumos.exposures WHERE exposure_id = :e", e=eid) == "done"


def test_failed_write_leaves_nothing_half_written(engine):
    run_id, (eid, *_) = _setup(engine)
    write_measurements(engine, _table(5), exposure_id=eid, run_id=run_id, meta=_meta(),
                       model_versions={"aperture": "aperture-1"})
    bad_meta = ExposureMeta(band="NB685", epoch=40000, exptime=90.0, psf_fwhm=1.0, zero_point=20.0, mjd=None,
                            nan_fraction=0.0)
    with pytest.raises(DatabaseError, match="rolled back"):  # the last statement (smallint overflow) fails
        write_measurements(engine, _table(7, seed=3), exposure_id=eid, run_id=run_id, meta=bad_meta,
                           model_versions={"aperture": "aperture-1"})
    assert _count(engine, "SELECT count(*) FROM lumos.measurements") == 5
    with pytest.raises(DatabaseError, match="not registered"):
        write_measurements(engine, _table(7, seed=3), exposure_id=eid, run_id=run_id, meta=_meta(),
                           model_versions={"aperture": "aperture-99"})
    with pytest.raises(DatabaseError, match="run_id=999"):
        write_measurements(engine, _table(7, seed=3), exposure_id=eid, run_id=999, meta=_meta(),
                           model_versions={"aperture": "aperture-1"})
    assert _count(engine, "SELECT count(*) FROM lumos.measurements") == 5
    assert _count(engine, "SELECT zero_point FROM lumos.exposures WHERE exposure_id = :e", e=eid) == 25.0
    with pytest.raises(LumosValueError, match="repeats ref_id"):
        write_measurements(engine, pd.concat([_table(2), _table(2)]), exposure_id=eid, run_id=run_id,
                           meta=_meta(), model_versions={"aperture": "aperture-1"})
    with pytest.raises(LumosValueError, match="without a model version"):
        write_measurements(engine, _table(2), exposure_id=eid, run_id=run_id, meta=_meta(), model_versions={})


def test_mixture_components_and_extras_are_stored(engine):
    run_id, (eid, *_) = _setup(engine)
    table = _table(3, method="lumos")
    for k in range(5):
        table[f"alpha_{k}"] = 0.2
        table[f"mu_{k}"] = 100.0 + k
        table[f"sigma_{k}"] = 10.0
    table["truncated"] = [True, False, False]
    table["sigma68"] = [1.0, np.nan, 2.0]
    write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(),
                       model_versions={"lumos": "lumos-t1"})
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT mix_alpha, mix_mu, mix_sigma, mix_truncated, extras FROM lumos.measurements "
                                    "ORDER BY ref_id")).all()
    assert rows[0].mix_mu == pytest.approx([100, 101, 102, 103, 104])
    assert len(rows[0].mix_alpha) == len(rows[0].mix_sigma) == 5
    assert [r.mix_truncated for r in rows] == [True, False, False]  # a column, not a key of extras
    assert [r.extras for r in rows] == [{"sigma68": 1.0}, None, {"sigma68": 2.0}]


def test_the_mixture_is_given_one_way(engine):
    """The writer takes the table form of lumos_ops.lumos.mixture_table: complete alpha_k/mu_k/sigma_k
    columns; the database's mix_* names and incomplete mixtures are refused before anything is sent."""
    run_id, (eid, *_) = _setup(engine)
    table = _table(2, method="lumos")
    for k in range(2):
        table[f"alpha_{k}"], table[f"mu_{k}"] = 0.5, 100.0 + k
    with pytest.raises(LumosValueError, match="alpha_k, mu_k and sigma_k"):
        write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(),
                           model_versions={"lumos": "lumos-t1"})
    table["sigma_0"] = table["sigma_1"] = 10.0
    table["mix_alpha"] = [[0.5, 0.5]] * 2
    with pytest.raises(LumosValueError, match=r"\['mix_alpha'\]: give the mixture as alpha_k"):
        write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(),
                           model_versions={"lumos": "lumos-t1"})
    assert _count(engine, "SELECT count(*) FROM lumos.measurements") == 0


def _eq21(flux: list[float], flux_err: list[float], zero_point: list[float]) -> tuple[float, float]:
    """Eq. (21): the inverse-variance weighted mean of the fluxes in nJy and its error."""
    c = 10.0 ** (-0.4 * (np.asarray(zero_point) - 31.4))
    weights = 1.0 / (np.asarray(flux_err) * c) ** 2
    return float((weights * np.asarray(flux) * c).sum() / weights.sum()), float(1.0 / np.sqrt(weights.sum()))


def test_coadd_is_equation_21_in_njy_and_partial_after_failures(engine):
    run_id, ids = _setup(engine, n_exposures=3)
    zps = [25.0, 25.5, 24.8]
    tables = [_table(4, seed=s) for s in range(3)]
    tables[2].loc[3, "flag"] = 2  # OFF_IMAGE: left out
    tables[1].loc[2, "flag"] = 32  # FIT_FAILED (a fit that ran away, NaN or not converged): left out
    for eid, zp, table in zip(ids, zps, tables):
        write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(zp),
                           model_versions={"aperture": "aperture-1"})
    summary = coadd_night(engine, night=NIGHT, run_id=run_id)
    assert summary.n_coadds == 4 and summary.n_partial == 0
    for ref in range(4):
        use = [i for i in range(3) if tables[i]["flag"][ref] == 0]
        expected = _eq21([tables[i]["flux"][ref] for i in use],
                                          [tables[i]["flux_err"][ref] for i in use], [zps[i] for i in use])
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT flux_njy, flux_err_njy, n_used, n_exposures FROM lumos.coadds "
                                       "WHERE ref_id = :r"), {"r": ref}).one()
        assert (row.flux_njy, row.flux_err_njy) == pytest.approx(expected, rel=1e-9)
        assert (row.n_used, row.n_exposures) == (len(use), 3)
    # a later failed attempt at exposure 3 keeps its rows: they stay in the co-adds, counted as stale
    mark_failed(engine, ids[2], run_id=run_id, error="bad file", band="NB685")
    assert _count(engine, "SELECT count(*) FROM lumos.measurements WHERE exposure_id = :e", e=ids[2]) == 4
    assert _count(engine, "SELECT rows_state FROM lumos.exposure_rows WHERE exposure_id = :e", e=ids[2]) == "stale"
    summary = coadd_night(engine, night=NIGHT, run_id=run_id)
    assert summary.n_partial == 4 and summary.n_stale == 3  # the night's summary.json counts them too
    assert _count(engine, "SELECT max(n_used) FROM lumos.coadds") == 3
    assert _count(engine, "SELECT count(*) FROM lumos.coadds WHERE n_stale = 1 AND partial") == 3
    # the stale row the co-add leaves out (OFF_IMAGE) is not counted; the failure still makes it partial
    assert _count(engine, "SELECT n_stale FROM lumos.coadds WHERE ref_id = 3 AND partial") == 0
    # a failure of an exposure never measured before: no rows to keep, co-adds partial, none stale
    extra = register_exposures(engine, [{"key": "x/new.fits", "night": NIGHT, "expnum": 9, "ccd": 1, "size": 1,
                                         "checksum": "c"}], run_id=run_id)[0]
    mark_failed(engine, extra, run_id=run_id, error="unreadable")
    assert _count(engine, "SELECT rows_state FROM lumos.exposure_rows WHERE exposure_id = :e", e=extra) == "none"


def test_coadd_weighs_with_the_errors_before_the_floor_and_adds_the_floor_once(engine):
    run_id, ids = _setup(engine, n_exposures=3)
    zps, floor = [25.0, 25.5, 24.8], 0.02
    tables = []
    for seed, (eid, zp) in enumerate(zip(ids, zps)):
        table = _table(4, seed=seed).assign(error_floor=floor)
        table["flux_err_stat"] = table["flux_err"]
        table["flux_err"] = np.hypot(table["flux_err_stat"], floor * table["flux"])
        write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(zp),
                           model_versions={"aperture": "aperture-1"})
        tables.append(table)
    coadd_night(engine, night=NIGHT, run_id=run_id)
    for ref in range(4):
        flux, err = _eq21([t["flux"][ref] for t in tables], [t["flux_err_stat"][ref] for t in tables], zps)
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT flux_njy, flux_err_njy FROM lumos.coadds WHERE ref_id = :r"),
                               {"r": ref}).one()
        assert row.flux_njy == pytest.approx(flux, rel=1e-9)
        assert row.flux_err_njy == pytest.approx(np.hypot(err, floor * flux), rel=1e-9)


def test_lumos_coadd_counts_the_error_floor_once(engine):
    from lumos_ops.lumos.coadd import coadd_likelihoods

    run_id, ids = _setup(engine, n_exposures=3)
    mus = [20.0, 22.0, 19.0]
    # the larger of the floor's and the recorded term's correlation counts
    _write_gaussian_likelihoods(engine, run_id, ids, mus, [{"floor_rho": 0.4, "shared_rho": 0.2},
                                                           {"floor_rho": 0.1, "shared_rho": 0.2}, {"floor_rho": 0.3}])
    coadd_night(engine, night=NIGHT, run_id=run_id)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT flux_err_njy FROM lumos.coadds WHERE ref_id = 0")).one()
    args = (np.ones((1, 3, 1)), np.array(mus).reshape(1, 3, 1), np.full((1, 3, 1), 3.0), np.full((1, 3), 25.0))
    expected = coadd_likelihoods(*args, rho=np.array([[0.4, 0.2, 0.3]]))
    assert row.flux_err_njy == pytest.approx(expected.stats["sigma68"][0], rel=1e-6)


def test_pdf_coadd_fills_pdf_statistics(engine):
    run_id, ids = _setup(engine, n_exposures=2)
    for eid in ids:
        table = _table(2, method="lumos")
        for k in range(5):
            table[f"alpha_{k}"] = [0.6, 0.1, 0.1, 0.1, 0.1][k]
            table[f"mu_{k}"] = 100.0 + 5 * k
            table[f"sigma_{k}"] = 8.0
        write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(),
                           model_versions={"lumos": "lumos-t1"})
    summary = coadd_night(engine, night=NIGHT, run_id=run_id)
    assert summary.pdf_coadds == 2
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT flux_median_njy, sigma68_njy, eta FROM lumos.coadds "
                                   "WHERE ref_id = 0")).one()
    scale = 10 ** (-0.4 * (25.0 - 31.4))
    assert 100 * scale < row.flux_median_njy < 120 * scale
    assert 0 < row.sigma68_njy < 8.0 * scale
    assert row.eta is not None


@pytest.mark.parametrize("truncated", [False, True])
def test_lumos_coadd_flux_is_the_likelihood_product(engine, truncated):
    from lumos_ops.lumos.coadd import coadd_likelihoods

    run_id, ids = _setup(engine, n_exposures=3)
    alpha = np.array([0.5, 0.2, 0.1, 0.1, 0.1])
    mus = [[20.0, 24.0, 18.0, 30.0, 10.0], [22.0, 25.0, 19.0, 28.0, 12.0], [19.0, 21.0, 23.0, 26.0, 15.0]]
    if truncated:  # near f = 0, where the eq. (10) truncation of every exposure's mixture matters
        mus = [[m - 19.0 for m in mu] for mu in mus]
    for eid, mu in zip(ids, mus):
        table = _table(1, method="lumos")
        for k in range(5):
            table[f"alpha_{k}"] = alpha[k]
            table[f"mu_{k}"] = mu[k]
            table[f"sigma_{k}"] = 3.0 + k
        table["truncated"] = truncated
        write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(),
                           model_versions={"lumos": "lumos-t1"})
    coadd_night(engine, night=NIGHT, run_id=run_id)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT flux_njy, flux_err_njy, flux_median_njy, sigma68_njy, n_used FROM lumos.coadds "
                                   "WHERE ref_id = 0")).one()
    expected = coadd_likelihoods(np.tile(alpha, (1, 3, 1)), np.array([mus]), np.tile(3.0 + np.arange(5.0), (1, 3, 1)),
                                 np.full((1, 3), 25.0), truncated=np.full((1, 3), truncated))
    untruncated = coadd_likelihoods(np.tile(alpha, (1, 3, 1)), np.array([mus]), np.tile(3.0 + np.arange(5.0), (1, 3, 1)),
                                    np.full((1, 3), 25.0))
    assert (expected.stats["median"][0] != pytest.approx(untruncated.stats["median"][0], rel=1e-3)) == truncated
    assert row.n_used == 3
    assert row.flux_njy == pytest.approx(expected.stats["median"][0], rel=1e-6)
    assert row.flux_err_njy == pytest.approx(expected.stats["sigma68"][0], rel=1e-6)
    assert (row.flux_median_njy, row.sigma68_njy) == pytest.approx((row.flux_njy, row.flux_err_njy), rel=1e-12)
    # a product of three likelihoods is narrower than any one of them
    single = coadd_likelihoods(np.tile(alpha, (1, 1, 1)), np.array([mus[:1]]), np.tile(3.0 + np.arange(5.0), (1, 1, 1)),
                               np.full((1, 1), 25.0))
    assert row.flux_err_njy < 0.75 * single.stats["sigma68"][0]


def _write_gaussian_likelihoods(engine, run_id, ids, mus, extras):
    """One LUMOS row of source 0 per exposure: a single Gaussian (mu, sigma 3 e-/s) with extra columns."""
    for eid, mu, extra in zip(ids, mus, extras):
        table = _table(1, method="lumos")
        table["alpha_0"], table["mu_0"], table["sigma_0"] = 1.0, mu, 3.0
        for name, value in extra.items():
            table[name] = value
        write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(),
                           model_versions={"lumos": "lumos-t1"})


def test_lumos_coadd_widens_by_the_shared_error_its_rows_carry(engine):
    from lumos_ops.lumos.coadd import coadd_likelihoods

    run_id, ids = _setup(engine, n_exposures=3)
    mus = [20.0, 22.0, 19.0]
    # the third row has no shared_rho: it counts as independent (0)
    _write_gaussian_likelihoods(engine, run_id, ids, mus, [{"shared_rho": 0.3}, {"shared_rho": 0.2}, {}])
    coadd_night(engine, night=NIGHT, run_id=run_id)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT flux_njy, flux_err_njy FROM lumos.coadds WHERE ref_id = 0")).one()
    args = (np.ones((1, 3, 1)), np.array(mus).reshape(1, 3, 1), np.full((1, 3, 1), 3.0), np.full((1, 3), 25.0))
    expected = coadd_likelihoods(*args, rho=np.array([[0.3, 0.2, 0.0]]))
    independent = coadd_likelihoods(*args)
    c = 1.0 + (np.sqrt(0.3) + np.sqrt(0.2)) ** 2 / 3.0 - (0.3 + 0.2) / 3.0
    assert expected.variance_factor[0] == pytest.approx(c)
    assert row.flux_err_njy == pytest.approx(expected.stats["sigma68"][0], rel=1e-6)
    assert row.flux_err_njy == pytest.approx(np.sqrt(c) * independent.stats["sigma68"][0], rel=1e-3)
    assert row.flux_njy == pytest.approx(independent.stats["median"][0], rel=1e-6)


def test_lumos_coadd_discounts_a_bad_exposure_and_counts_it(engine):
    """Four exposures agree, a fifth reads 8 sigma high: with the survey's outlier fraction the
    co-add stays on the four and records n_outliers 1; without it, the product follows the fifth;
    the eq. (21) co-add of a classical method has no n_outliers."""
    from lumos_ops.lumos.coadd import coadd_likelihoods

    run_id, ids = _setup(engine, n_exposures=5)
    mus = [20.0, 21.0, 19.5, 20.5, 44.0]
    _write_gaussian_likelihoods(engine, run_id, ids, mus, [{}] * 5)
    for eid in ids:
        write_measurements(engine, _table(1), exposure_id=eid, run_id=run_id, meta=_meta(),
                           model_versions={"aperture": "aperture-1"})
    args = (np.ones((1, 5, 1)), np.array(mus).reshape(1, 5, 1), np.full((1, 5, 1), 3.0), np.full((1, 5), 25.0))
    query = "SELECT method, flux_njy, n_outliers FROM lumos.coadds WHERE ref_id = 0 ORDER BY method"
    coadd_night(engine, night=NIGHT, run_id=run_id)
    with engine.connect() as conn:
        plain = {r.method: r for r in conn.execute(sa.text(query))}
    coadd_night(engine, night=NIGHT, run_id=run_id, outlier_fraction=0.01)
    with engine.connect() as conn:
        robust = {r.method: r for r in conn.execute(sa.text(query))}
    scale = 10 ** (-0.4 * (25.0 - 31.4))
    assert plain["lumos"].flux_njy == pytest.approx(coadd_likelihoods(*args).stats["median"][0], rel=1e-6)
    assert plain["lumos"].flux_njy > 24.5 * scale and plain["lumos"].n_outliers == 0
    assert robust["lumos"].flux_njy == pytest.approx(
        coadd_likelihoods(*args, outlier_fraction=0.01).stats["median"][0], rel=1e-6)
    assert robust["lumos"].flux_njy == pytest.approx(20.25 * scale, abs=0.2 * scale)
    assert robust["lumos"].n_outliers == 1
    assert plain["aperture"].n_outliers is None and robust["aperture"].n_outliers is None


def test_lumos_coadd_takes_the_shared_error_of_the_sources_residual_bin(engine):
    from lumos_ops.lumos.coadd import coadd_likelihoods

    run_id, ids = _setup(engine, n_exposures=3)
    # median residual 0.04: the source is not its model
    _write_gaussian_likelihoods(engine, run_id, ids, [20.0, 22.0, 19.0], [
        {"shared_rho": 0.2, "shared_rho_bins": [[0.05, 0.5]], "shared_residual_cuts": [[0.01]], "model_residual": r}
        for r in (0.001, 0.05, 0.04)])
    coadd_night(engine, night=NIGHT, run_id=run_id)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT flux_err_njy FROM lumos.coadds WHERE ref_id = 0")).one()
    args = (np.ones((1, 3, 1)), np.array([[20.0, 22.0, 19.0]]).reshape(1, 3, 1), np.full((1, 3, 1), 3.0),
            np.full((1, 3), 25.0))
    assert row.flux_err_njy == pytest.approx(coadd_likelihoods(*args, rho=np.full((1, 3), 0.5)).stats["sigma68"][0],
                                             rel=1e-6)


# --------------------------------------------------------------------------- binary COPY writer
# The writer streams binary COPY rows built column-wise. What it stores must be what the earlier text
# path stored: ``real`` values as PostgreSQL reads the shortest repr of each double (the server is
# the oracle below: CAST of the text literal the text path sent), jsonb with repr's digits and scale.


def _stored(engine, eid):
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM lumos.measurements WHERE exposure_id = :e ORDER BY method, ref_id"),
                            {"e": eid}).mappings().all()
    return {(r["method"], r["ref_id"]): r for r in rows}


def _same_as_text_path(engine, eid, key, column, literal, sql_type):
    """The stored value equals the server's reading of ``literal`` (text path), NULL included."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            f"SELECT {column} IS NOT DISTINCT FROM CAST(:lit AS {sql_type}) "
            f"AND coalesce({column}::text, '') = coalesce(CAST(:lit AS {sql_type})::text, '') "
            "FROM lumos.measurements WHERE exposure_id = :e AND method = :m AND ref_id = :r"),
            {"lit": literal, "e": eid, "m": key[0], "r": key[1]}).scalar_one()


def test_binary_copy_stores_what_the_text_path_stored(engine):
    run_id, (eid, *_) = _setup(engine)
    register_model_versions(engine, [ModelVersion("modelfit-1", "modelfit")])
    halfway = (np.float64(np.float32(100.5)) + np.float64(np.nextafter(np.float32(100.5), np.float32(200)))) / 2
    lumos = _table(5, method="lumos")
    lumos.loc[0, ["flux", "flux_err"]] = [np.nan, np.inf]
    lumos.loc[1, "x"] = np.nan
    lumos.loc[2, "y"] = np.inf
    lumos.loc[3, "x"] = halfway  # exactly between two floats: rounded as float4in rounds repr(halfway)
    wide = {"alpha": [0.5, 0.2, 0.1, 0.1, 0.1], "mu": [100.0, halfway, 1e-40, -0.0, 3e38], "sigma": [5.0] * 5}
    for name, values in wide.items():
        for k, v in enumerate(values):
            lumos[f"{name}_{k}"] = v
    lumos.loc[1, [f"alpha_{k}" for k in range(5)]] = np.nan  # no mixture: NULL
    lumos.loc[2, "mu_1"] = np.nan  # one component NaN: kept as NaN
    lumos.loc[2, "sigma_4"] = np.inf
    lumos["median"] = [1.0, 0.1, np.nan, 1e16, 2.5e-7]
    lumos["mode"] = [np.inf, 12345678.0, np.nan, -0.0, 7.0]
    lumos["truncated"] = np.array([True, np.nan, False, None, np.nan], dtype=object)
    lumos["likelihood"] = True
    lumos["n_iter"] = np.arange(5, dtype=np.int64)  # float after the concat below, as in measure_exposure
    lumos["note"] = np.array(['a "quoted" é', None, np.nan, "b", "b"], dtype=object)
    lumos["bins"] = pd.Series([[0.1, 0.5], None, np.array([1.0, 2.5e-7]), (1e16, -0.0), [0.3, 0.3]], dtype=object)
    # (the aperture rows get NaN there from the concat below: no value, and the vectorised path still applies)
    classical = _table(4, method="aperture")  # no mixture columns: NULL arrays
    classical["aperture_a"] = [2.0, np.nan, 3.25, np.nan]
    classical.loc[3, "flag"] = 2**20
    fit = _table(3, method="modelfit")
    fit["extras"] = [{"given": 1, "median": 9.0, "dropped": np.nan}, None, '{"text": [1, 2], "median": 4}']
    fit["median"] = [np.nan, np.nan, 5.5]  # a column overrides the given key; NaN drops it
    table = pd.concat([lumos, classical], ignore_index=True).sample(frac=1, random_state=3)
    versions = {"lumos": "lumos-t1", "aperture": "aperture-1", "modelfit": "modelfit-1"}
    assert write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(),
                              model_versions=versions) == 9
    assert write_measurements(engine, fit, exposure_id=eid, run_id=run_id, meta=_meta(),
                              model_versions=versions) == 3
    rows = _stored(engine, eid)
    assert len(rows) == 12
    key = lambda method, ref: (method, ref)  # noqa: E731
    assert rows[key("lumos", 0)]["flux"] is None and rows[key("lumos", 0)]["flux_err"] is None
    assert rows[key("lumos", 1)]["x"] is None and rows[key("lumos", 2)]["y"] == np.inf
    for ref in range(5):
        source = lumos.loc[ref]
        for column, sql_type in (("x", "real"), ("y", "real")):
            literal = None if np.isnan(source[column]) else repr(float(source[column]))
            assert _same_as_text_path(engine, eid, key("lumos", ref), column, literal, sql_type), (ref, column)
        for name in ("alpha", "mu", "sigma"):
            values = source[[f"{name}_{k}" for k in range(5)]].to_numpy(np.float64)
            literal = None if np.isnan(values).all() else "{" + ",".join(
                "NaN" if np.isnan(v) else repr(float(v)) for v in values) + "}"
            assert _same_as_text_path(engine, eid, key("lumos", ref), f"mix_{name}", literal, "real[]"), (ref, name)
        assert rows[key("lumos", ref)]["flux"] == (None if not np.isfinite(source["flux"]) else source["flux"])
    assert rows[key("lumos", 3)]["x"] == np.nextafter(np.float32(100.5), np.float32(200)) != np.float32(halfway)
    assert rows[key("lumos", 2)]["mix_mu"][1] != rows[key("lumos", 2)]["mix_mu"][1]  # NaN component kept
    assert rows[key("lumos", 1)]["mix_alpha"] is None and rows[key("lumos", 1)]["mix_mu"] is not None
    # truncated: a missing value of a row with a mixture is false (as the co-add read the old extras key)
    assert [rows[key("lumos", ref)]["mix_truncated"] for ref in range(5)] == [True, False, False, False, False]
    extras = {  # the list column takes the vectorised path for lists of numbers
        0: '{"note": "a \\"quoted\\" \\u00e9", "median": 1.0, "n_iter": 0.0, "likelihood": true, "bins": [0.1, 0.5]}',
        1: '{"mode": 12345678.0, "median": 0.1, "n_iter": 1.0, "likelihood": true}',
        2: '{"n_iter": 2.0, "likelihood": true, "bins": [1.0, 2.5e-07]}',
        3: '{"mode": -0.0, "note": "b", "median": 1e+16, "n_iter": 3.0, "likelihood": true, "bins": [1e+16, -0.0]}',
        4: '{"mode": 7.0, "note": "b", "median": 2.5e-07, "n_iter": 4.0, "likelihood": true, "bins": [0.3, 0.3]}',
    }
    for ref, text in extras.items():
        assert _same_as_text_path(engine, eid, key("lumos", ref), "extras", text, "jsonb"), ref
    assert rows[key("lumos", 1)]["extras"]["mode"] == 12345678.0
    with engine.connect() as conn:  # repr's scale survives: 12345678.0, not 12345678
        assert conn.execute(sa.text("SELECT extras ->> 'mode' FROM lumos.measurements WHERE ref_id = 1 "
                                    "AND method = 'lumos'")).scalar_one() == "12345678.0"
    for ref in range(4):
        got = rows[key("aperture", ref)]
        assert got["mix_alpha"] is None and got["mix_mu"] is None and got["mix_sigma"] is None
        assert got["mix_truncated"] is None
        assert got["extras"] == ({"aperture_a": classical["aperture_a"][ref]}
                                 if np.isfinite(classical["aperture_a"][ref]) else None)
        assert got["flag"] == classical["flag"][ref] and got["model_version"] == "aperture-1"
        assert got["flux"] == classical["flux"][ref] and got["band"] == "NB685"
    for ref in range(3):
        assert all(rows[key("modelfit", ref)][c] is None for c in ("mix_alpha", "mix_mu", "mix_sigma", "mix_truncated"))
    assert rows[key("modelfit", 0)]["extras"] == {"given": 1}
    assert rows[key("modelfit", 1)]["extras"] is None
    assert rows[key("modelfit", 2)]["extras"] == {"text": [1, 2], "median": 5.5}


def test_binary_copy_chunks_and_bad_values(engine, monkeypatch):
    from lumos_ops.pipeline import writer

    run_id, (eid, other, _) = _setup(engine)
    table = pd.concat([_table(40, seed=s, method=m) for s, m in enumerate(("aperture", "lumos"))], ignore_index=True)
    table["snr"] = np.where(table["method"] == "aperture", table["flux"] / table["flux_err"], np.nan)
    lumos = table["method"] == "lumos"
    for k in range(3):
        table[f"alpha_{k}"] = np.where(lumos, 1 / 3, np.nan)
        table[f"mu_{k}"] = np.where(lumos, 100.0 + k, np.nan)
        table[f"sigma_{k}"] = np.where(lumos, 5.0, np.nan)
    table["truncated"] = np.where(lumos, table["ref_id"] % 3 == 0, None)
    table["n_pixels"] = np.arange(80, dtype=np.int64)
    table["ok"] = table["ref_id"] % 2 == 0
    versions = {"aperture": "aperture-1", "lumos": "lumos-t1"}
    write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=_meta(), model_versions=versions)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT extras FROM lumos.measurements WHERE exposure_id = :e AND ref_id = 1 "
                                    "AND method = 'lumos'"), {"e": eid}).scalar_one() == {"n_pixels": 41, "ok": False}
    monkeypatch.setattr(writer, "_CHUNK_BYTES", 200)  # a few rows per chunk, chunks across the method runs
    shuffled = table.sample(frac=1, random_state=1)
    write_measurements(engine, shuffled, exposure_id=other, run_id=run_id, meta=_meta(), model_versions=versions)
    with engine.connect() as conn:
        stored = [conn.execute(sa.text("SELECT array_agg(m::text ORDER BY method, ref_id) FROM (SELECT ref_id, method, "
                                       "x, y, flux, flux_err, flag, mix_mu, mix_truncated, extras FROM lumos.measurements "
                                       "WHERE exposure_id = :e) AS m"), {"e": e}).scalar_one() for e in (eid, other)]
    assert len(stored[0]) == 80 and stored[0] == stored[1]
    # a mixture weight below the smallest normal real is a component without weight: stored as 0
    faint = table.copy()
    faint.loc[lumos, "alpha_2"] = 2.6e-49
    faint.loc[lumos, "alpha_0"] = 2 / 3 - 2.6e-49
    write_measurements(engine, faint, exposure_id=eid, run_id=run_id, meta=_meta(), model_versions=versions)
    with engine.connect() as conn:
        alphas = conn.execute(sa.text("SELECT mix_alpha FROM lumos.measurements WHERE exposure_id = :e AND "
                                      "method = 'lumos'"), {"e": eid}).scalars().all()
    assert len(alphas) == 40 and all(a[2] == 0.0 and a[1] == pytest.approx(1 / 3) for a in alphas)
    # a value the column cannot hold fails the whole write, before anything is sent
    bad = table.copy()
    bad.loc[5, "x"] = 1e39
    with pytest.raises(DatabaseError, match="out of range for type real"):
        write_measurements(engine, bad, exposure_id=eid, run_id=run_id, meta=_meta(), model_versions=versions)
    bad = table.copy()
    bad.loc[5, "flag"] = 2**31
    with pytest.raises(DatabaseError, match="out of range for type integer"):
        write_measurements(engine, bad, exposure_id=eid, run_id=run_id, meta=_meta(), model_versions=versions)
    bad = table.copy()  # rejected by the server during the COPY: rolled back
    bad["weird"] = np.array([[np.nan]] + [None] * (len(bad) - 1), dtype=object)
    with pytest.raises(DatabaseError, match="rolled back"):
        write_measurements(engine, bad, exposure_id=eid, run_id=run_id, meta=_meta(), model_versions=versions)
    assert _count(engine, "SELECT count(*) FROM lumos.measurements WHERE exposure_id = :e", e=eid) == 80
    assert write_measurements(engine, table.iloc[:0], exposure_id=eid, run_id=run_id, meta=_meta(),
                              model_versions=versions) == 0
    assert _count(engine, "SELECT count(*) FROM lumos.measurements WHERE exposure_id = :e", e=eid) == 0


def test_measurements_follow_their_exposure_without_a_row_foreign_key(engine):
    """V006: no per-row foreign key on exposure_id; the writer refuses an unknown exposure and
    deleting exposures (the owner's clean-up) deletes their measurements."""
    run_id, (eid, other, *_) = _setup(engine, n_exposures=2)
    for e in (eid, other):
        write_measurements(engine, _table(5), exposure_id=e, run_id=run_id, meta=_meta(),
                           model_versions={"aperture": "aperture-1"})
    with pytest.raises(DatabaseError, match="exposure_id=999"):
        write_measurements(engine, _table(5), exposure_id=999, run_id=run_id, meta=_meta(),
                           model_versions={"aperture": "aperture-1"})
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM lumos.exposures WHERE exposure_id = :e"), {"e": eid})
    assert _count(engine, "SELECT count(*) FROM lumos.measurements WHERE exposure_id = :e", e=eid) == 0
    assert _count(engine, "SELECT count(*) FROM lumos.measurements WHERE exposure_id = :e", e=other) == 5


def test_v007_moves_truncated_from_extras_to_its_column(db_url):
    """V007 backfills mix_truncated from extras ->> 'truncated' (false for a mixture without the key,
    NULL without a mixture) and takes the key out of extras (NULL when nothing else is left)."""
    from lumos_ops.pipeline.database import load_migrations, make_engine, upgrade

    engine = make_engine(db_url)
    try:
        migrations = load_migrations()
        v007 = [m.version for m in migrations].index(7)
        upgrade(engine, migrations=migrations[:v007])
        run_id, (eid, *_) = _setup(engine, n_exposures=1)
        mixture = "'{0.5,0.5}', '{1,2}', '{3,4}'"
        rows = {  # ref_id: (method, mixture arrays, extras)
            0: ("lumos", mixture, '{"truncated": true, "median": 1.0}'),
            1: ("lumos", mixture, '{"truncated": false}'),
            2: ("lumos", mixture, None),
            3: ("lumos", "NULL, '{1,2}', NULL", '{"truncated": true}'),
            4: ("lumos", mixture, '{"truncated": "odd"}'),
            5: ("aperture", "NULL, NULL, NULL", '{"aperture_a": 2.0}'),
            6: ("aperture", "NULL, NULL, NULL", '{"truncated": true}'),
        }
        with engine.begin() as conn:
            for ref, (method, arrays, extras) in rows.items():
                version = "lumos-t1" if method == "lumos" else "aperture-1"
                conn.execute(sa.text(
                    "INSERT INTO lumos.measurements (exposure_id, ref_id, method, model_version, run_id, band, "
                    f"mix_alpha, mix_mu, mix_sigma, extras) VALUES (:e, :r, :m, :v, :run, 'NB685', {arrays}, "
                    "CAST(:x AS jsonb))"), {"e": eid, "r": ref, "m": method, "v": version, "run": run_id, "x": extras})
        assert upgrade(engine) == [m.version for m in migrations[v007:]]
        with engine.connect() as conn:
            got = {r.ref_id: (r.mix_truncated, r.extras) for r in conn.execute(sa.text(
                "SELECT ref_id, mix_truncated, extras FROM lumos.measurements"))}
        assert got == {0: (True, {"median": 1.0}), 1: (False, None), 2: (False, None), 3: (True, None),
                       4: (False, {"truncated": "odd"}), 5: (None, {"aperture_a": 2.0}), 6: (None, None)}
    finally:
        engine.dispose()


def test_registering_a_night_waits_for_a_run_registering_it(engine):
    """Two runs registering the same night are serialised (the night's advisory lock), so the second
    one refreshes the first one's rows instead of failing on the (night, expnum, ccd) unique key."""
    import threading

    run_id, first = _setup(engine, n_exposures=2)
    rows = [{"key": f"exposures/{NIGHT}/exp{e:07d}_ccd01.fits", "night": NIGHT, "expnum": e, "ccd": 1,
             "size": 10, "checksum": f"d{e}"} for e in range(2)]
    done: list[list[int]] = []
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(hashtext('lumos.exposures:' || :n))"), {"n": NIGHT})
        worker = threading.Thread(target=lambda: done.append(register_exposures(engine, rows, run_id=run_id)))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and done == []  # waits for the night's lock
        holder.execute(sa.text("SELECT pg_advisory_unlock(hashtext('lumos.exposures:' || :n))"), {"n": NIGHT})
        holder.commit()
    worker.join(timeout=30)
    assert done == [first]
    assert _count(engine, "SELECT count(*) FROM lumos.exposures WHERE checksum LIKE 'd%'") == 2


def test_extras_lists_of_numbers_are_vectorised_and_other_lists_take_the_row_path():
    from lumos_ops.pipeline.writer import _extras_text

    vectorised = _extras_text(pd.Series([[0.1, 0.5], np.nan, None, np.array([2.0, 3e-9])], dtype=object))
    assert vectorised.to_pylist() == ["[0.1, 0.5]", None, None, "[2.0, 3e-9]"]
    # lists of other lengths or of non-numbers: json.dumps row by row
    mixed = _extras_text(pd.Series([[0.1], [1.0, 2.0], ["a"]], dtype=object))
    assert mixed.to_pylist() == ["[0.1]", "[1.0, 2.0]", '["a"]']
