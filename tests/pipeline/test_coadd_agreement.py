"""The injection report's co-adds are the nightly pipeline's co-adds of the same per-exposure rows.

``lumos_ops.evaluation.injection_report._coadds`` (what ``lumos inject`` scores) and
``lumos_ops.pipeline.coadd.coadd_night`` (what ``lumos.coadds`` stores) are two code paths for one
computation: eq. (21) with the error floor counted once for the classical methods
(``coadd_with_floor`` in Python, the same formula in SQL), the product of likelihoods for LUMOS
(``coadd_likelihoods`` with the outlier fraction eps and the shared-error rho, the larger of the
rows' ``floor_rho`` and the model's recorded term). Here a few sources x 5 exposures of an
aperture, an optimal and a LUMOS method, with nonzero flux and neighbour floors, are written with
the pipeline's writer, co-added by ``coadd_night`` in the throwaway PostgreSQL, and co-added again
by the report's code (its per-co-add fluxes and errors read where it hands them to
``fixed_truth_bins``).

What differs by design, and how the rows are matched here:

* Units. The pipeline calibrates each exposure to nJy (``f * 10**(-0.4 (ZP - 31.4))``) before
  combining; the report combines the rows in their own unit (an injection's e-/s, one scale for
  every placement: it passes ZP 31.4, a factor of 1). The report is therefore given the rows
  calibrated exposure by exposure (flux, errors and mixture components times the exposure's
  factor; ``floor_rho`` is a ratio): with every ZP 31.4 those are the stored rows themselves.
* Which rows. The report co-adds disjoint runs of exactly ``n`` placements with finite flux and
  ignores flags; the pipeline co-adds every stored row of the source whose flag has none of
  ``DEFAULT_EXCLUDE_FLAGS``. Here every source has 5 unflagged exposures and the report runs n = 5.
* The shared-error term. The report's plain co-adds (``coadds``) use the floor's rho alone, as the
  pipeline does for a model without a recorded term (the shipped default); its ``coadds_shared_error``
  take the term it measures on the injection (cross-fitted), where the pipeline takes the term
  recorded in the model. Given the same term (the report's estimate replaced by a fixed
  ``SharedError`` with a residual axis), the two agree.
* Mixtures are stored as ``real[]``: the rows are built float32-exact, so both paths see the same
  numbers.
* Truncated mixtures (eq. 10, population-prior models) are co-added truncated at zero by both: LUMOS
  sources ``TRUNCATED + i`` carry ``truncated`` True, the first of them with a PDF that straddles
  zero, where truncation moves the co-add.

The classical co-adds agree to rtol 1e-9 (SQL vs numpy); LUMOS to 1e-5 of the co-add's sigma68,
far inside the grid's documented accuracy (1 % of sigma68 against a brute-force product,
docs/likelihood.md §3): the two paths evaluate the same grid, only the order of the exposures in
the float32 sum can differ.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from lumos_ops.evaluation import injection_report
from lumos_ops.lumos.coadd import njy_factor
from lumos_ops.lumos.inference import mixture_table
from lumos_ops.lumos.mixture_table import Mixtures
from lumos_ops.lumos.shared_error import SharedError, with_shared_rho
from lumos_ops.photometry.error_floor import apply_error_floor
from lumos_ops.pipeline.coadd import coadd_night
from lumos_ops.pipeline.writer import (
    ExposureMeta,
    ModelVersion,
    register_exposures,
    register_model_versions,
    start_run,
    write_measurements,
)

pytestmark = pytest.mark.postgres

NIGHT = "2026-11-21"
N_EXP = 5
TRUTH_NJY = np.array([2500.0, 12000.0, 45000.0, 160000.0])  # true SNR (before the floor) 6, 24, 62, 133
FLOOR, NEIGHBOUR_FLOOR = 0.02, 0.025
OUTLIER_FRACTIONS = (0.0, 0.01)
CLASSICAL = ("aperture", "optimal")
VERSIONS = {"aperture": "aperture-1", "optimal": "optimal-1", "lumos": "lumos-t1"}
PLAIN, SHARED, TRUNCATED = 0, 10, 20  # ref_id offsets of the LUMOS sources without and with a recorded
# shared-error term, and of truncated ones (eq. 10)
# a recorded term with a residual axis: rho per SNR bin (flux / flux_err_stat), per residual bin
SHARED_TERM = SharedError(snr_edges=(0.0, 20.0, 80.0, np.inf), rho=(0.0, 0.15, 0.35), n_galaxies=(50, 50, 50),
                          residual_cuts=(0.01,), rho_by_residual=((0.0, 0.05, 0.1), (0.25, 0.5, 0.7)))
# per source (one per truth): each exposure's model_residual (a residual median below, above and
# unknown relative to the cut; the last with a missing value)
RESIDUALS = np.array([[0.001, 0.002, 0.0005, 0.003, 0.001],
                      [0.005, 0.02, 0.03, 0.001, 0.015],
                      [np.nan] * N_EXP,
                      [0.004, np.nan, 0.03, 0.02, 0.012]])
_DB = itertools.count()


def _f32(values) -> np.ndarray:
    """Values as the database's ``real`` keeps them."""
    return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def _exposure_rows(zero_points: tuple[float, ...], seed: int = 3) -> list[pd.DataFrame]:
    """Per exposure, the measured rows (e-/s) of every method, as ``measure_exposure`` leaves them:
    the error floors applied (``flux_err_stat``, ``floor_rho``, LUMOS mixtures widened), LUMOS
    sources ``SHARED + i`` carrying the recorded shared-error term."""
    rng = np.random.default_rng(seed)
    n = TRUTH_NJY.size
    neighbour_share = np.array([0.0, 0.0, 0.3, 0.8])  # blended targets: neighbours' light / flux
    tables = []
    for j, zp in enumerate(zero_points):
        true_e = TRUTH_NJY / njy_factor(zp)
        stat = 400.0 * np.sqrt(1.0 + TRUTH_NJY / 20000.0) / njy_factor(zp)  # e-/s: the same SNR at any ZP
        parts = []
        for method, width in zip(CLASSICAL, (1.2, 1.0)):
            flux = true_e + width * stat * rng.normal(size=n)
            part = pd.DataFrame({"ref_id": np.arange(n), "flux": flux, "flux_err": width * stat})
            parts.append(apply_error_floor(part.assign(method=method), FLOOR, neighbour_light=neighbour_share * true_e,
                                           neighbour_floor=NEIGHBOUR_FLOOR))
        sigma = 1.1 * stat
        centre = true_e + sigma * rng.normal(size=n)
        if j == 3:
            centre[1] = true_e[1] + 15.0 * sigma[1]  # a bad exposure, which eps discounts
        alpha = np.tile([0.8, 0.15, 0.05], (n, 1))
        mu = centre[:, None] + sigma[:, None] * np.array([0.0, 0.4, -0.6])
        sig = sigma[:, None] * np.array([1.0, 1.7, 4.0])
        mix = Mixtures(alpha=_f32(alpha), mu=_f32(mu), sigma=_f32(sig), truncated=np.zeros(n, dtype=bool))
        lumos = pd.DataFrame(mixture_table(mix, likelihood=True)).assign(ref_id=np.arange(n), method="lumos")
        lumos = apply_error_floor(lumos, FLOOR, neighbour_light=neighbour_share * true_e, neighbour_floor=NEIGHBOUR_FLOOR)
        lumos["model_residual"] = RESIDUALS[:, j]
        shared = with_shared_rho(lumos, SHARED_TERM).assign(ref_id=SHARED + np.arange(n))
        shift = np.where(np.arange(n) == 0, 0.9 * true_e, 0.0)[:, None]  # source 0's PDF straddles zero
        low = Mixtures(alpha=_f32(alpha), mu=_f32(mu - shift), sigma=_f32(sig), truncated=np.ones(n, dtype=bool))
        low = pd.DataFrame(mixture_table(low, likelihood=True)).assign(ref_id=TRUNCATED + np.arange(n), method="lumos")
        low = apply_error_floor(low, FLOOR, neighbour_light=neighbour_share * true_e, neighbour_floor=NEIGHBOUR_FLOOR)
        parts += [lumos.assign(ref_id=PLAIN + np.arange(n)), shared, low]
        table = pd.concat(parts, ignore_index=True)
        for column in [c for c in table.columns if c.split("_")[0] in ("alpha", "mu", "sigma") and c[-1].isdigit()]:
            table[column] = _f32(table[column])  # stored as real[]: both paths read these values
        table["truncated"] = table["truncated"].astype(object).where(table["method"] == "lumos", None)
        tables.append(table.assign(band="NB685", x=10.0, y=20.0, flag=0))
    return tables


def _write_and_coadd(engine: sa.Engine, zero_points: tuple[float, ...],
                     tables: list[pd.DataFrame]) -> dict[float, pd.DataFrame]:
    """Write one exposure per table and co-add the night once per outlier fraction: the stored co-adds."""
    run_id = start_run(engine, dag_id="test", dag_run_id="agreement", night=NIGHT, code_version="t", settings={})
    register_model_versions(engine, [ModelVersion(VERSIONS[m], m) for m in CLASSICAL]
                            + [ModelVersion(VERSIONS["lumos"], "lumos", kind="lumos", checksum="abc")])
    ids = register_exposures(engine, [{"key": f"exposures/{NIGHT}/exp{j:07d}_ccd01.fits", "night": NIGHT, "expnum": j,
                                       "ccd": 1, "size": 10, "checksum": f"c{j}"} for j in range(N_EXP)], run_id=run_id)
    for eid, zp, table in zip(ids, zero_points, tables):
        meta = ExposureMeta(band="NB685", epoch=0, exptime=90.0, psf_fwhm=1.0, zero_point=zp, mjd=None, nan_fraction=0.0)
        write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=meta, model_versions=VERSIONS)
    stored = {}
    for eps in OUTLIER_FRACTIONS:
        summary = coadd_night(engine, night=NIGHT, run_id=run_id, outlier_fraction=eps)
        assert summary.pdf_coadds == 3 * TRUTH_NJY.size
        with engine.connect() as conn:
            stored[eps] = pd.read_sql(sa.text("SELECT ref_id, method, n_used, flux_njy, flux_err_njy, n_outliers "
                                              "FROM lumos.coadds"), conn).set_index(["method", "ref_id"]).sort_index()
    return stored


def _injection_frame(tables: list[pd.DataFrame], zero_points: tuple[float, ...], method: str,
                     ref_ids: np.ndarray) -> pd.DataFrame:
    """The rows of ``method`` and ``ref_ids`` as an injection table: one galaxy per source, one
    placement per exposure, calibrated to nJy exposure by exposure (the report's one unit)."""
    rows = []
    for j, (zp, table) in enumerate(zip(zero_points, tables)):
        part = table[(table["method"] == method) & table["ref_id"].isin(ref_ids)].copy()
        c = float(njy_factor(zp))
        scaled = ["flux", "flux_err", "flux_err_stat"]
        if method == "lumos":
            scaled += [c_ for c_ in part.columns if c_.startswith(("mu_", "sigma_")) and c_[-1].isdigit()]
        for column in scaled:
            part[column] = part[column].to_numpy(np.float64) * c
        rows.append(part.assign(galaxy=part["ref_id"], place=j, frame=f"frame{j % 2}",
                                true_flux=TRUTH_NJY[part["ref_id"].to_numpy() % SHARED],
                                crb_err=part["flux_err_stat"]))
    return pd.concat(rows, ignore_index=True).sort_values(["galaxy", "place"], ignore_index=True)


def _report_coadds(call, n_sources: int, monkeypatch: pytest.MonkeyPatch, **patches):
    """Run ``call()`` (the report's co-add code) and return its result and the (truth, flux, err) of
    every set of ``n_sources`` co-adds it handed to ``fixed_truth_bins``, in galaxy order."""
    seen = []

    def spy(truth, flux, err, **_):
        seen.append((np.asarray(truth, dtype=np.float64), np.asarray(flux, dtype=np.float64),
                     np.asarray(err, dtype=np.float64)))
        return []

    with monkeypatch.context() as mp:
        mp.setattr(injection_report, "fixed_truth_bins", spy)
        for target, value in patches.items():
            mp.setattr(target, value)
        out = call()
    return out, [s for s in seen if s[1].size == n_sources]


ZERO_POINT_SETS = {"njy": (31.4,) * N_EXP, "calibrated": (25.0, 25.4, 24.7, 25.2, 24.9)}


@pytest.fixture(scope="module", params=sorted(ZERO_POINT_SETS))
def night(request, pg_server):
    """(zero points, per-exposure tables, stored co-adds per outlier fraction) of one written night."""
    from lumos_ops.pipeline.database import make_engine, upgrade

    zero_points = ZERO_POINT_SETS[request.param]
    engine = make_engine(pg_server.create_database(f"coadd_agreement_{next(_DB)}"))
    try:
        upgrade(engine)
        tables = _exposure_rows(zero_points)
        yield zero_points, tables, _write_and_coadd(engine, zero_points, tables)
    finally:
        engine.dispose()


def test_rows_exercise_the_floor_the_outlier_and_the_shared_term(night):
    zero_points, tables, _ = night
    rows = pd.concat(tables, ignore_index=True)
    for method in (*CLASSICAL, "lumos"):
        mine = rows[rows["method"] == method]
        assert (mine["flux_err"] > mine["flux_err_stat"]).all() and (mine["floor_rho"] > 0.01).any()
    shared = rows[(rows["method"] == "lumos") & (rows["ref_id"] >= SHARED)]
    # the recorded term is above the floor's rho on some rows and below it on others: max() matters
    assert (shared["shared_rho"] > shared["floor_rho"]).any() and (shared["shared_rho"] < shared["floor_rho"]).any()


@pytest.mark.parametrize("method", CLASSICAL)
def test_classical_coadds_agree(night, method, monkeypatch):
    zero_points, tables, stored = night
    ref_ids = np.arange(TRUTH_NJY.size)
    frame = _injection_frame(tables, zero_points, method, ref_ids)
    _, seen = _report_coadds(lambda: injection_report._coadds(frame, method, N_EXP), ref_ids.size, monkeypatch)
    assert len(seen) == 1
    truth, flux, err = seen[0]
    np.testing.assert_array_equal(truth, TRUTH_NJY)
    for eps in OUTLIER_FRACTIONS:  # eps is a LUMOS prior: the classical co-adds do not see it
        row = stored[eps].loc[method].loc[ref_ids]
        assert (row["n_used"] == N_EXP).all() and row["n_outliers"].isna().all()
        np.testing.assert_allclose(flux, row["flux_njy"], rtol=1e-9)
        np.testing.assert_allclose(err, row["flux_err_njy"], rtol=1e-9)
    # the floor counted once: wider than the statistical errors alone, and wider than the floor added to each
    # exposure's error as if independent (which would average it down)
    w = 1.0 / frame["flux_err_stat"].to_numpy().reshape(ref_ids.size, N_EXP) ** 2
    naive = 1.0 / np.sqrt((1.0 / frame["flux_err"].to_numpy().reshape(ref_ids.size, N_EXP) ** 2).sum(axis=1))
    assert np.all(err > 1.0 / np.sqrt(w.sum(axis=1))) and np.all(err[2:] > 1.5 * naive[2:])


def _check_lumos(flux, err, stored: pd.DataFrame, ref_ids: np.ndarray) -> None:
    row = stored.loc["lumos"].loc[ref_ids]
    assert (row["n_used"] == N_EXP).all()
    np.testing.assert_allclose(err, row["flux_err_njy"], rtol=1e-5)
    np.testing.assert_allclose(flux, row["flux_njy"], rtol=0, atol=1e-5 * float(np.min(err)))


@pytest.mark.parametrize("eps", OUTLIER_FRACTIONS)
def test_lumos_coadds_agree(night, eps, monkeypatch):
    """The report's plain co-adds (floor rho only) are the pipeline's for a model without a recorded term."""
    zero_points, tables, stored = night
    ref_ids = PLAIN + np.arange(TRUTH_NJY.size)
    frame = _injection_frame(tables, zero_points, "lumos", ref_ids)
    out, seen = _report_coadds(lambda: injection_report._coadds(frame, "lumos", N_EXP, outlier_fraction=eps),
                               ref_ids.size, monkeypatch)
    assert len(seen) == 1
    truth, flux, err = seen[0]
    np.testing.assert_array_equal(truth, TRUTH_NJY)
    _check_lumos(flux, err, stored[eps], ref_ids)
    n_outliers = stored[eps].loc["lumos"].loc[ref_ids, "n_outliers"].to_numpy()
    assert out["discounted"] == pytest.approx(n_outliers.mean(), abs=1e-12)
    assert n_outliers.tolist() == ([0, 1, 0, 0] if eps else [0, 0, 0, 0])  # the +15 sigma exposure of source 1


@pytest.mark.parametrize("eps", OUTLIER_FRACTIONS)
def test_lumos_coadds_with_the_shared_term_agree(night, eps, monkeypatch):
    """The report's ``coadds_shared_error`` given the term the pipeline's rows carry (its own
    cross-fitted estimate replaced by it) are the pipeline's co-adds: the residual bin of each
    source's median ``model_residual``, the larger of that rho and the floor's."""
    zero_points, tables, stored = night
    ref_ids = SHARED + np.arange(TRUTH_NJY.size)
    frame = _injection_frame(tables, zero_points, "lumos", ref_ids)
    out, seen = _report_coadds(
        lambda: injection_report._shared_error(frame, frame["model_residual"].to_numpy(np.float64),
                                               outlier_fraction=eps),
        ref_ids.size, monkeypatch, **{"lumos_ops.lumos.shared_error.estimate_shared_error": lambda *a, **k: SHARED_TERM})
    assert len(seen) == 1
    truth, flux, err = seen[0]
    np.testing.assert_array_equal(truth, TRUTH_NJY)
    _check_lumos(flux, err, stored[eps], ref_ids)
    five = next(c for c in out["coadds_shared_error"] if c["n"] == N_EXP)
    assert five["discounted"] == pytest.approx(stored[eps].loc["lumos"].loc[ref_ids, "n_outliers"].mean(), abs=1e-12)
    # the term widened the co-adds of the sources it is above the floor for
    plain = stored[eps].loc["lumos"].loc[PLAIN + np.arange(TRUTH_NJY.size), "flux_err_njy"].to_numpy()
    assert np.all(err >= plain * (1 - 1e-6)) and np.any(err > 1.05 * plain)


def test_truncated_lumos_coadds_agree(night, monkeypatch):
    """Truncated mixtures are co-added truncated at zero by the report as by the pipeline; for the
    source whose PDF straddles zero, untruncated mixtures would give another co-add."""
    zero_points, tables, stored = night
    ref_ids = TRUNCATED + np.arange(TRUTH_NJY.size)
    frame = _injection_frame(tables, zero_points, "lumos", ref_ids)
    assert frame["truncated"].astype(bool).all()
    _, seen = _report_coadds(lambda: injection_report._coadds(frame, "lumos", N_EXP), ref_ids.size, monkeypatch)
    assert len(seen) == 1
    _, flux, err = seen[0]
    _check_lumos(flux, err, stored[0.0], ref_ids)
    _, untruncated = _report_coadds(lambda: injection_report._coadds(frame.assign(truncated=False), "lumos", N_EXP),
                                    ref_ids.size, monkeypatch)
    assert abs(untruncated[0][1][0] - flux[0]) > 0.01 * err[0]
