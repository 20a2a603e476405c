"""A hook for report scripts: the aperture correction's leak calibrators of every chunk measured inside a block.

    with calibrator_chunks(callback):
        run_injection(...)          # or measure_exposure(...)

``callback(ctx, frame, rows, data, usable, sky, variance)`` is called after each chunk's synthetic
blends (:func:`lumos_ops.aperture_correction._synthetic_blends`), with the chunk's context, its
reference-aperture rows ``frame``, the indices ``rows`` of its calibrators in ``ctx`` and their
stamps (e-/s per pixel, as stored), usable pixels, stamp sky (e-/s per pixel) and pixel variance
((e-/s)^2), as the production code gives them to
:func:`lumos_ops.photometry.crosstalk.leak_sums`. The measurement itself is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

import lumos_ops.aperture_correction as aperture_correction


@contextlib.contextmanager
def calibrator_chunks(callback: Callable[..., None]) -> Iterator[None]:
    production = aperture_correction._synthetic_blends

    def recorded(ctx, frame):
        num, den = production(ctx, frame)
        rows = np.flatnonzero(den != 0)
        if rows.size:
            data = ctx.stamps.data[rows]
            callback(ctx, frame, rows, data, np.isfinite(data) & ~ctx.other_source_pixels[rows],
                     np.nan_to_num(np.asarray(ctx.stamp_sky.mean, dtype=np.float64)[rows]),
                     np.asarray(ctx.stamp_sky.variance, dtype=np.float64)[rows])
        return num, den

    aperture_correction._synthetic_blends = recorded
    try:
        yield
    finally:
        aperture_correction._synthetic_blends = production
