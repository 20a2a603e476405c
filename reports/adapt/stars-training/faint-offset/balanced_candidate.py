"""Seed 0's `lumos adapt` candidate fine-tuned again on the same TEAHUPOO stamps with balanced loss
weights (``AdaptConfig.balanced_weights``), everything else as the run; then `heldout_rerun.py`
measures it on the same held-out sub-frames (masking on).

Under the importance weights ``w(f) = u(f) / g(f)`` alone, 89 % of the fine-tuning loss sits on
stamps at SNR > 50 and 0.6 % at SNR 1-5. The balanced weights ``g(f_hat(x)) / g(f)`` keep the
flat-prior minimiser (the factor depends on the pixels only) and give the faint stamps their share
of the stamps. Does the candidate's low faint reading go?

    .venv/bin/python reports/adapt/stars-training/faint-offset/balanced_candidate.py RUN_SEED0 \\
        /tmp/adaptnoise/sdss-reproj/exposures /tmp/adaptnoise/sdss-reproj/catalog.parquet OUT [--seed 1]

Reuses the run's split, noise scale and training set (linked; made again, 7 min, when the run
no longer has it), fine-tunes (about 15 min on one
core), copies RUN_SEED0's survey file (its floors) next to the new `model.pt`, then the held-out
injection (12 min). Writes OUT/model.pt and OUT/heldout/mask-on.parquet.
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
    parser.add_argument("--seed", type=int, default=0, help="the run's adapt seed (fine-tuning)")
    args = parser.parse_args()
    run, out = Path(args.run).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("split.json", "noise.json"):
        if not (out / name).exists():
            shutil.copyfile(run / name, out / name)
    if (run / "teahupoo").is_dir() and not (out / "teahupoo").exists():
        (out / "teahupoo").symlink_to(run / "teahupoo")
    config = AdaptConfig(n_stamps=60000, epochs=14, lr=3e-4, lr_step=10, populations=("sersic",), n_galaxies=300,
                         n_place=5, num_threads=1, seed=args.seed, psf_profile="stars", training_psf="stars",
                         balanced_weights=True, progress=False)
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
