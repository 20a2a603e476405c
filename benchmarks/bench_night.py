"""Benchmark a simulated night end to end: exposures/min, measurements/s, database rows/s, and
Airflow's overhead as a share of the night.

    .venv/bin/python benchmarks/bench_night.py [--galaxies 300] [--ccd 1024] [--bands NB615 NB685]
        [--exposures 2] [--write-rows 200000] [--no-airflow]

Everything runs on embedded defaults: a throwaway PostgreSQL, a local-directory object store, the
survey simulator, and Airflow (``dag.test()``, SQLite metadata) in a temporary AIRFLOW_HOME. After a
warm-up run, the same night is processed by ``lumos night run --no-airflow``'s code path and by the
``lumos_nightly`` DAG (rows are replaced, never duplicated); the overhead is ``1 - (no-Airflow wall time) / (DAG wall time)``. The write
benchmark COPYs synthetic per-exposure tables (classical rows, then LUMOS rows with 15 mixture
values) through the production writer. Target: >= 50,000 rows/s for the writes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _simulate(args: argparse.Namespace, night: str, store_dir: Path) -> int:
    from lumos_ops.sim import SurveyConfig, simulate_survey

    later = (dt.date.fromisoformat(night) + dt.timedelta(days=365)).isoformat()
    config = SurveyConfig(n_galaxies=args.galaxies, bands=tuple(args.bands), n_exposures=args.exposures,
                          n_epochs=1, nights=1, first_nights=(night, later), ccd_shape=(args.ccd, args.ccd),
                          seed=3)
    manifest = simulate_survey(config, store_dir)
    return len(manifest.exposure_paths)


def _write_benchmark(engine, n_rows: int, *, lumos: bool) -> tuple[int, float]:
    from lumos_ops.pipeline.writer import (
        ExposureMeta,
        ModelVersion,
        register_exposures,
        register_model_versions,
        start_run,
        write_measurements,
    )

    method, version = ("lumos", "lumos-bench") if lumos else ("aperture", "aperture-1")
    run_id = start_run(engine, dag_id="bench", dag_run_id=f"write-{method}", night="2000-01-01",
                       code_version="bench", settings={})
    register_model_versions(engine, [ModelVersion(version, method, kind="lumos" if lumos else "classical")])
    per_exposure = 25_000  # rows per exposure table; the last table holds the rest of n_rows
    sizes = [per_exposure] * (n_rows // per_exposure) + ([n_rows % per_exposure] if n_rows % per_exposure else [])
    n_exposures = len(sizes)
    rows = [{"key": f"bench/{method}/{e}.fits", "night": "2000-01-01", "expnum": e + (10_000 if lumos else 0),
             "ccd": 1, "size": 1, "checksum": "x"} for e in range(n_exposures)]
    ids = register_exposures(engine, rows, run_id=run_id)
    rng = np.random.default_rng(0)
    meta = ExposureMeta(band="NB685", epoch=0, exptime=90.0, psf_fwhm=1.0, zero_point=25.0, mjd=None, nan_fraction=0.0)
    tables = []
    for n in sizes:
        table = pd.DataFrame({"ref_id": np.arange(n), "method": method,
                              "x": rng.uniform(0, 2048, n), "y": rng.uniform(0, 4096, n),
                              "band": "NB685", "flux": rng.normal(5, 2, n),
                              "flux_err": rng.uniform(1, 3, n), "flag": np.zeros(n, int)})
        if lumos:
            for k in range(5):
                table[f"alpha_{k}"] = 0.2
                table[f"mu_{k}"] = rng.normal(5, 2, n)
                table[f"sigma_{k}"] = rng.uniform(1, 3, n)
        tables.append(table)
    start = time.perf_counter()
    written = sum(write_measurements(engine, t, exposure_id=e, run_id=run_id, meta=meta,
                                     model_versions={method: version}) for e, t in zip(ids, tables))
    return written, time.perf_counter() - start


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--galaxies", type=int, default=300)
    parser.add_argument("--ccd", type=int, default=1024, help="CCD side in pixels")
    parser.add_argument("--bands", nargs="+", default=["NB615", "NB685"])
    parser.add_argument("--exposures", type=int, default=2, help="exposures per band")
    parser.add_argument("--write-rows", type=int, default=200_000, help="rows per write benchmark")
    parser.add_argument("--no-airflow", action="store_true", help="skip the DAG run")
    args = parser.parse_args(argv)
    if args.write_rows < 1:
        parser.error("--write-rows must be >= 1")

    night = "2016-02-08"
    signal.signal(signal.SIGTERM, _interrupt)  # stop the throwaway server on `timeout` / kill too
    work = Path(tempfile.mkdtemp(prefix="lumos-bench-"))
    home, store_dir = work / "airflow", work / "store"
    from lumos_ops.pipeline.local_postgres import LocalPostgres

    server = LocalPostgres.start(database="bench")
    results: list[tuple[str, str]] = []
    try:
        from lumos_ops.pipeline.config import NightConfig
        from lumos_ops.pipeline.database import make_engine, upgrade
        from lumos_ops.pipeline.night import run_night
        from lumos_ops.pipeline.storage import LocalObjectStore

        start = time.perf_counter()
        n_images = _simulate(args, night, store_dir)
        results.append(("simulated CCD images", f"{n_images} ({args.ccd}x{args.ccd} px, {args.galaxies} galaxies, "
                                                f"{time.perf_counter() - start:.1f} s)"))
        engine = make_engine(server.url)
        upgrade(engine)
        config = NightConfig(store_url=str(store_dir), cache_dir=str(work / "cache"))
        store = LocalObjectStore(store_dir)
        start = time.perf_counter()
        run_night(engine, store, config, night=night, dag_run_id="bench-warm-up")  # imports, caches
        results.append(("warm-up run (imports, first renders)", f"{time.perf_counter() - start:.2f} s"))
        start = time.perf_counter()
        report = run_night(engine, store, config, night=night, dag_run_id="bench-direct")
        direct_s = time.perf_counter() - start
        measure_s = report.timings["measure_s"]
        results += [
            ("night without Airflow: wall", f"{direct_s:.2f} s ({report.status})"),
            ("  exposures/min", f"{60 * report.n_exposures / direct_s:.1f}"),
            ("  measurements/s (whole night)", f"{report.n_measurements / direct_s:,.0f}"),
            ("  measurements/s (measure step)", f"{report.n_measurements / measure_s:,.0f}"),
            ("  measurement rows written", f"{report.n_measurements:,} in {report.timings['write_s']:.2f} s "
                                           f"({report.n_measurements / max(report.timings['write_s'], 1e-9):,.0f} rows/s)"),
        ]
        for lumos in (False, True):
            n, seconds = _write_benchmark(engine, args.write_rows, lumos=lumos)
            results.append((f"bulk write, {'LUMOS rows (15 mixture values)' if lumos else 'classical rows'}",
                            f"{n:,} rows in {seconds:.2f} s = {n / seconds:,.0f} rows/s (target >= 50,000)"))
        engine.dispose()

        if not args.no_airflow:
            os.environ.update({
                "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR", "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),
                "AIRFLOW_CONN_LUMOS_DB": json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": server.port,
                                                     "login": server.user, "schema": server.database}),
                "LUMOS_STORE_URL": str(store_dir), "LUMOS_CACHE_DIR": str(work / "cache"), "LUMOS_TASK_RETRIES": "0",
            })
            subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
            from lumos_ops.airflow.runner import run_nightly

            start = time.perf_counter()
            state, _, _ = run_nightly(night=night)
            dag_s = time.perf_counter() - start
            summary = json.loads((store_dir / "reports" / night / "summary.json").read_text())
            work_s = sum(summary["timings"].get(k, 0.0) for k in ("download_s", "measure_s", "write_s", "coadd_s"))
            results += [
                ("night through Airflow (dag.test): wall", f"{dag_s:.2f} s ({state})"),
                ("  exposures/min", f"{60 * summary['n_exposures'] / dag_s:.1f}"),
                ("  Airflow overhead vs. no-Airflow run", f"{100 * (1 - direct_s / dag_s):.0f} % of the night"),
                ("  time outside pipeline work", f"{100 * (1 - work_s / dag_s):.0f} % "
                                                 "(task start-up, imports, scheduling)"),
            ]
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k, _ in results)
    print(f"\nlumos-ops night benchmark ({os.cpu_count()} CPUs)")
    for key, value in results:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
