"""Crowded fields: seconds to prepare the targets of one frame (stamps, models, neighbour fit) by density.

Run as ``.venv/bin/python benchmarks/bench_crowded.py [--n 2000 8000 14000 20000] [--size 2048]``.
Each run draws ``n`` catalogue galaxies on one ``size x size`` synthetic frame
(``lumos_ops.bench.synthetic``), writes it, and times ``read_exposure`` + ``prepare_targets``: cutting
stamps, rendering the catalogue models, detecting the frame's sources and fitting the blended
targets jointly (``photometry.neighbours``). A PAUS CCD holds about one target per 3,400 px^2; the
largest group of blends that the joint fit solved is printed with the time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

import lumos_ops.photometry.neighbours as neighbours
from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure
from lumos_ops.io.exposure import read_exposure
from lumos_ops.measure import prepare_targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2000, 8000, 14000, 20000])
    parser.add_argument("--size", type=int, default=2048, help="frame side in pixels (default 2048)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    largest: list[int] = []
    components = neighbours._components

    def recording(n: int, pairs: np.ndarray) -> np.ndarray:
        label = components(n, pairs)
        largest.append(int(np.bincount(label[np.unique(pairs)]).max()))
        return label

    neighbours._components = recording
    shape = (args.size, args.size)
    print(f"{'targets':>8} {'px^2 per target':>16} {'largest group':>14} {'prepare s':>10}  (MAX_GROUP {neighbours.MAX_GROUP})")
    for n in args.n:
        catalog = random_catalog(n, shape=shape, margin=40.0, seed=1)
        flux = 10 ** (-0.4 * (catalog["i_auto"].to_numpy() - 25.0))
        largest.clear()
        with tempfile.TemporaryDirectory() as tmp:
            path = synthetic_exposure(catalog, flux, shape=shape, seed=2).write(os.path.join(tmp, "frame.fits"))
            start = time.perf_counter()
            prepare_targets(read_exposure(path), catalog)
            seconds = time.perf_counter() - start
        print(f"{n:>8} {args.size ** 2 / n:>16.0f} {max(largest, default=0):>14} {seconds:>10.1f}")


if __name__ == "__main__":
    main()
