"""Renderer benchmark: profiles per second of lumos_ops.render vs GalSim, and accuracy.

Run as ``.venv/bin/python benchmarks/bench_render.py [--n 200] [--seed 0] [--threads 1]``.
Both codes render the same random profiles (random Sérsic index, so GalSim cannot reuse its
per-index tables, as in real catalogues) on one CPU thread by default. Accuracy is the L1 error
``sum |ours - galsim| / flux`` per 60 x 60 stamp.
"""

from __future__ import annotations

import argparse
import platform

import torch

from lumos_ops.render.benchmark import PROFILE_SETS, run_render_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="profiles per set (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--sets", nargs="+", default=list(PROFILE_SETS), choices=PROFILE_SETS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}")
    header = f"{'set':<10} {'n':>5} {'ours prof/s':>12} {'GalSim prof/s':>14} {'speed-up':>9} {'L1 median':>10} {'L1 p95':>9} {'L1 max':>9}"
    print(header)
    print("-" * len(header))
    for kind in args.sets:
        r = run_render_benchmark(args.n, seed=args.seed, kind=kind)
        print(
            f"{kind:<10} {r['n_profiles']:>5} {r['ours_per_second']:>12.1f} {r['galsim_per_second']:>14.1f} "
            f"{r['speedup']:>8.1f}x {r['l1_median']:>10.2e} {r['l1_p95']:>9.2e} {r['l1_max']:>9.2e}"
        )


if __name__ == "__main__":
    main()
