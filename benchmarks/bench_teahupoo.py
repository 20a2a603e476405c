"""TEAHUPOO benchmark: training stamps per second, and survey simulation rate (CCD images per second).

Run as ``.venv/bin/python benchmarks/bench_teahupoo.py [--n 2000] [--threads 1] [--device cpu]
[--full-ccd]``. A small survey (512 x 512 CCDs, 3 bands, 2 epochs) is simulated first to provide
background exposures; its rate (CCD images per second) is reported too. ``--full-ccd`` also times one full
4096 x 2048 PAUCam CCD (about 1,500 catalogue and 5,000 faint galaxies, stars, every artefact).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from lumos_ops.sim import SurveyConfig, TeahupooConfig, generate_training_set, simulate_survey


def _row(name: str, n: int, size: int, seconds: float, unit: str) -> str:
    return f"{name:<34} {n:>7} {size:>6} {seconds:>9.2f} {n / seconds:>11.1f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="training stamps (default 2000)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default=None, help="renderer device for the stamps, e.g. cuda")
    parser.add_argument("--full-ccd", action="store_true", help="also time one full 4096 x 2048 CCD")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}, "
          f"stamp device: {args.device or 'cpu'}")
    header = f"{'task':<34} {'n':>7} {'size':>6} {'seconds':>9} {'per second':>11} unit"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = SurveyConfig(ccd_shape=(512, 512), bands=("NB615", "NB655", "NB685"), n_exposures=1, seed=args.seed,
                              threads=args.threads)
        survey = simulate_survey(config, root / "survey")
        n_ccd = len(survey.exposure_paths)
        print(_row("survey, 512x512 CCD images", n_ccd, 512, survey.elapsed_s, "CCD/s"))
        catalog = pd.read_parquet(survey.catalog_path)
        for size, n in ((60, args.n), (96, max(1, args.n // 4))):
            ts_config = TeahupooConfig(n_stamps=n, stamp_size=size, seed=args.seed, device=args.device,
                                       threads=args.threads)
            start = time.perf_counter()
            generate_training_set(ts_config, survey.exposure_paths, catalog, root / f"ts{size}")
            elapsed = time.perf_counter() - start
            print(_row(f"training stamps {size}x{size}", n, size, elapsed, "stamps/s"))
        if args.full_ccd:
            full = SurveyConfig(bands=("NB685",), n_exposures=1, n_epochs=1, seed=args.seed, threads=args.threads)
            result = simulate_survey(full, root / "full")
            print(_row("survey, full 4096x2048 CCD image", 1, 4096, result.elapsed_s, "CCD/s"))


if __name__ == "__main__":
    main()
