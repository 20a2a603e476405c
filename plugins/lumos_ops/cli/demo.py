"""``lumos demo``: the nightly pipeline end to end on embedded defaults.

Starts a throwaway PostgreSQL, uses a local directory as object store, simulates a small night
with ``lumos_ops.sim``, runs the ``lumos_nightly`` DAG through Airflow (``dag.test()``, SQLite
metadata in a temporary AIRFLOW_HOME) with every photometry method, prints the night summary, each
method's accuracy per bin of the simulator's true flux and example SQL queries, and stops and deletes
everything it started, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lumos demo``."""
    parser = subparsers.add_parser("demo", help="simulate a small night and run lumos_nightly through Airflow")
    parser.add_argument("--night", default="2016-02-08", help="night to simulate and process (YYYY-MM-DD)")
    parser.add_argument("--galaxies", type=int, default=60, help="catalogue galaxies (default 60)")
    parser.add_argument("--exposures", type=int, default=2, help="exposures per band (default 2)")
    parser.add_argument("--bands", nargs="+", default=["NB615", "NB685"], help="narrow bands (default NB615 NB685)")
    parser.add_argument("--ccd-shape", type=int, nargs=2, default=(400, 400), metavar=("ROWS", "COLS"),
                        help="CCD image shape in pixels (default 400 400)")
    parser.add_argument("--methods", default="aperture,modelfit,optimal,lumos",
                        help="comma-separated photometry methods (default: all four)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (store, Airflow home)")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from lumos_ops.exceptions import LumosError
    from lumos_ops.pipeline.keys import validate_night
    from lumos_ops.pipeline.local_postgres import LocalPostgres

    night = validate_night(args.night)
    work = Path(tempfile.mkdtemp(prefix="lumos-demo-"))
    store_dir, home = work / "store", work / "airflow"
    server = None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.perf_counter()
    try:
        print(f"[demo] work directory {work}")
        _simulate(args, night, store_dir)
        server = LocalPostgres.start(database="lumos")
        print(f"[demo] throwaway PostgreSQL on 127.0.0.1:{server.port}")
        from lumos_ops.pipeline.database import make_engine, upgrade

        engine = make_engine(server.url)
        upgrade(engine)
        os.environ.update(_airflow_env(home, server, store_dir, work, args.methods))
        log_path = work / "airflow-db-migrate.log"
        with open(log_path, "w") as log:
            done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], stdout=log, stderr=log,
                                  env=os.environ.copy(), check=False)
        if done.returncode != 0:
            raise LumosError(f"airflow db migrate failed; see {log_path}")
        print("[demo] running DAG lumos_nightly through Airflow ...")
        logging.getLogger().setLevel(logging.WARNING)
        from lumos_ops.airflow.runner import run_nightly

        state, run_id, states = run_nightly(night=night)
        print(f"[demo] DAG run {run_id}: {state}")
        print("[demo] tasks: " + ", ".join(f"{k}={v}" for k, v in sorted(states.items())))
        summary = json.loads((store_dir / "reports" / night / "summary.json").read_text())
        _print_summary(summary)
        _print_truth_comparison(engine, store_dir / "truth.parquet")
        _print_queries(engine, night)
        engine.dispose()
        print(f"[demo] finished in {time.perf_counter() - started:.1f} s")
        return 0 if state == "success" else 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.stop()
            print("[demo] PostgreSQL stopped")
        if args.keep:
            print(f"[demo] kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _simulate(args: argparse.Namespace, night: str, store_dir) -> None:
    import datetime as dt

    from lumos_ops.sim import SurveyConfig, simulate_survey

    later = (dt.date.fromisoformat(night) + dt.timedelta(days=365)).isoformat()
    config = SurveyConfig(
        n_galaxies=args.galaxies, bands=tuple(args.bands), n_exposures=args.exposures, n_epochs=1, nights=1,
        first_nights=(night, later), ccd_shape=tuple(args.ccd_shape), seed=args.seed,
    )
    manifest = simulate_survey(config, store_dir)
    print(f"[demo] simulated night {night}: {len(manifest.exposure_paths)} CCD images, {manifest.n_galaxies} galaxies "
          f"({manifest.elapsed_s:.1f} s) in {store_dir}")


def _airflow_env(home, server, store_dir, work, methods: str) -> dict[str, str]:
    import json
    import secrets

    from lumos_ops.airflow.runner import default_dags_folder

    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(default_dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),
        "AIRFLOW_CONN_LUMOS_DB": json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": server.port,
                                             "login": server.user, "schema": server.database}),
        "LUMOS_STORE_URL": str(store_dir),
        "LUMOS_CACHE_DIR": str(work / "cache"),
        "LUMOS_METHODS": methods,
        "LUMOS_TASK_RETRIES": "0",
    }


def _print_summary(summary: dict) -> None:
    print(f"\nnight {summary['night']}: {summary['status']}")
    print(f"  exposures {summary['n_exposures']} ({summary['n_done']} done, {summary['n_failed']} failed), "
          f"measurements {summary['n_measurements']}, co-adds {summary['n_coadds']}")
    print("  timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in summary["timings"].items()))
    for key, error in summary["failures"]:
        print(f"  FAILED {key}: {error}")
    print("  report objects: " + ", ".join(summary["objects"]))


def _print_truth_comparison(engine, truth_path) -> None:
    """Per method and bin of *true* flux: median relative error, median and sigma68 of the pull
    ``(f - f0) / flux_err``, and the share of rows whose ``flux +- flux_err`` holds ``f0``.

    Binned by the truth, as docs/likelihood.md §4 scores every method; the LUMOS ``flux`` is the
    median of its likelihood.
    """
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

    from lumos_ops.evaluation.fixed_truth import methods_at_fixed_truth

    with engine.connect() as conn:
        rows = pd.read_sql(sa.text(
            "SELECT m.ref_id, e.expnum, e.ccd, m.method, m.flux, m.flux_err, m.flag "
            "FROM lumos.measurements m JOIN lumos.exposures e USING (exposure_id)"), conn)
    truth = pd.read_parquet(truth_path, columns=["ref_id", "expnum", "ccd", "flux_true"])
    joined = rows.merge(truth, on=["ref_id", "expnum", "ccd"], how="inner")
    flagged = joined.groupby("method")["flag"].apply(lambda f: float((f != 0).mean()))
    table = methods_at_fixed_truth(joined)
    print("\n-- accuracy at fixed true flux (every source x exposure; e-/s; pull = (f - f0) / flux_err)")
    print(f"{'method':<10}{'true flux':>12}{'n':>6}{'bias':>9}{'pull med':>10}{'pull s68':>10}{'cov68':>7}")
    for row in table.itertuples(index=False):
        hi = "" if not np.isfinite(row.true_hi) else f"{row.true_hi:g}"
        span = f"{row.true_lo:g}-{hi}" if hi else f">={row.true_lo:g}"
        print(f"{row.method:<10}{span:>12}{row.n:>6}{row.bias:>+9.3f}{row.pull_median:>+10.2f}"
              f"{row.pull_sigma68:>10.2f}{row.coverage68:>7.2f}")
    print("flagged rows: " + ", ".join(f"{method} {share:.2f}" for method, share in flagged.items()))
    print("(honest errors: pull s68 near 1 and cov68 near 0.68; a few dozen rows a bin measure them to about 0.1)")


def _print_queries(engine, night: str) -> None:
    import sqlalchemy as sa

    from lumos_ops.pipeline.queries import run_query

    print("\n-- sql/queries/night_summary.sql (:limit = 5)")
    print(run_query(engine, "night_summary", {"limit": 5}).to_string(index=False, na_rep="NULL"))
    with engine.connect() as conn:
        ref_id = conn.execute(sa.text(
            "SELECT s.ref_id FROM lumos.catalog_sources s JOIN lumos.coadds c ON c.ref_id = s.ref_id "
            "ORDER BY s.i_auto LIMIT 1")).scalar()
    if ref_id is not None:
        print(f"\n-- sql/queries/latest_coadds_for_source.sql (:ref_id = {ref_id})")
        print(run_query(engine, "latest_coadds_for_source", {"ref_id": ref_id}).to_string(index=False, na_rep="NULL"))
