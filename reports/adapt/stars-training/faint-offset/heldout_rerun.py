"""Seed 0's held-out injection of `lumos adapt` (`/tmp/a27`-style run directory) measured again,
without the flux correction, with ``mask_other_sources`` on and off: other sources' detections
left out of the footprints, their light beyond the detections subtracted and their pixels in
LUMOS's stamp filled with sky (on, the production default), or none of that (off).

    .venv/bin/python reports/adapt/stars-training/faint-offset/heldout_rerun.py RUN_DIR CATALOG OUT_DIR [--training] [--mask-on-only]

RUN_DIR holds the run's `split.json`, `survey.json` and `model.pt`; CATALOG is the adapt catalogue.
Writes `mask-on.parquet` and `mask-off.parquet` (aperture, optimal and the candidate's LUMOS rows).
With ``--training`` the same injection goes into the first training exposure of each band instead
(the exposures the candidate was fine-tuned on), masking on only: `training-mask-on.parquet`;
``--mask-on-only`` skips the masking-off run. ``--flux-correction`` keeps the survey file's per-exposure
flux correction (off otherwise) and ``--injection-seed`` sets the placements (`lumos adapt` seed S
injects with 1000 S + 7), so that a candidate can be scored on exactly its run's held-out galaxies,
floors and corrections.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from astropy.io import fits

import lumos_ops.measure as measure_module
from lumos_ops.evaluation.injection import InjectionConfig, run_injection
from lumos_ops.io.catalog import read_catalog
from lumos_ops.survey import load_survey, use_survey


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("catalog")
    parser.add_argument("out")
    parser.add_argument("--training", action="store_true")
    parser.add_argument("--mask-on-only", action="store_true")
    parser.add_argument("--flux-correction", action="store_true",
                        help="measure with the survey file's flux correction (the run's own setting); writes *-fc.parquet")
    parser.add_argument("--injection-seed", type=int, default=7,
                        help="InjectionConfig seed (lumos adapt's: 1000 x its seed + 7; default 7, seed 0's)")
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = json.loads((run / "split.json").read_text())
    held = split["heldout"]
    prefix = ""
    if args.training:  # one training exposure per band (FITS keyword FILTER), as the held-out set has
        bands = {fits.getval(p, "FILTER") for p in held}
        held = [next(p for p in split["train"] if fits.getval(p, "FILTER") == band) for band in sorted(bands)]
        prefix = "training-"
    catalog = read_catalog(args.catalog)
    survey = load_survey(run / "survey.json")
    if not args.flux_correction:
        survey = dataclasses.replace(survey, psf_flux_correction=False)
    measure = measure_module.measure_exposure
    for mask in (True,) if args.training or args.mask_on_only else (True, False):
        path = out / f"{prefix}mask-{'on' if mask else 'off'}{'-fc' if args.flux_correction else ''}.parquet"
        if path.exists():
            continue
        measure_module.measure_exposure = lambda *a, _mask=mask, **k: measure(*a, mask_other_sources=_mask, **k)
        start = time.time()
        config = InjectionConfig(population="sersic", n_galaxies=300, n_place=5, snr_range=(1.0, 150.0), spacing=80,
                                 min_clearance=6.0, psf_profile="stars", seed=args.injection_seed)
        with use_survey(survey):
            table = run_injection(held, config, methods=["aperture", "optimal", "lumos"], model=str(run / "model.pt"),
                                  keep_headers=True, shapes=catalog, work_dir=out)
        table.to_parquet(path, index=False)
        print(path.name, f"{time.time() - start:.0f} s", flush=True)
    measure_module.measure_exposure = measure


if __name__ == "__main__":
    main()
