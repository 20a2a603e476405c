"""The per-exposure flux correction on the real SDSS frames of ``shared/realdata``, through the PAUS
mapping of ``lumos inject`` (the shipped default model, every method): Sérsic galaxies, 300 x 10
placements, seed 11000, drawn with each frame's own stars' PSF (``stars``) or a Kolmogorov profile
of the stars' FWHM (``kolmogorov``), each measured without and with the correction.

    .venv/bin/python reports/lumos/flux-correction-real/run.py OUT stars,kolmogorov

writes ``OUT/{psf}-{nofc,fc}.parquet`` (the injection table) and ``.json`` (its fixed-truth report)
and skips runs already written. The sep frame is left out: it has 4 stars, too few for a PSF.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from lumos_ops.evaluation.injection import InjectionConfig, run_injection
from lumos_ops.evaluation.injection_report import json_clean, score_injection
from lumos_ops.survey import paus_survey, use_survey

FRAMES = ("../shared/realdata/sdss_g.fits.bz2", "../shared/realdata/sdss_r.fits.bz2",
          "../shared/realdata/sdss_i.fits.bz2")


def main(out: Path, profiles: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for psf in profiles:
        for corrected in (False, True):
            name = f"{psf}-{'fc' if corrected else 'nofc'}"
            if (out / f"{name}.parquet").exists():
                continue
            start = time.time()
            config = InjectionConfig(population="sersic", n_galaxies=300, n_place=10, seed=11000, psf_profile=psf,
                                     psf_from_stars=True)
            with use_survey(dataclasses.replace(paus_survey(), psf_flux_correction=corrected)):
                table = run_injection(FRAMES, config)
            table.to_parquet(out / f"{name}.parquet", index=False)
            report = score_injection(table)
            (out / f"{name}.json").write_text(json.dumps(json_clean(report), indent=1, allow_nan=False))
            print(f"{name}: {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(","))
