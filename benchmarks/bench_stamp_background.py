"""Stamp and annulus backgrounds on batches of cutouts: CPU seconds per batch.

Run as ``.venv/bin/python benchmarks/bench_stamp_background.py [--n 2500] [--repeat 5] [--seed 0]``;
for another checkout's code put its ``plugins`` first on ``PYTHONPATH``. Writes nothing.

Every figure is the **CPU time** of this process (``time.process_time``, one thread), the minimum
over ``--repeat`` calls on the same batch (the machine is shared). Rows:

* ``stamp median`` and ``stamp masked_annulus``: ``lumos_ops.lumos.preprocess.stamp_background``
  of ``n`` float32 stamps of 60 x 60 px, as a LUMOS network's inputs are prepared (the
  ``"masked_annulus"`` one is ``annulus_background`` with its default ``"masked_mean"`` estimator
  in the 15-29 px annulus, sources detected in every stamp);
* ``annulus 94 px, per-cutout detection`` and ``annulus 94 px, frame source_mask``: the classical
  baselines' ``annulus_background`` (30-45 px, sub-pixel offsets) on ``n`` float64 cutouts of
  94 x 94 px, without and with a source mask.

The stamps: a sky of 5 e-/s with white noise of 1 e-/s, a target at the centre (a Gaussian of
2 px, 5-300 e-/s) and 0-4 neighbours (Gaussians of 0.8-4 px, 10-400 e-/s) anywhere on the stamp;
one stamp in ten has a NaN block at its edge and one in ten scattered NaN pixels, as masked or
off-CCD pixels.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

import lumos_ops  # noqa: E402
from lumos_ops.lumos.preprocess import stamp_background  # noqa: E402
from lumos_ops.photometry.background import annulus_background  # noqa: E402


def synthetic_stamps(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` stamps of ``size`` x ``size`` px (e-/s per pixel, float64) as the module docstring says."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    stamps = 5.0 + rng.normal(0.0, 1.0, (n, size, size))
    centre = size / 2.0
    for k in range(n):
        stamps[k] += rng.uniform(5.0, 300.0) * _gaussian(xx - centre, yy - centre, 2.0)
        for _ in range(rng.integers(0, 5)):
            x0, y0 = rng.uniform(-3.0, size + 3.0, 2)
            stamps[k] += rng.uniform(10.0, 400.0) * _gaussian(xx - x0, yy - y0, rng.uniform(0.8, 4.0))
        kind = rng.uniform()
        if kind < 0.1:
            stamps[k, :, : rng.integers(1, size)] = np.nan
        elif kind < 0.2:
            stamps[k][rng.uniform(size=(size, size)) < rng.uniform(0.0, 0.3)] = np.nan
    return stamps


def _gaussian(dx: np.ndarray, dy: np.ndarray, sigma: float) -> np.ndarray:
    """Unit-flux circular Gaussian of ``sigma`` px."""
    return np.exp(-(dx**2 + dy**2) / (2.0 * sigma**2)) / (2.0 * np.pi * sigma**2)


def cpu_seconds(call: Callable[[], object], repeat: int) -> float:
    """Minimum CPU time (s) of ``repeat`` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(repeat):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2500, help="stamps (and 94 px cutouts) per batch")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per row (the minimum is shown)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    stamps = synthetic_stamps(args.n, 60, args.seed).astype(np.float32)
    wide = synthetic_stamps(args.n, 94, args.seed + 1)
    rng = np.random.default_rng(args.seed + 2)
    dx, dy = rng.uniform(-0.5, 0.5, (2, args.n))
    source_mask = wide > 7.0  # the neighbours' and target's pixels above 2 sigma of the sky

    rows = {
        "stamp median (60 px, float32)": lambda: stamp_background(stamps, "median"),
        "stamp masked_annulus (60 px, float32)": lambda: stamp_background(stamps, "masked_annulus"),
        "annulus 94 px, per-cutout detection": lambda: annulus_background(wide, dx, dy),
        "annulus 94 px, frame source_mask": lambda: annulus_background(wide, dx, dy, source_mask=source_mask),
    }
    print(f"lumos_ops from {os.path.dirname(lumos_ops.__file__)}")
    print(f"{args.n:,} cutouts per batch, CPU s (minimum of {args.repeat})")
    for name, call in rows.items():
        seconds = cpu_seconds(call, args.repeat)
        print(f"  {name:42s} {seconds:7.3f} s   {1e3 * seconds / args.n:6.3f} ms/cutout")


if __name__ == "__main__":
    main()
