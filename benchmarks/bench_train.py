"""Training benchmark: seconds per epoch and stamps per second of ``lumos train`` on CPU or GPU.

Run as ``.venv/bin/python benchmarks/bench_train.py [--n 20000] [--epochs 2] [--device cpu|cuda|auto]
[--threads 2] [--arch fast-mf]``. A small survey (1024 x 1024 CCD images, 3 narrow bands, 2 camera
epochs) is simulated for the backgrounds, TEAHUPOO draws ``--n`` stamps of 60 x 60 px under the
shipped default's draw (reference flux prior, 30 % neighbours; stamps rendered on ``--device``), and
``lumos_ops.lumos.train.train`` trains ``--arch`` with the default recipe's optimiser settings
(batch 256, Adam lr 1e-3, masked-annulus stamp background) for ``--epochs`` epochs on ``--device``.
Printed per epoch: seconds and training stamps per second (validation included), and the time of
each preparation step. The shipped default's recipe draws 120,000 stamps and trains 12 epochs: the
last line extrapolates this run's rates to it.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from lumos_ops.lumos.train import TrainConfig, train
from lumos_ops.sim import SurveyConfig, TeahupooConfig, generate_training_set, simulate_survey

RECIPE_STAMPS = 120_000
RECIPE_EPOCHS = 12


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="training stamps (default 20000; 5 %% go to validation)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--arch", default="fast-mf")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    device = _device(args.device)
    torch.set_num_threads(args.threads)
    gpu = f", GPU: {torch.cuda.get_device_name(0)}" if device.startswith("cuda") else ""
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads: "
          f"{torch.get_num_threads()}{gpu}; stamps and network on {device}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        survey = simulate_survey(SurveyConfig(ccd_shape=(1024, 1024), bands=("NB615", "NB655", "NB685"), n_exposures=1,
                                              seed=1, threads=args.threads), root / "survey")
        print(f"survey: {len(survey.exposure_paths)} CCD images of 1024 x 1024 px in {time.perf_counter() - start:.1f} s")
        ts = TeahupooConfig(n_stamps=args.n, seed=2, flux_source="reference_prior", neighbour_fraction=0.3,
                            background_scale_range=(0.5, 2.0), device=device, threads=args.threads)
        start = time.perf_counter()
        generate_training_set(ts, survey.exposure_paths, pd.read_parquet(survey.catalog_path), root / "teahupoo")
        seconds = time.perf_counter() - start
        print(f"TEAHUPOO: {args.n} stamps of 60 x 60 px in {seconds:.1f} s ({args.n / seconds:.0f} stamps/s)")
        config = TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, device=device,
                             num_threads=args.threads, ccd_shape=(1024, 1024), stamp_background="masked_annulus",
                             progress=False)
        start = time.perf_counter()
        metrics = train(root / "teahupoo", root / "model", config)
        total = time.perf_counter() - start
    n_train = int(metrics.get("n_train", round(args.n * 0.95)))
    print(f"{'epoch':>5} {'seconds':>9} {'train stamps/s':>15} {'val loss':>9}")
    for row in metrics["history"]:
        print(f"{row['epoch']:>5} {row['seconds']:>9.1f} {n_train / row['seconds']:>15.0f} {row['val_loss']:>9.3f}")
    steady = min(row["seconds"] for row in metrics["history"])
    print(f"train() total {total:.1f} s (normalisation, data loading and checkpoints included)")
    recipe = RECIPE_EPOCHS * steady * RECIPE_STAMPS / n_train
    print(f"default recipe ({RECIPE_STAMPS:,} stamps x {RECIPE_EPOCHS} epochs) at the fastest epoch's rate: "
          f"{recipe / 60:.1f} min of training")


if __name__ == "__main__":
    main()
