"""A report's Sérsic injection into the real frames measured again with the models' Moffat β set to ``BETA``.

    .venv/bin/python reports/lumos/psf-beta/inject_at_beta.py REPORT_DIR BETA OUT_DIR [REFERENCE_LIGHT]

The report's configuration (frames, seed, galaxies, placements, PSF drawn) is read from
``REPORT_DIR/injection_report.json``; only the Sérsic population is injected, with the same seed, so
its galaxies, placements and noise are the report's. Each frame's header then carries
``PSFBETA = BETA``, which every method's catalogue model is rendered with (the galaxies are drawn as
the report drew them: a Kolmogorov PSF by default). ``OUT_DIR`` gets ``lumos inject``'s report and
table; compare them row by row with the report's own. ``REFERENCE_LIGHT`` replaces the aperture
correction's :data:`~lumos_ops.aperture_correction.REFERENCE_LIGHT_FRACTION` (0.98): the share of
the model's light its reference apertures hold.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import lumos_ops.evaluation.injection as injection


def _report_settings():
    path = Path(__file__).resolve().parents[1] / "crosstalk" / "splice_blended.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.report_settings


def main(report_dir: str, beta: float, out_dir: str, reference_light: float | None = None) -> None:
    config, _ = _report_settings()(report_dir)
    if reference_light is not None:
        import lumos_ops.aperture_correction as aperture_correction

        aperture_correction.REFERENCE_LIGHT_FRACTION = float(reference_light)
    frame_header = injection.frame_header

    def with_beta(*args, **kwargs):
        return {**frame_header(*args, **kwargs), "PSFBETA": float(beta)}

    injection.frame_header = with_beta
    from lumos_ops.cli import main as lumos

    arguments = ["inject", "--frames", *map(str, config["frames"]), "--out", out_dir, "--populations", "sersic",
                 "--methods", *config["methods"], "--n-galaxies", str(config["n_galaxies"]),
                 "--n-place", str(config["n_place"]), "--snr-range", *map(str, config["snr_range"]),
                 "--psf-profile", config["psf_profile"], "--spacing", str(config["spacing"]),
                 "--min-clearance", str(config["min_clearance"]), "--seed", str(config["seed"]), "--quiet"]
    if config.get("model"):
        arguments += ["--model", str(config["model"])]
    lumos(arguments)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else None)
