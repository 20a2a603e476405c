"""Benchmark the measurement writer (``lumos_ops.pipeline.writer.write_measurements``) on real tables.

    .venv/bin/python benchmarks/bench_ingest.py [--targets 2500] [--exposures 20] [--repeats 3]
        [--prefill 1000000] [--shared-error]

A throwaway PostgreSQL (``LocalPostgres``: fsync and synchronous_commit off, as every throwaway
server of lumos-ops) gets every migration. One synthetic exposure with ``--targets`` galaxies is
measured once by ``measure_exposure`` with aperture, modelfit, optimal and LUMOS (the shipped
checkpoint; a random 5-component mixture with the same columns when none is shipped), so the
tables have exactly the columns the pipeline writes: the classical ones (``aperture_a``,
``background``, ``chi2``, ...), the LUMOS mixture ``alpha_k``/``mu_k``/``sigma_k`` and its
statistics (``median``, ``mode``, ``sigma68``, ``sigma95``, ``eta``, ``truncated``,
``likelihood``, ...), NaN where a method lacks a column. ``lumos.measurements`` is first filled
with about ``--prefill`` rows (primary key and source index in place, analysed), then each repeat
writes ``--exposures`` new exposures per case:

* classical: the aperture/modelfit/optimal rows (a ``methods=classical`` night);
* lumos: the LUMOS rows only;
* mixed: all four methods in one table (the default night);
* lumos rerun: the LUMOS exposures of this repeat written again (the DELETE finds rows).

Rates are rows / wall time of ``write_measurements``; "prep" is the Python work before the first
statement (building what is copied), "db" the rest (round trips, COPY, DELETE/INSERT, commit).
Wall time suffers when the machine is shared, so CPU time is shown too: of this Python process
("py cpu") and of every process of the PostgreSQL server ("pg cpu", from /proc), and "rows/cpu-s"
= rows / (py cpu + pg cpu), the rate one core each for Python and the server would reach. The
table shows the median over repeats (min-max in brackets).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

NIGHT = "2001-01-01"
CLASSICAL = ("aperture", "modelfit", "optimal")
VERSIONS = {"aperture": "aperture-1", "modelfit": "modelfit-1", "optimal": "optimal-1", "lumos": "lumos-bench"}
_PREP_NAMES = ("_prepare_rows", "_staging_frame")  # the writer's Python preparation step (new name, old name)


def _shipped_model() -> Path | None:
    from lumos_ops.lumos.weights import MODELS_DIR, shipped_models

    path = MODELS_DIR / shipped_models()["default"]
    return path if path.is_file() else None


def _fake_lumos(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """LUMOS rows with the columns of ``LumosMethod`` when no checkpoint is shipped."""
    rng = np.random.default_rng(seed)
    rows = table.loc[table["method"] == "aperture"].copy()
    n = len(rows)
    rows["method"] = "lumos"
    alpha = rng.dirichlet(np.ones(5), n)
    mu = rows["flux"].to_numpy()[:, None] + rng.normal(0, 5, (n, 5))
    sigma = rng.uniform(3, 60, (n, 5))
    for k in range(5):
        rows[f"alpha_{k}"], rows[f"mu_{k}"], rows[f"sigma_{k}"] = alpha[:, k], mu[:, k], sigma[:, k]
    off = ~np.isfinite(rows["flux"].to_numpy())
    for name in ("mean", "std", "median", "mode", "sigma68", "sigma95", "eta"):
        values = rng.uniform(1, 300, n)
        values[off] = np.nan
        rows[name] = values
    rows["truncated"] = rng.random(n) < 0.01
    rows["likelihood"] = True
    return rows


def build_tables(n_targets: int, seed: int = 1, *, shared_error: bool = False) -> dict[str, pd.DataFrame]:
    """Tables of one exposure as ``measure_exposure`` returns them: classical, lumos and mixed.

    ``shared_error``: LUMOS measures with a copy of the checkpoint that records a shared-error term
    with a residual axis (:mod:`lumos_ops.lumos.shared_error`), so its rows carry what an adapted
    model's do (``shared_rho``, ``model_residual``, ``shared_rho_bins``, ``shared_residual_cuts``).
    """
    from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure
    from lumos_ops.io.exposure import read_exposure
    from lumos_ops.measure import measure_exposure

    side = int(max(512, math.ceil(math.sqrt(n_targets) * 40)))
    shape = (side, side)
    catalog = random_catalog(n_targets, shape=shape, margin=40, seed=seed)
    flux = np.random.default_rng(seed).lognormal(np.log(80.0), 1.0, n_targets)
    model = _shipped_model()
    methods = (*CLASSICAL, "lumos") if model is not None else CLASSICAL
    options = {"model": str(model)} if model is not None else {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exposure.fits"
        synthetic_exposure(catalog, flux, shape=shape, seed=seed + 1).write(path)
        if shared_error and model is not None:
            options["model"] = str(_with_shared_error(model, Path(tmp) / "with_shared_error.pt"))
        mixed = measure_exposure(read_exposure(path), catalog, methods=methods, **options)
    if model is None:
        mixed = pd.concat([mixed, _fake_lumos(mixed, seed)], ignore_index=True)

    def only(methods: tuple[str, ...]) -> pd.DataFrame:
        rows = mixed.loc[mixed["method"].isin(methods)].reset_index(drop=True)
        keep = [c for c in rows.columns if c in ("ref_id", "method", "x", "y", "band", "flux", "flux_err", "flag")
                or rows[c].notna().any()]
        return rows[keep]

    return {"classical": only(CLASSICAL), "lumos": only(("lumos",)), "mixed": mixed}


def _with_shared_error(model: Path, out: Path) -> Path:
    """A copy of ``model`` whose metadata records a shared-error term with a residual axis."""
    from lumos_ops.lumos.checkpoint import load_checkpoint, save_checkpoint
    from lumos_ops.lumos.shared_error import SNR_EDGES, SharedError

    k = len(SNR_EDGES) - 1
    term = SharedError(SNR_EDGES, tuple(np.linspace(0.0, 0.3, k)), residual_cuts=(0.01,),
                       rho_by_residual=(tuple(np.linspace(0.0, 0.2, k)), tuple(np.linspace(0.1, 0.6, k))), source="bench")
    loaded = load_checkpoint(model, device="cpu")
    save_checkpoint(out, loaded.net, arch=loaded.arch, normalization=loaded.normalization,
                    metadata={**loaded.metadata, "shared_error": term.to_dict()})
    return out


class PrepTimer:
    """Wraps the writer's preparation function and adds up the seconds spent in it."""

    def __init__(self) -> None:
        from lumos_ops.pipeline import writer

        self.seconds = 0.0
        self.name = next((n for n in _PREP_NAMES if hasattr(writer, n)), None)
        if self.name is None:
            return
        original = getattr(writer, self.name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(writer, self.name, timed)


def _register(engine, run_id: int, first_expnum: int, count: int) -> list[int]:
    from lumos_ops.pipeline.writer import register_exposures

    rows = [{"key": f"bench/{NIGHT}/exp{e:07d}_ccd01.fits", "night": NIGHT, "expnum": e, "ccd": 1, "size": 1,
             "checksum": f"c{e}"} for e in range(first_expnum, first_expnum + count)]
    return register_exposures(engine, rows, run_id=run_id)


def _meta():
    from lumos_ops.pipeline.writer import ExposureMeta

    return ExposureMeta(band="NB685", epoch=0, exptime=90.0, psf_fwhm=1.0, zero_point=25.0, mjd=None,
                        nan_fraction=0.0)


def prefill(engine, run_id: int, table: pd.DataFrame, n_rows: int) -> int:
    """Fill ``lumos.measurements`` with about ``n_rows`` rows: one write, then SQL copies of it."""
    import sqlalchemy as sa

    from lumos_ops.pipeline.writer import write_measurements

    count = max(1, round(n_rows / len(table)))
    ids = _register(engine, run_id, 1_000_000, count)
    write_measurements(engine, table, exposure_id=ids[0], run_id=run_id, meta=_meta(), model_versions=VERSIONS)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO lumos.measurements (exposure_id, ref_id, method, model_version, run_id, band, x, y, flux, "
            "flux_err, flag, mix_alpha, mix_mu, mix_sigma, mix_truncated, extras) "
            "SELECT e.id, m.ref_id, m.method, m.model_version, m.run_id, m.band, m.x, "
            "m.y, m.flux, m.flux_err, m.flag, m.mix_alpha, m.mix_mu, m.mix_sigma, m.mix_truncated, m.extras "
            "FROM lumos.measurements AS m CROSS JOIN unnest(CAST(:ids AS bigint[])) AS e(id) "
            "WHERE m.exposure_id = :first"
        ), {"ids": ids[1:], "first": ids[0]})
        conn.execute(sa.text("UPDATE lumos.exposures SET status = 'done', n_measurements = :n, measured_run_id = :r "
                             "WHERE exposure_id = ANY(:ids)"), {"n": len(table), "r": run_id, "ids": ids})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE lumos.measurements"))
        conn.execute(sa.text("VACUUM ANALYZE lumos.exposures"))
        return int(conn.execute(sa.text("SELECT count(*) FROM lumos.measurements")).scalar_one())


def server_cpu(pg) -> float:
    """CPU seconds (user + system) used so far by the live processes of a PostgreSQL server."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(entry) == postmaster or int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def timed_writes(engine, pg, run_id: int, table: pd.DataFrame, ids: list[int], timer: PrepTimer) -> dict[str, float]:
    """Write ``table`` to each exposure of ``ids``; rows, wall, prep and CPU seconds."""
    from lumos_ops.pipeline.writer import write_measurements

    meta = _meta()
    prep0 = timer.seconds
    wall = 0.0
    rows = 0
    cpu0, server0 = time.process_time(), server_cpu(pg)
    for eid in ids:
        start = time.perf_counter()
        rows += write_measurements(engine, table, exposure_id=eid, run_id=run_id, meta=meta, model_versions=VERSIONS)
        wall += time.perf_counter() - start
    return {"rows": rows, "wall": wall, "prep": timer.seconds - prep0, "n": len(ids),
            "py_cpu": time.process_time() - cpu0, "pg_cpu": server_cpu(pg) - server0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=2500, help="catalogue targets per exposure")
    parser.add_argument("--exposures", type=int, default=20, help="exposures written per case and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (the median is reported)")
    parser.add_argument("--prefill", type=int, default=1_000_000, help="rows in lumos.measurements before timing")
    parser.add_argument("--shared-error", action="store_true",
                        help="LUMOS rows of a model with a shared-error term (the extras an adapted model writes)")
    args = parser.parse_args(argv)

    import sqlalchemy as sa

    from lumos_ops.pipeline.database import make_engine, upgrade
    from lumos_ops.pipeline.local_postgres import LocalPostgres
    from lumos_ops.pipeline.writer import ModelVersion, register_model_versions, start_run

    start = time.perf_counter()
    tables = build_tables(args.targets, shared_error=args.shared_error)
    print(f"tables from measure_exposure ({args.targets} targets): "
          + ", ".join(f"{k} {len(v):,} rows x {v.shape[1]} columns" for k, v in tables.items())
          + f" [{time.perf_counter() - start:.1f} s]", flush=True)
    timer = PrepTimer()
    pg = LocalPostgres.start(database="bench_ingest")
    try:
        engine = make_engine(pg.url)
        upgrade(engine)
        with engine.connect() as conn:
            server = conn.execute(sa.text("SHOW server_version")).scalar_one()
        run_id = start_run(engine, dag_id="bench", dag_run_id="ingest", night=NIGHT, code_version="bench",
                           settings={})
        register_model_versions(engine, [ModelVersion(v, m, kind="lumos" if m == "lumos" else "classical")
                                         for m, v in VERSIONS.items()])
        start = time.perf_counter()
        total = prefill(engine, run_id, tables["mixed"], args.prefill)
        print(f"PostgreSQL {server}; lumos.measurements prefilled with {total:,} rows "
              f"[{time.perf_counter() - start:.1f} s]", flush=True)
        cases = ("classical", "lumos", "mixed", "lumos rerun")
        results: dict[str, list[dict[str, float]]] = {c: [] for c in cases}
        expnum = 0
        # one warm-up write (imports, connection, plan caches) outside the timing
        warm = _register(engine, run_id, 900_000, 1)
        timed_writes(engine, pg, run_id, tables["mixed"], warm, timer)
        for repeat in range(args.repeats):
            lumos_ids: list[int] = []
            for case in cases:
                if case == "lumos rerun":
                    ids, table = lumos_ids, tables["lumos"]
                else:
                    ids, table = _register(engine, run_id, expnum, args.exposures), tables[case]
                    expnum += args.exposures
                    if case == "lumos":
                        lumos_ids = ids
                results[case].append(timed_writes(engine, pg, run_id, table, ids, timer))
            print(f"  repeat {repeat + 1}/{args.repeats}: "
                  + ", ".join(f"{c} {results[c][-1]['rows'] / results[c][-1]['wall']:,.0f} rows/s" for c in cases),
                  flush=True)
        with engine.connect() as conn:
            total = int(conn.execute(sa.text("SELECT count(*) FROM lumos.measurements")).scalar_one())
        engine.dispose()
    finally:
        pg.stop()

    print()
    print(f"write_measurements, {args.exposures} exposures per case, median of {args.repeats} repeats "
          f"(table ends with {total:,} rows; prep step: writer.{timer.name})")
    header = (f"{'case':<12} {'rows/exp':>8} {'rows/s':>7} {'(min-max)':>15} {'prep ms':>7} {'db ms':>6} "
              f"{'py cpu ms':>9} {'pg cpu ms':>9} {'rows/cpu-s':>10}")
    print(header)
    print("-" * len(header))
    for case in cases:
        runs = results[case]
        rates = [r["rows"] / r["wall"] for r in runs]
        per_exposure = {key: statistics.median(1e3 * r[key] / r["n"] for r in runs)
                        for key in ("prep", "py_cpu", "pg_cpu")}
        db_ms = statistics.median(1e3 * (r["wall"] - r["prep"]) / r["n"] for r in runs)
        cpu_rate = statistics.median(r["rows"] / max(r["py_cpu"] + r["pg_cpu"], 1e-9) for r in runs)
        print(f"{case:<12} {runs[0]['rows'] / runs[0]['n']:>8,.0f} {statistics.median(rates):>7,.0f} "
              f"{f'({min(rates):,.0f}-{max(rates):,.0f})':>15} {per_exposure['prep']:>7.1f} {db_ms:>6.1f} "
              f"{per_exposure['py_cpu']:>9.1f} {per_exposure['pg_cpu']:>9.1f} {cpu_rate:>10,.0f}")
    print("\nms are per exposure (medians); prep and db split the wall time, py/pg cpu are CPU time.")
    print("Target: >= 50,000 rows/s for LUMOS rows. On a shared machine the wall-time rates vary: rerun and compare.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
