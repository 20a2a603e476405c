"""Start-up costs: ``lumos`` commands and DAG file parsing, each in a fresh Python process.

Run as ``.venv/bin/python benchmarks/bench_startup.py [--repeats 5]``. Prints the median and the
minimum wall time (s) of (and, for the commands, the CPU time, which a loaded machine inflates less):

* ``lumos --help`` and ``lumos measure`` on a 200 x 200 pixel exposure with 3 targets (aperture;
  and LUMOS, which also loads the shipped model), where the measuring itself is negligible, so
  the time is the command's start-up;
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
            rows.append((name, [r[0] for r in runs], "<= 1.5" if "measure" in name else ""))
            rows.append(("  CPU s (user + system)", [r[1] for r in runs], ""))
        for dag in sorted((REPO / "dags").glob("*.py")):
            timings = []
            for _ in range(args.repeats):
                out = subprocess.run([sys.executable, "-c", _PARSE, str(dag)], capture_output=True, text=True, env=env,
                                     check=True).stdout.split()
                timings.append((float(out[0]), float(out[1])))
            rows.append((f"parse {dag.name}", [t[1] for t in timings], "<= 0.5"))
            rows.append(("  incl. import airflow.sdk", [t[0] + t[1] for t in timings], ""))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median and minimum of {args.repeats} fresh processes")
    print(f"{'what':42s} {'median s':>9s} {'min s':>7s} {'target s':>9s}")
    for name, values, target in rows:
        print(f"{name:42s} {statistics.median(values):9.3f} {min(values):7.3f} {target:>9s}")


if __name__ == "__main__":
    main()
