"""Bias and sigma68 of the classical photometry baselines on >= 10,000 held-out simulated stamps.

Usage: ``python benchmarks/bench_methods.py [OUT_DIR] [N_STAMPS]`` (defaults ``bench-out/methods``
and 10000). Runs ``lumos_ops.bench.methods.run_methods_benchmark`` and prints the measured table
(the same as ``lumos bench methods --out OUT_DIR``).
"""

from __future__ import annotations

import sys

import torch

from lumos_ops.bench.methods import MethodsBenchConfig, run_methods_benchmark
from lumos_ops.bench.methods_table import format_table


def main(argv: list[str]) -> int:
    out = argv[0] if argv else "bench-out/methods"
    n_stamps = int(argv[1]) if len(argv) > 1 else 10_000
    torch.set_num_threads(1)
    report = run_methods_benchmark(MethodsBenchConfig(n_stamps=n_stamps), out, progress=True)
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
