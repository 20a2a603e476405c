"""A scaled PAUS night through Airflow with Celery workers: per-step seconds, targets/s, co-adds/s,
rows/s, peak memory per worker, and the extrapolation to a PAUS night and a COSMOS reprocessing.

    .venv/bin/python benchmarks/bench_survey.py [--ccds 16] [--targets 2500]
        [--methods aperture,modelfit,optimal,lumos] [--workers N] [--store s3|local] [--timeout 3600]
        [--reprocess-chunk K | --no-reprocess]

The night: ``--ccds`` real-size CCD images (4096 x 2048 px) of the survey simulator, at survey
density (``--targets`` catalogue galaxies per CCD; PAUS has ~2,500), the CCDs of filter tray 0 over
as many exposures as needed (16 = 2 exposures x 8 CCDs). Images and catalogue go to moto's S3
server (``--store s3``, the default: a real HTTP object store in this process) or a local directory
(``--store local``). The photometry database is a throwaway PostgreSQL. The deployment is
``docker/compose.yaml``'s CeleryExecutor stack run as local process groups
(``lumos_ops.airflow.local_stack.CeleryStack``): Redis, a PostgreSQL metadata database, API server,
scheduler, DAG processor, a CPU worker and a GPU worker. This machine has no GPU, so the run sets
``LUMOS_GPU_INFERENCE=false``: the mapped ``process`` tasks measure every method, LUMOS included,
on the CPU worker, none behind the GPU pool (with ``true`` LUMOS would be a second mapped step,
``lumos``, on the GPU worker; the tables below sum both steps). ``--workers`` (default: the CPUs)
sets the CPU worker's concurrency; each task uses one thread (``OMP/MKL/OPENBLAS_NUM_THREADS=1``).

The benchmark triggers ``lumos_nightly``, samples the RSS of every worker's process tree every
0.5 s while it runs, then reads the per-exposure step timings from ``lumos.exposures``
(``download_s``, ``measure_s``, ``write_s``), the co-add time from the night report
(``summary.json``), and the task durations from Airflow's metadata database, and prints one table.

Then (unless ``--no-reprocess``) the benchmark empties the workers' download cache and triggers
``lumos_reprocess`` on the same night: every method again under a new version, in mapped tasks of
``--reprocess-chunk`` CCD images (default: the images / ``--workers``, so each worker measures one
chunk in a row). A COSMOS reprocessing of ~5,000 CCD images would be mapped in chunks of at least
ceil(5,000 / 512) = 10 images (``LUMOS_MAX_MAPPED_TASKS``), so a chunk of 8 pays each task's
scheduling and start-up more often than the real run would.

Extrapolation (arithmetic printed): the measured throughput of the measuring phase (first start to
last end of the mapped ``process`` and ``lumos`` tasks, with ``--workers`` concurrent tasks) scaled linearly to 2,500 targets
per CCD (and to 4 methods by the measured per-method CPU share when fewer ran), plus the
measured co-add rate and the fixed per-run cost (check_schema, plan, finish less its co-add).
PAUS night: 800 CCD images x 2,500 targets x 4 methods, ~160,000 source-band co-adds per method,
from the nightly run (one image per mapped task: a night of 800 images gets 2 per task).
COSMOS reprocessing: 12.5 M observations (source x CCD image) x 4 methods, co-adds in the night's
ratio of observations per source-band, from the ``lumos_reprocess`` run's measuring phase (and,
for comparison, from the nightly run's). Targets: PAUS night <= 45 min, reprocessing <= 4 h,
co-add >= 10,000/s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NIGHT = "2016-02-08"
DAG_ID = "lumos_nightly"
RUN_ID = "bench_survey"
REPROCESS_DAG_ID, REPROCESS_VERSION = "lumos_reprocess", "bench-reprocess"
ALL_METHODS = ("aperture", "modelfit", "optimal", "lumos")
MEASURING_TASKS = ("process", "lumos")
"""Mapped tasks of lumos_nightly that measure (lumos: LUMOS inference, when it is its own step)."""
PAUS_CCDS, PAUS_TARGETS, PAUS_METHODS, PAUS_COADDS = 800, 2_500, 4, 160_000
COSMOS_OBSERVATIONS = 12_500_000
TARGET_NIGHT_S, TARGET_REPROCESS_S, TARGET_COADD_PER_S = 45 * 60, 4 * 3600, 10_000
ON_CCD = 1.0  # catalogue rows measured per CCD / catalogue galaxies in the CCD-sized field (0.85 gave 2,941 of 2,941)


# --------------------------------------------------------------------------------------------------
# The night's data
# --------------------------------------------------------------------------------------------------

def simulate(n_ccds: int, targets: int, out: Path) -> tuple[int, float]:
    """The CCD images of tray 0: ``n_ccds`` images of 4096 x 2048 px; returns (images, seconds)."""
    from lumos_ops.constants import TRAYS
    from lumos_ops.sim import SurveyConfig, simulate_survey

    per_exposure = min(8, n_ccds)
    n_exposures = math.ceil(n_ccds / per_exposure)
    per_exposure = math.ceil(n_ccds / n_exposures)
    later = (dt.date.fromisoformat(NIGHT) + dt.timedelta(days=365)).isoformat()
    config = SurveyConfig(n_galaxies=round(targets / ON_CCD), bands=TRAYS[0][:per_exposure], n_ccds=per_exposure,
                          n_exposures=n_exposures, n_epochs=1, nights=1, first_nights=(NIGHT, later), seed=7)
    start = time.perf_counter()
    manifest = simulate_survey(config, out)
    return len(manifest.exposure_paths), time.perf_counter() - start


def upload(sim_dir: Path, endpoint: str, bucket: str) -> tuple[int, float]:
    """Catalogue and images into moto's S3 under ``survey/``; returns (bytes, seconds)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    start, size = time.perf_counter(), 0
    for path in sorted(sim_dir.rglob("*")):
        if path.is_file() and path.name != "truth.parquet":
            client.upload_file(str(path), bucket, f"survey/{path.relative_to(sim_dir).as_posix()}")
            size += path.stat().st_size
    return size, time.perf_counter() - start


# --------------------------------------------------------------------------------------------------
# Peak memory of every worker's process tree
# --------------------------------------------------------------------------------------------------

class MemorySampler(threading.Thread):
    """Every ``interval_s``: the RSS of each worker's process tree (sum) and of its largest process."""

    def __init__(self, leaders: dict[str, int], interval_s: float = 0.5):
        super().__init__(daemon=True)
        self.leaders, self.interval_s = leaders, interval_s
        self.peak_tree = dict.fromkeys(leaders, 0)
        self.peak_process = dict.fromkeys(leaders, 0)
        self.samples = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        import psutil

        for name, pid in self.leaders.items():
            try:
                leader = psutil.Process(pid)
                procs = [leader, *leader.children(recursive=True)]
            except psutil.Error:
                continue
            rss = []
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    rss.append(proc.memory_info().rss)
            self.peak_tree[name] = max(self.peak_tree[name], sum(rss))
            self.peak_process[name] = max(self.peak_process[name], max(rss, default=0))
        self.samples += 1

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------

def read_results(photometry_url: str, summary: dict, tis: list[dict]) -> dict:
    import sqlalchemy as sa

    engine = sa.create_engine(photometry_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text(
            "SELECT status, n_measurements, download_s, measure_s, write_s FROM lumos.exposures "
            "WHERE night = :n"), {"n": NIGHT})]
        per_method = dict(conn.execute(sa.text(
            "SELECT m.method, count(*) FROM lumos.measurements m JOIN lumos.exposures e USING (exposure_id) "
            "WHERE e.night = :n GROUP BY m.method"), {"n": NIGHT}).all())
    engine.dispose()
    done = [r for r in rows if r["status"] == "done"]
    process = [t for t in tis if t["task_id"] in MEASURING_TASKS and t["start_date"] and t["end_date"]]
    return {
        "n_images": len(rows), "n_done": len(done),
        "rows": sum(int(r["n_measurements"] or 0) for r in done), "per_method": per_method,
        **{k: sum(float(r[k] or 0) for r in done) for k in ("download_s", "measure_s", "write_s")},
        "max_measure_s": max((float(r["measure_s"] or 0) for r in done), default=0.0),
        "coadd_s": float(summary["timings"].get("coadd_s", 0.0)),
        "n_coadds": int(summary.get("n_coadds", 0)),
        "task_s": {tid: [float(t["seconds"] or 0) for t in tis if t["task_id"] == tid]
                   for tid in dict.fromkeys(t["task_id"] for t in tis)},
        "process_window_s": (max(t["end_date"] for t in process) - min(t["start_date"] for t in process)
                             ).total_seconds() if process else 0.0,
        "run_window_s": (max(t["end_date"] for t in tis if t["end_date"]) -
                         min(t["start_date"] for t in tis if t["start_date"])).total_seconds(),
    }


def read_reprocess(photometry_url: str, tis: list[dict]) -> dict:
    """Rows written under the reprocessing's version, its CCD images and its measuring window."""
    import sqlalchemy as sa

    engine = sa.create_engine(photometry_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        n_rows, n_images = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT m.exposure_id) FROM lumos.measurements m JOIN lumos.exposures e "
            "USING (exposure_id) WHERE e.night = :n AND m.model_version = m.method || '-' || :v"),
            {"n": NIGHT, "v": REPROCESS_VERSION}).one()
    engine.dispose()
    process = [t for t in tis if t["task_id"] == "process" and t["start_date"] and t["end_date"]]
    return {
        "rows": int(n_rows), "n_images": int(n_images), "n_chunks": len(process),
        "task_s": {tid: [float(t["seconds"] or 0) for t in tis if t["task_id"] == tid]
                   for tid in dict.fromkeys(t["task_id"] for t in tis)},
        "process_window_s": (max(t["end_date"] for t in process) - min(t["start_date"] for t in process)
                             ).total_seconds() if process else 0.0,
    }


def _fmt_s(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 120 \
        else f"{seconds:.1f} s"


def report(args: argparse.Namespace, r: dict, memory: MemorySampler, extra: dict, rp: dict | None) -> str:
    methods = args.methods
    n_methods = len(methods)
    targets = r["rows"] / max(n_methods, 1)  # source x CCD-image observations
    per_ccd = targets / max(r["n_done"], 1)
    lines: list[tuple[str, str]] = []
    add = lambda k, v="": lines.append((k, v))  # noqa: E731
    add("night", f"{r['n_done']}/{r['n_images']} CCD images of 4096x2048 px done, {per_ccd:,.0f} targets/CCD, "
                 f"methods {','.join(methods)}")
    add("stack", f"CeleryExecutor: {args.workers} process slots on the {extra['process_queue']} queue, "
                 f"{os.cpu_count()} CPUs; store {extra['store']}")
    add("simulate + upload (not part of the night)", f"{extra['simulate_s']:.0f} s + {extra['upload_s']:.1f} s "
                                                      f"({extra['bytes'] / 1e6:,.0f} MB)")
    add("stack start (migrate, services, DAG parsed)", f"{extra['ready_s']:.0f} s")
    add("")
    add("step (lumos.exposures, summed over CCDs)", "seconds   per CCD    rate")
    add("  download", f"{r['download_s']:8.1f}  {r['download_s'] / max(r['n_done'], 1):7.2f}   "
                      f"{extra['bytes_images'] / 1e6 / max(r['download_s'], 1e-9):,.0f} MB/s")
    add("  measure", f"{r['measure_s']:8.1f}  {r['measure_s'] / max(r['n_done'], 1):7.2f}   "
                     f"{targets / max(r['measure_s'], 1e-9):,.0f} targets/s per worker (max CCD {r['max_measure_s']:.1f} s)")
    add("  write", f"{r['write_s']:8.1f}  {r['write_s'] / max(r['n_done'], 1):7.2f}   "
                   f"{r['rows'] / max(r['write_s'], 1e-9):,.0f} rows/s ({r['rows']:,} rows)")
    add("  co-add (finish, summary.json coadd_s)", f"{r['coadd_s']:8.1f}            "
                                                   f"{r['n_coadds'] / max(r['coadd_s'], 1e-9):,.0f} co-adds/s "
                                                   f"({r['n_coadds']:,} co-adds; target >= {TARGET_COADD_PER_S:,})")
    add("Airflow task durations", "n   sum s   mean s   max s")
    for tid, secs in r["task_s"].items():
        add(f"  {tid}", f"{len(secs):>2} {sum(secs):7.1f} {sum(secs) / len(secs):8.1f} {max(secs):7.1f}")
    busy_s = r["download_s"] + r["measure_s"] + r["write_s"]
    n_tasks = sum(len(r["task_s"].get(t, [])) for t in MEASURING_TASKS)
    add("  process + lumos overhead (task - download/measure/write)",
        f"{(sum(sum(r['task_s'].get(t, [])) for t in MEASURING_TASKS) - busy_s) / max(n_tasks, 1):.1f} s per task")
    add("wall: trigger -> run end", f"{extra['run_s']:.1f} s")
    add("wall: first task start -> last task end", f"{r['run_window_s']:.1f} s")
    add("wall: measuring phase (process and lumos: first start -> last end)", f"{r['process_window_s']:.1f} s")
    add("throughput (measuring phase)", f"{targets / max(r['process_window_s'], 1e-9):,.1f} targets/s, "
                                      f"{r['rows'] / max(r['process_window_s'], 1e-9):,.0f} rows/s, "
                                      f"{3600 * r['n_done'] / max(r['process_window_s'], 1e-9):,.0f} CCD images/h")
    add("throughput (whole run)", f"{targets / max(extra['run_s'], 1e-9):,.1f} targets/s")
    if rp is not None:
        add("")
        add(f"reprocessing ({REPROCESS_DAG_ID}, same night, every method as version <method>-{REPROCESS_VERSION})",
            f"{rp['n_images']} CCD images in {rp['n_chunks']} mapped tasks of up to {extra['reprocess_chunk']}, "
            f"{rp['rows']:,} rows; download cache emptied first")
        for tid, secs in rp["task_s"].items():
            add(f"  {tid}", f"{len(secs):>2} {sum(secs):7.1f} {sum(secs) / len(secs):8.1f} {max(secs):7.1f}")
        add("  wall: trigger -> run end", f"{extra['reprocess_run_s']:.1f} s")
        add("  wall: measuring phase (process: first start -> last end)", f"{rp['process_window_s']:.1f} s")
        add("  throughput (measuring phase)",
            f"{rp['rows'] / max(n_methods, 1) / max(rp['process_window_s'], 1e-9):,.1f} targets/s, "
            f"{3600 * rp['n_images'] / max(rp['process_window_s'], 1e-9):,.0f} CCD images/h")
    runs = "both runs" if rp is not None else "the nightly run"
    add(f"peak RSS per worker ({memory.samples} samples, {runs})", "process tree     largest process")
    for name in memory.peak_tree:
        add(f"  {name}", f"{memory.peak_tree[name] / 2**20:9,.0f} MiB   {memory.peak_process[name] / 2**20:9,.0f} MiB")

    # ---- extrapolation --------------------------------------------------------------------------
    out = [f"lumos-ops survey benchmark through Airflow + Celery ({dt.date.today().isoformat()})"]
    width = max(len(k) for k, _ in lines)
    out += [f"{k:<{width}}  {v}".rstrip() for k, v in lines]
    per_image_s = r["process_window_s"] / max(r["n_done"], 1)  # wall per image with --workers in parallel
    target_scale = PAUS_TARGETS / max(per_ccd, 1e-9)
    method_scale = 1.0
    if n_methods < PAUS_METHODS and args.method_share:
        method_scale = 1.0 / args.method_share
    coadd_rate = r["n_coadds"] / max(r["coadd_s"], 1e-9)
    fixed_s = sum(sum(r["task_s"].get(t, [])) for t in ("check_schema", "plan", "finish")) - r["coadd_s"]
    coadds_night = PAUS_COADDS * PAUS_METHODS
    night_process = PAUS_CCDS * per_image_s * target_scale * method_scale
    night_coadd = coadds_night / coadd_rate
    night_s = night_process + night_coadd + fixed_s
    obs_per_coadd = PAUS_CCDS * PAUS_TARGETS / PAUS_COADDS
    reproc_coadds = COSMOS_OBSERVATIONS / obs_per_coadd * PAUS_METHODS
    reproc_coadd = reproc_coadds / coadd_rate
    n_nights = COSMOS_OBSERVATIONS / (PAUS_CCDS * PAUS_TARGETS)

    def reprocessing(image_s: float) -> tuple[float, float, float]:
        """Observations/s (all 4 methods), process seconds and total seconds from a wall per image."""
        rate = PAUS_TARGETS / (image_s * target_scale * method_scale)
        process = COSMOS_OBSERVATIONS / rate
        return rate, process, process + reproc_coadd + n_nights * fixed_s

    night_rate, night_reproc_process, night_reproc_s = reprocessing(per_image_s)
    source = "the nightly run, one image per task"
    reproc_image_s = per_image_s
    if rp is not None and rp["n_images"]:
        reproc_image_s = rp["process_window_s"] / rp["n_images"]
        source = f"{REPROCESS_DAG_ID}, up to {extra['reprocess_chunk']} images per task"
    obs_rate, reproc_process, reproc_s = reprocessing(reproc_image_s)
    scale_text = f"x {target_scale:.2f} (2,500 / {per_ccd:,.0f} targets)"
    if method_scale != 1.0:
        scale_text += f" x {method_scale:.2f} (4 methods / measured share {args.method_share:.2f} of CPU)"
    out += [
        "",
        f"Extrapolation (N = {args.workers} workers; measured process-phase wall per CCD image "
        f"{per_image_s:.2f} s with {args.workers} in parallel):",
        f"  PAUS night: 800 CCD images x {per_image_s:.2f} s {scale_text} = {_fmt_s(night_process)} process",
        f"            + {PAUS_COADDS:,} source-band co-adds x {PAUS_METHODS} methods = {coadds_night:,} co-adds "
        f"/ {coadd_rate:,.0f}/s = {_fmt_s(night_coadd)}",
        f"            + fixed per run (check_schema + plan + finish - co-add) {fixed_s:.1f} s",
        f"            = {_fmt_s(night_s)}  (target <= 45 min: {'MET' if night_s <= TARGET_NIGHT_S else 'MISSED'}; "
        f"workers needed for 45 min: {math.ceil(args.workers * night_process / max(TARGET_NIGHT_S - night_coadd - fixed_s, 1))})",
        f"  COSMOS reprocessing ({source}; measured wall per CCD image {reproc_image_s:.2f} s with "
        f"{args.workers} in parallel):",
        f"            12,500,000 observations / {obs_rate:,.1f} obs/s (2,500 targets / "
        f"{PAUS_TARGETS / obs_rate:.2f} s per full CCD image) = {_fmt_s(reproc_process)} process",
        f"            + 12.5 M / {obs_per_coadd:.1f} obs per co-add x {PAUS_METHODS} methods = "
        f"{reproc_coadds:,.0f} co-adds / {coadd_rate:,.0f}/s = {_fmt_s(reproc_coadd)}",
        f"            + {n_nights:.2f} nights x {fixed_s:.1f} s fixed = {_fmt_s(n_nights * fixed_s)}",
        f"            = {_fmt_s(reproc_s)}  (target <= 4 h: {'MET' if reproc_s <= TARGET_REPROCESS_S else 'MISSED'}; "
        f"workers needed for 4 h: {math.ceil(args.workers * reproc_process / max(TARGET_REPROCESS_S - reproc_coadd, 1))})",
        *([f"            (at the nightly run's rate, one image per task: {night_rate:,.1f} obs/s, "
           f"{_fmt_s(night_reproc_s)})"] if reproc_image_s != per_image_s else []),
        f"  co-add rate {coadd_rate:,.0f}/s (target >= 10,000/s: {'MET' if coadd_rate >= TARGET_COADD_PER_S else 'MISSED'})",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------

def run_dag(celery, dag_id: str, conf: dict, timeout_s: float) -> tuple[str, list[dict], float]:
    """Trigger ``dag_id`` (run id ``RUN_ID``) on the stack and wait: (state, task instances, wall s).
    A failed run prints its task states and the services' log tails."""
    start = time.monotonic()
    celery.trigger(dag_id, RUN_ID, conf)
    state = celery.wait_run(dag_id, RUN_ID, timeout_s=timeout_s, interval_s=2.0)
    seconds = time.monotonic() - start
    tis = celery.task_instances(dag_id, RUN_ID)
    if state != "success":
        print(f"{dag_id} run {state}: {[(t['task_id'], t['map_index'], t['state']) for t in tis]}\n"
              f"{celery.procs.tails()}", file=sys.stderr)
    return state, tis, seconds


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ccds", type=int, default=16, help="CCD images of 4096x2048 px (default 16)")
    parser.add_argument("--targets", type=int, default=PAUS_TARGETS, help="catalogue targets per CCD (~)")
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated methods")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="concurrent measuring tasks (CPU worker concurrency); default the CPUs")
    parser.add_argument("--store", choices=("s3", "local"), default="s3",
                        help="moto's S3 server (default) or a local directory")
    parser.add_argument("--method-share", type=float, default=None,
                        help="with fewer than 4 methods: their share of the 4-method CPU time per CCD "
                             "(e.g. from benchmarks/bench_ccd.py) to extrapolate to 4 methods")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the DAG run")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    parser.add_argument("--reprocess-chunk", type=int, default=None,
                        help="CCD images per mapped lumos_reprocess task (default: the images / --workers)")
    parser.add_argument("--no-reprocess", action="store_true", help="skip the lumos_reprocess run")
    args = parser.parse_args(argv)
    args.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())

    signal.signal(signal.SIGTERM, _interrupt)  # stop every server on `timeout` / kill too
    work = Path(tempfile.mkdtemp(prefix="lumos-bench-survey-"))
    sim_dir = work / "store"
    extra: dict = {}
    with contextlib.ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        else:
            print(f"working directory: {work}", flush=True)
        from lumos_ops.airflow.local_stack import CeleryStack, compose_deployment, postgres_conn, s3_conn
        from lumos_ops.pipeline.database import make_engine, upgrade
        from lumos_ops.pipeline.local_postgres import LocalPostgres, free_port

        n_images, extra["simulate_s"] = simulate(args.ccds, args.targets, sim_dir)
        print(f"simulated {n_images} CCD images in {extra['simulate_s']:.0f} s", flush=True)
        extra["bytes_images"] = sum(p.stat().st_size for p in (sim_dir / "exposures").rglob("*.fits"))

        server = LocalPostgres.start(database="bench")
        stack.callback(server.stop)
        engine = make_engine(server.url)
        upgrade(engine)
        engine.dispose()

        env = {"LUMOS_METHODS": ",".join(args.methods), "LUMOS_CODE_VERSION": "bench_survey",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        if args.store == "s3":
            import logging

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
                os.environ.setdefault(key, env[key])
            port = free_port()
            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            moto.start()
            stack.callback(moto.stop)
            endpoint = f"http://127.0.0.1:{port}"
            extra["bytes"], extra["upload_s"] = upload(sim_dir, endpoint, "bench")
            env.update({"AIRFLOW_CONN_LUMOS_S3": s3_conn(endpoint), "LUMOS_STORE_URL": "s3://bench/survey"})
            extra["store"] = "moto S3 server (in the benchmark process)"
        else:
            extra["bytes"], extra["upload_s"] = extra["bytes_images"], 0.0
            env["LUMOS_STORE_URL"] = str(sim_dir)
            extra["store"] = f"local directory {sim_dir}"

        compose_env = compose_deployment()["env"]
        env["LUMOS_GPU_INFERENCE"] = "false"  # no GPU here: LUMOS on the CPU workers, not behind the pool
        process_queue = compose_env["LUMOS_CPU_QUEUE"]
        extra["process_queue"] = process_queue
        start = time.monotonic()
        celery = stack.enter_context(CeleryStack(
            work, photometry_conn=postgres_conn(server.url), extra_env=env,
            concurrency={process_queue: args.workers}, pool_slots=args.workers))
        extra["ready_s"] = time.monotonic() - start
        print(f"stack ready in {extra['ready_s']:.0f} s; triggering {DAG_ID}", flush=True)

        memory = MemorySampler(celery.worker_pids())
        memory.start()
        stack.callback(memory.stop)
        state, tis, extra["run_s"] = run_dag(celery, DAG_ID, {"night": NIGHT}, args.timeout)
        from lumos_ops.pipeline.storage import open_store

        if args.store == "s3":
            import boto3

            body = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").get_object(
                Bucket="bench", Key=f"survey/reports/{NIGHT}/summary.json")["Body"].read()
        else:
            body = open_store(str(sim_dir)).get_bytes(f"reports/{NIGHT}/summary.json")
        summary = json.loads(body)
        results = read_results(server.url, summary, tis)
        reprocessed = None
        if not args.no_reprocess and state == "success":
            chunk = args.reprocess_chunk or math.ceil(results["n_images"] / max(args.workers, 1))
            extra["reprocess_chunk"] = chunk
            shutil.rmtree(celery.env["LUMOS_CACHE_DIR"], ignore_errors=True)  # the images are fetched again
            print(f"triggering {REPROCESS_DAG_ID} in chunks of {chunk}", flush=True)
            conf = {"first_night": NIGHT, "last_night": NIGHT, "methods": ",".join(args.methods),
                    "model_versions": ",".join(f"{m}={m}-{REPROCESS_VERSION}" for m in args.methods),
                    "exposures_per_task": chunk}
            reprocess_state, reprocess_tis, extra["reprocess_run_s"] = run_dag(celery, REPROCESS_DAG_ID, conf,
                                                                               args.timeout)
            if reprocess_state != "success":
                state = reprocess_state
            reprocessed = read_reprocess(server.url, reprocess_tis)
        memory.stop()
        print()
        print(report(args, results, memory, extra, reprocessed))
        return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
