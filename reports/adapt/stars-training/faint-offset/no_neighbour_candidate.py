"""Seed 0's `lumos adapt` candidate fine-tuned again with no added neighbours in its TEAHUPOO stamps
(``neighbour_fraction`` 0 instead of 0.3), everything else as `reports/adapt/stars-training`; then
`heldout_rerun.py` measures it on the same held-out sub-frames (masking on).

The TEAHUPOO neighbour is not catalogued for the network (its model channel holds the target only),
while the production path fits catalogued neighbours and takes their light out before LUMOS sees
the stamp. A network that cannot tell whether a stamp holds such a neighbour hedges: on its own
training stamps, those without one read low and those with one high (`validation_stamps.py`
``--split train``). Without them, does the low reading of isolated galaxies go?

    .venv/bin/python reports/adapt/stars-training/faint-offset/no_neighbour_candidate.py RUN_SEED0 \\
        /tmp/adaptnoise/sdss-reproj/exposures /tmp/adaptnoise/sdss-reproj/catalog.parquet OUT

Runs only the adapt stages it needs (split, noise, training set, fine-tuning: about 25 min on one
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
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = AdaptConfig(n_stamps=60000, epochs=14, lr=3e-4, lr_step=10, populations=("sersic",), n_galaxies=300,
                         n_place=5, num_threads=1, seed=0, psf_profile="stars", training_psf="stars",
                         neighbour_fraction=0.0, progress=False)
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
    shutil.copyfile(Path(args.run) / "survey.json", out / "survey.json")
    subprocess.run([sys.executable, str(Path(__file__).with_name("heldout_rerun.py")), str(out), args.catalog,
                    str(out / "heldout"), "--mask-on-only"], check=True)


if __name__ == "__main__":
    main()
