"""LUMOS end-to-end inference benchmark: stamps per second from a FITS file to flux statistics.

Run as ``.venv/bin/python benchmarks/bench_inference.py [--n 2000] [--threads 1] [--archs fast-mf paper]
[--device cpu|cuda|auto]``; a GPU machine runs it as-is with ``--device cuda`` (or ``auto``): the
network then runs on the GPU in batches of ``--batch-size`` (eager PyTorch; the TorchScript graph is
the CPU path), timed with ``torch.cuda.synchronize``. Stamps and models are cut and rendered on the CPU.
Each step is timed on the same synthetic exposure (``lumos_ops.bench.synthetic``) and catalogue:
read the FITS file (``read_exposure``), cut stamps and render the catalogue models
(``prepare_targets``), normalise (``prepare_inputs``), run the network (``predict_mixtures``) and
compute the statistics (mean, variance, median, mode, sigma68, sigma95, eta: ``mixture_table``).
The network runs as a frozen TorchScript graph on CPU (``--eager`` for plain PyTorch); building the
graph is a once-per-process cost, timed on a 64-row warm-up call and shown apart (``warm-up s``),
not in the totals.
The shipped default's architecture (``fast-mf``) uses its weights and stamp background (the masked
annulus without the frame's detections, as ``LumosMethod``); others run random weights and the stamp
median (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch

from lumos_ops.bench.synthetic import random_catalog, synthetic_exposure
from lumos_ops.io.exposure import read_exposure
from lumos_ops.lumos.checkpoint import LoadedModel, load_checkpoint
from lumos_ops.lumos.config import Normalization
from lumos_ops.lumos.inference import mixture_table, predict_mixtures
from lumos_ops.lumos.model import get_model
from lumos_ops.lumos.preprocess import NetInputs, prepare_inputs
from lumos_ops.measure import prepare_targets


def _model(arch: str, device: torch.device) -> LoadedModel:
    """The shipped default when ``arch`` is its architecture, else a randomly initialised ``arch``."""
    shipped = load_checkpoint(None, device=device)
    if arch == shipped.arch:
        return shipped
    norm = Normalization()
    net = get_model(arch).eval()
    net.bind_normalization(norm)
    return LoadedModel(net=net.to(device), arch=arch, normalization=norm, metadata={}, sha256="", path="<random>",
                       device=device)


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="targets (default 2000)")
    parser.add_argument("--n-paper", type=int, default=500, help="targets for the paper architecture (default 500)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--archs", nargs="+", default=["fast-mf", "paper"])
    parser.add_argument("--eager", action="store_true", help="eager PyTorch instead of the TorchScript CPU graph")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = _device(args.device)
    optimize = device.type == "cpu" and not args.eager
    gpu = f", GPU: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads: "
          f"{torch.get_num_threads()}{gpu}; network on {device}")
    header = (f"{'arch':<6} {'n':>5} {'read':>7} {'stamps+models':>14} {'normalise':>10} {'network':>9} "
              f"{'statistics':>11} {'total s':>8} {'stamps/s':>9} {'net-only/s':>11} {'warm-up s':>10}")
    print(header)
    print("-" * len(header))
    shape = (2048, 2048)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            n = args.n if arch != "paper" else args.n_paper
            catalog = random_catalog(n, shape=shape, margin=40.0, seed=1)
            flux = 10 ** (-0.4 * (catalog["i_auto"].to_numpy() - 25.0))
            path = synthetic_exposure(catalog, flux, shape=shape, seed=2).write(os.path.join(tmp, f"{arch}.fits"))
            loaded = _model(arch, device)
            times = {}
            t = time.perf_counter()
            exposure = read_exposure(path)
            times["read"] = time.perf_counter() - t
            t = time.perf_counter()
            ctx = prepare_targets(exposure, catalog)
            times["stamps"] = time.perf_counter() - t
            t = time.perf_counter()
            i_auto = ctx.catalog["i_auto"].to_numpy(np.float64)
            inputs = prepare_inputs(ctx.stamps.data, ctx.models, i_auto, ctx.x, ctx.y,
                                    np.full(ctx.n, exposure.band_epoch), loaded.normalization,
                                    background=ctx.lumos_background(loaded.normalization))
            times["norm"] = time.perf_counter() - t
            t = time.perf_counter()
            head = NetInputs(inputs.images[:64], inputs.scalars[:64], inputs.band_epoch[:64], inputs.n_padded[:64])
            predict_mixtures(loaded, head, i_auto[:64], optimize=optimize)
            _sync(device)
            warmup = time.perf_counter() - t
            t = time.perf_counter()
            mixtures = predict_mixtures(loaded, inputs, i_auto, batch_size=args.batch_size, optimize=optimize)
            _sync(device)
            times["net"] = time.perf_counter() - t
            t = time.perf_counter()
            mixture_table(mixtures)
            times["stats"] = time.perf_counter() - t
            total = sum(times.values())
            print(f"{arch:<6} {n:>5} {times['read']:>7.2f} {times['stamps']:>14.2f} {times['norm']:>10.2f} "
                  f"{times['net']:>9.2f} {times['stats']:>11.2f} {total:>8.2f} {n / total:>9.0f} {n / times['net']:>11.0f}"
                  f" {warmup:>10.2f}")


if __name__ == "__main__":
    main()
