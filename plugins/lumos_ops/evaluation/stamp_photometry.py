"""The classical photometry estimators run on every stamp of a TEAHUPOO set.

:data:`STAMP_METHODS` measure :class:`~lumos_ops.photometry.inputs.PhotometryInputs` directly (no
exposure needed); :func:`measure_stamp_set` runs them, and any extra method, chunk by chunk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from lumos_ops.exceptions import LumosValueError
from lumos_ops.photometry.aperture import elliptical_aperture_photometry
from lumos_ops.photometry.inputs import PhotometryInputs
from lumos_ops.photometry.modelfit import profile_fit_photometry
from lumos_ops.photometry.optimal import optimal_photometry

__all__ = ["STAMP_METHODS", "StampMeasurer", "measure_stamp_set"]

StampMeasurer = Callable[[pd.DataFrame, np.ndarray], pd.DataFrame]
"""An extra method for the benchmark: ``f(meta_rows, images) -> DataFrame`` with ``flux``,
``flux_err`` (e-/s) and ``flag``, one row per stamp; ``images`` is the (k, 2, S, S) float32 chunk
of a TEAHUPOO set (channel 0 data, channel 1 unit-flux model), ``meta_rows`` its meta.parquet rows.
A network trained on smaller stamps crops the centre (``S//2 - s//2 : S//2 - s//2 + s``)."""

STAMP_METHODS: dict[str, Callable[[PhotometryInputs], pd.DataFrame]] = {
    "aperture": elliptical_aperture_photometry,
    "modelfit": profile_fit_photometry,
    "optimal": optimal_photometry,
}
"""Classical estimators that measure :class:`PhotometryInputs` directly (no exposure needed)."""


def measure_stamp_set(
    path: str | os.PathLike[str],
    *,
    methods: Sequence[str] = tuple(STAMP_METHODS),
    extra: Mapping[str, StampMeasurer] | None = None,
    split: str | None = None,
    chunk_size: int = 1024,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict[str, float]]:
    """Measure every stamp of a TEAHUPOO set with the classical estimators.

    Parameters
    ----------
    path : path-like
        Training-set directory (``lumos_ops.sim.TrainingSet`` layout).
    methods : sequence of str, keyword-only
        Keys of :data:`STAMP_METHODS`.
    extra : mapping of str to StampMeasurer, keyword-only
        More methods (e.g. ``{"lumos": ...}``), measured on the same chunks.
    split : str or None, keyword-only
        Only stamps of this split (``"test"``...); None: all.
    chunk_size : int, keyword-only
        Stamps per batch.
    progress : bool, keyword-only
        tqdm progress bar over stamps.

    Returns
    -------
    meta : DataFrame
        The stamps' metadata rows (truth ``flux`` in e-/s, ``i_auto``...), index reset.
    results : dict of str to DataFrame
        Per method, one row per stamp (``flux``, ``flux_err``, ``flag``...).
    seconds : dict of str to float
        Wall-clock time spent in each method; under ``"background"`` (when a classical method runs)
        the annulus background that the classical methods share, computed once per chunk and
        charged to none of them.
    """
    from tqdm.auto import tqdm

    from lumos_ops.io.training_set import TrainingSet

    extra = _checked_methods(methods, extra)
    stamps = TrainingSet(path)
    ids = np.arange(len(stamps)) if split is None else stamps.indices(split)
    meta = stamps.meta.iloc[ids].reset_index(drop=True)
    names = list(methods) + list(extra)
    parts: dict[str, list[pd.DataFrame]] = {m: [] for m in names}
    seconds = {m: 0.0 for m in names}
    with tqdm(total=ids.size, unit="stamp", desc="measure stamps", disable=not progress) as bar:
        for lo in range(0, ids.size, chunk_size):
            chunk = ids[lo : lo + chunk_size]
            rows = meta.iloc[lo : lo + chunk.size]
            images = stamps.images(chunk)
            inputs = _inputs(rows, images)
            if methods:
                start = time.perf_counter()
                inputs.background  # noqa: B018 - the shared, cached estimate, timed on its own
                seconds["background"] = seconds.get("background", 0.0) + time.perf_counter() - start
            for method in methods:
                start = time.perf_counter()
                parts[method].append(STAMP_METHODS[method](inputs))
                seconds[method] += time.perf_counter() - start
            for method, measurer in extra.items():
                start = time.perf_counter()
                frame = measurer(rows, images)
                seconds[method] += time.perf_counter() - start
                if not isinstance(frame, pd.DataFrame) or len(frame) != chunk.size or "flux" not in frame.columns:
                    raise LumosValueError(f"extra method {method!r} must return a DataFrame with flux, one row per stamp")
                parts[method].append(frame.reset_index(drop=True))
            bar.update(chunk.size)
    results = {m: pd.concat(parts[m], ignore_index=True) for m in names}
    return meta, results, seconds


def _checked_methods(methods: Sequence[str], extra: Mapping[str, StampMeasurer] | None) -> dict[str, StampMeasurer]:
    """The extra methods as a dict, after checking that ``methods`` are known and no name is taken twice."""
    unknown = [m for m in methods if m not in STAMP_METHODS]
    if unknown:
        raise LumosValueError(f"unknown stamp method(s) {', '.join(unknown)}; choose from {', '.join(STAMP_METHODS)}")
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(methods))
    if clash:
        raise LumosValueError(f"extra method name(s) {', '.join(clash)} clash with the built-in methods")
    return extra


def _inputs(rows: pd.DataFrame, images: np.ndarray) -> PhotometryInputs:
    """The classical methods' inputs for a chunk of stamps: data and unit-flux model channels (e-/s),
    sub-pixel offsets, axis ratio, position angle and exposure time of the meta rows."""
    return PhotometryInputs.from_arrays(
        images[:, 0],
        images[:, 1],
        dx=rows["dx"].to_numpy(),
        dy=rows["dy"].to_numpy(),
        q=rows["q"].to_numpy(),
        pa=rows["pa"].to_numpy(),
        exptime=rows["exptime"].to_numpy(),
    )
