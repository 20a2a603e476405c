"""Likelihood co-add throughput: source-band co-adds per second on one core.

Run as ``.venv/bin/python benchmarks/bench_coadd.py [--sources 20000] [--exposures 2 5 10] [--repeats 3]``.
Each source-band gets m exposures of 5-component Gaussian-mixture likelihoods (the shape LUMOS
writes), random weights, means and widths; ``lumos_ops.lumos.coadd.coadd_likelihoods`` multiplies
them in one batched call. The table prints the best of ``--repeats`` timings and, as the reference,
the eq. (21) inverse-variance co-add of the same sources (numpy, vectorised), and the likelihood
co-add widened by a shared-error term (``rho`` per exposure, uniform in 0-0.3), and with a prior
probability of a bad exposure (``outlier_fraction`` 0.01, one more component per exposure: what the
nightly co-adds compute for a survey that sets ``coadd_outlier_fraction``). Target (the likelihood issue): >= 10,000 co-adds of 5
exposures per second on one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from lumos_ops.lumos.coadd import coadd_likelihoods


def _inputs(n: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    alpha = rng.dirichlet(np.ones(5), (n, m))
    mu = rng.normal(8.0, 2.0, (n, 1, 1)) + rng.normal(0.0, 1.5, (n, m, 5))
    sigma = rng.uniform(1.0, 3.0, (n, m, 5))
    zp = rng.uniform(25.8, 26.4, (n, m))
    return alpha, mu, sigma, zp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=20_000)
    parser.add_argument("--exposures", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"lumos-ops co-add benchmark: {platform.processor() or platform.machine()}, torch threads 1, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.sources} sources")
    print(f"{'exposures':>9} {'likelihood co-adds/s':>21} {'with shared error/s':>20} {'with bad exposures/s':>21} "
          f"{'eq. 21 co-adds/s':>17} {'max edge mass':>14}")
    for m in args.exposures:
        alpha, mu, sigma, zp = _inputs(args.sources, m)
        rho = np.random.default_rng(1).uniform(0.0, 0.3, (args.sources, m))
        best = best_rho = best_bad = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = coadd_likelihoods(alpha, mu, sigma, zp)
            best = min(best, time.perf_counter() - t0)
            t0 = time.perf_counter()
            widened = coadd_likelihoods(alpha, mu, sigma, zp, rho=rho)
            best_rho = min(best_rho, time.perf_counter() - t0)
            t0 = time.perf_counter()
            robust = coadd_likelihoods(alpha, mu, sigma, zp, outlier_fraction=0.01)
            best_bad = min(best_bad, time.perf_counter() - t0)
        mean = (alpha * mu).sum(-1)
        err = np.sqrt((alpha * (sigma**2 + mu**2)).sum(-1) - mean**2)
        t0 = time.perf_counter()
        w = 1.0 / err**2
        _ = (w * mean).sum(1) / w.sum(1), 1.0 / np.sqrt(w.sum(1))
        ivar = time.perf_counter() - t0
        edge = max(np.nanmax(result.edge_mass), np.nanmax(widened.edge_mass), np.nanmax(robust.edge_mass))
        print(f"{m:>9d} {args.sources / best:>21,.0f} {args.sources / best_rho:>20,.0f} {args.sources / best_bad:>21,.0f} "
              f"{args.sources / ivar:>17,.0f} {edge:>14.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
