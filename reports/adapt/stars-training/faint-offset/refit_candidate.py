"""A `lumos adapt` run's candidate fine-tuned again with one thing changed, everything else as the
run (split, noise scale, schedule, seed); then `heldout_rerun.py` measures it on the same held-out
sub-frames (masking on, uncorrected).

    .venv/bin/python reports/adapt/stars-training/faint-offset/refit_candidate.py RUN EXPOSURES CATALOG OUT \\
        (--no-neighbours | --balanced-weights | --importance-weights) [--seed S]

``--no-neighbours`` (8.): TEAHUPOO stamps without added neighbours (``neighbour_fraction`` 0 instead
of 0.3): a new training set (7 min), importance weights as the run had. ``--balanced-weights`` (9.):
the run's own training set (linked), the loss weighted by ``ReferencePrior.balanced_weights``.
``--importance-weights``: the run's training set and weights, to check the refit itself.
Fine-tuning takes about 15 min on one core; RUN's survey file (its floors) is copied next to the
new `model.pt`; the held-out injection takes 12 min. Writes OUT/model.pt and OUT/heldout/mask-on.parquet.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from lumos_ops.io.catalog import read_catalog, validate_catalog
from lumos_ops.lumos import adapt as adapt_module
from lumos_ops.lumos.adapt import AdaptConfig
from lumos_ops.lumos.checkpoint import load_checkpoint, resolve_model_path
from lumos_ops.survey import current_survey, load_survey, use_survey

SURVEY = Path(__file__).resolve().parents[4] / "examples" / "surveys" / "sdss-gri-reprojected.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("exposures")
    parser.add_argument("catalog")
    parser.add_argument("out")
    change = parser.add_mutually_exclusive_group(required=True)
    change.add_argument("--no-neighbours", action="store_true")
    change.add_argument("--balanced-weights", action="store_true")
    change.add_argument("--importance-weights", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="the run's adapt seed")
    args = parser.parse_args()
    run, out = Path(args.run).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("split.json", "noise.json"):
        if not (out / name).exists():
            shutil.copyfile(run / name, out / name)
    if not args.no_neighbours and (run / "teahupoo").is_dir() and not (out / "teahupoo").exists():
        (out / "teahupoo").symlink_to(run / "teahupoo")
    config = AdaptConfig(n_stamps=60000, epochs=14, lr=3e-4, lr_step=10, populations=("sersic",), n_galaxies=300,
                         n_place=5, num_threads=1, seed=args.seed, psf_profile="stars", training_psf="stars",
                         neighbour_fraction=0.0 if args.no_neighbours else 0.3,
                         balanced_weights=args.balanced_weights, progress=False)
    catalog = validate_catalog(read_catalog(args.catalog), source="adapt catalogue")
    with use_survey(load_survey(SURVEY)):
        import torch

        torch.set_num_threads(1)
        paths = adapt_module.find_exposures(args.exposures)
        train, _ = adapt_module._stage_split(out, paths, config)
        base = load_checkpoint(resolve_model_path(None), device="cpu")
        noise = adapt_module._stage_noise(out, train, base, config)
        set_dir = adapt_module._stage_training_set(out, train, catalog, base, config, noise)
        adapt_module._stage_finetune(out, set_dir, train, catalog, base, config, noise, current_survey())
    shutil.copyfile(run / "survey.json", out / "survey.json")
    subprocess.run([sys.executable, str(Path(__file__).with_name("heldout_rerun.py")), str(out), args.catalog,
                    str(out / "heldout"), "--mask-on-only"], check=True)


if __name__ == "__main__":
    main()
