"""Start-up costs: ``lumos`` commands and DAG file parsing, each in a fresh Python process.

Run as ``.venv/bin/python benchmarks/bench_startup.py [--repeats 5]``. Prints the median and the
minimum wall time (s) of (and, for the commands, the CPU time, which a loaded machine inflates less):

* ``lumos --help`` and ``lumos measure`` on a 200 x 200 pixel exposure with 3 targets (aperture;
  and LUMOS, which also loads the shipped model): the whole run (start-up, the blank-sky error
  calibration of the exposure, measuring and writing);
* the start-up of the same ``lumos measure`` runs: from launching the process to the first call of
  a method's ``measure`` (imports, reading the exposure and the catalogue, the method and its
  model, the renderer's tables, the frame's source detection and the first stamps and models:
  everything before a first measurement), timed by a wrapper that runs the same command in the
  same fresh process (``_FIRST_MEASURE``);
* parsing each file of ``dags/`` after ``airflow.sdk`` is imported (what Airflow's dag-processor
  pays per file: it has imported Airflow already), and the same including that import.

Targets (survey-scale issue): ``lumos measure`` start-up <= 1.5 s; DAG parse <= 0.5 s per file.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LUMOS = [sys.executable, "-m", "lumos_ops.cli"]

_PARSE = """
import runpy, sys, time
start = time.perf_counter()
import airflow.sdk
imported = time.perf_counter()
runpy.run_path(sys.argv[1])
done = time.perf_counter()
print(f"{imported - start:.4f} {done - imported:.4f}")
"""

_FIRST_MEASURE = """
import os, resource, runpy, sys, time

import lumos_ops.measure as measure

_get_method = measure.get_method
_marked = []


class _Marked:
    def __init__(self, method):
        self._method = method
        self.name = method.name

    def __getattr__(self, item):
        return getattr(self._method, item)

    def measure(self, ctx):
        if not _marked:
            getattr(self._method, "loaded", None)  # LUMOS loads its model on first use: count it
            usage = resource.getrusage(resource.RUSAGE_SELF)
            _marked.append(1)
            with open(os.environ["LUMOS_STARTUP_MARK"], "w") as handle:
                handle.write(f"{time.time():.6f} {usage.ru_utime + usage.ru_stime:.6f}")
        return self._method.measure(ctx)


measure.get_method = lambda name, **options: _Marked(_get_method(name, **options))
sys.argv = ["lumos", *sys.argv[1:]]
runpy.run_module("lumos_ops.cli", run_name="__main__")
"""


def _first_measure(argv: list[str], env: dict[str, str], mark: Path) -> tuple[float, float]:
    """Wall seconds from launching ``argv`` (a ``lumos`` command) to its first ``measure`` call, and
    the CPU seconds the process had used by then."""
    start = time.time()
    result = subprocess.run([sys.executable, "-c", _FIRST_MEASURE, *argv[3:]], capture_output=True, text=True,
                            env={**env, "LUMOS_STARTUP_MARK": str(mark)}, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} (start-up timing) failed: {result.stderr[-2000:]}")
    stamp, cpu = (float(v) for v in mark.read_text().split())
    return stamp - start, cpu


def _wall(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _inputs(work: Path) -> tuple[str, str]:
    from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure

    catalog = random_catalog(3, shape=(200, 200), margin=40, seed=1)
    exposure = synthetic_exposure(catalog, [200.0, 100.0, 50.0], shape=(200, 200), seed=2)
    image = exposure.write(work / "exposure.fits")
    path = work / "catalog.csv"
    catalog.to_csv(path, index=False)
    return image, str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONWARNINGS": "ignore"}
    rows: list[tuple[str, list[float], str]] = []
    with tempfile.TemporaryDirectory(prefix="lumos-startup-") as tmp:
        work = Path(tmp)
        env["AIRFLOW_HOME"] = str(work / "airflow")
        image, catalog = _inputs(work)
        commands = {
            "lumos --help": [*LUMOS, "--help"],
            "lumos measure (aperture, 3 targets)": [*LUMOS, "measure", image, catalog, "--method", "aperture",
                                                    "--out", str(work / "a.csv"), "--no-progress"],
            "lumos measure (lumos, 3 targets)": [*LUMOS, "measure", image, catalog, "--method", "lumos",
                                                 "--out", str(work / "l.csv"), "--no-progress"],
        }
        for name, argv in commands.items():
            _wall(argv, env)  # warm the OS file cache
            runs = [_wall(argv, env) for _ in range(args.repeats)]
            rows.append((name if "measure" not in name else f"{name}, whole run", [r[0] for r in runs], ""))
            rows.append(("  CPU s (user + system)", [r[1] for r in runs], ""))
            if "measure" in name:
                starts = [_first_measure(argv, env, work / "mark.txt") for _ in range(args.repeats)]
                rows.append(("  start-up: launch -> first measure call", [r[0] for r in starts], "<= 1.5"))
                rows.append(("    CPU s (user + system)", [r[1] for r in starts], ""))
        for dag in sorted((REPO / "dags").glob("*.py")):
            timings = []
            for _ in range(args.repeats):
                out = subprocess.run([sys.executable, "-c", _PARSE, str(dag)], capture_output=True, text=True, env=env,
                                     check=True).stdout.split()
                timings.append((float(out[0]), float(out[1])))
            rows.append((f"parse {dag.name}", [t[1] for t in timings], "<= 0.5"))
            rows.append(("  incl. import airflow.sdk", [t[0] + t[1] for t in timings], ""))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median and minimum of {args.repeats} fresh processes")
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"{'what':48s} {'median s':>9s} {'min s':>7s} {'target s':>9s}")
    for name, values, target in rows:
        print(f"{name:48s} {statistics.median(values):9.3f} {min(values):7.3f} {target:>9s}")


if __name__ == "__main__":
    main()
