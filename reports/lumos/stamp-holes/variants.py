"""One injection into real frames, measured with one variant of how LUMOS's stamp treats other sources.

Usage: ``.venv/bin/python reports/lumos/stamp-holes/variants.py OUT_DIR VARIANT FRAME [FRAME ...]``

400 Sérsic galaxies x 4 placements at true SNR 1-10, Moffat PSF of FWHM 2.268 px (the SDSS frames'
second-moment width), 80 px apart, seed 5; methods aperture, optimal, LUMOS. ``VARIANT``:

- ``current``: the code as it is;
- ``holes``: other sources' pixels in LUMOS's stamp set to NaN (padded with the stamp background,
  left out of the matched-filter anchor), as before the sky fill;
- ``no-holes``: LUMOS's stamp keeps other sources' pixels (the classical methods still leave them
  out and every cutout still has the wing light subtracted);
- ``kept``: ``measure_exposure(mask_other_sources=False)``: nothing left out or subtracted for any
  method.

Writes ``OUT_DIR/injection_table.parquet``; score with ``reports/lumos/injection-spacing/score.py``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

import lumos_ops.measure as measure
from lumos_ops.evaluation.injection import InjectionConfig, run_injection
from lumos_ops.lumos import preprocess
from lumos_ops.target_context import TargetContext

VARIANTS = ("current", "holes", "no-holes", "kept")


def _holes(cutouts, fill, level, sigma, seeds):
    return np.where(fill, np.float32(np.nan), cutouts).astype(cutouts.dtype, copy=False)


def apply(variant: str) -> None:
    """Patch the production path for ``variant`` (this process only)."""
    if variant == "holes":
        preprocess.fill_with_sky = _holes  # LumosMethod.measure imports it at call time
    elif variant == "no-holes":
        prop = functools.cached_property(lambda self: np.zeros(self.stamps.data.shape, dtype=bool))
        prop.__set_name__(TargetContext, "other_source_pixels")
        TargetContext.other_source_pixels = prop
    elif variant == "kept":
        measure.measure_exposure = functools.partial(measure.measure_exposure, mask_other_sources=False)
    elif variant != "current":
        raise SystemExit(f"variant must be one of {VARIANTS}, got {variant!r}")


def main(argv: list[str]) -> int:
    out, variant, frames = Path(argv[1]), argv[2], argv[3:]
    apply(variant)
    config = InjectionConfig(population="sersic", n_galaxies=400, n_place=4, snr_range=(1.0, 10.0),
                             psf_profile="moffat", seed=5)
    table = run_injection(frames, config, methods=("aperture", "optimal", "lumos"),
                          psf_fwhm_px={f: 2.268 for f in frames})
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "injection_table.parquet")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
