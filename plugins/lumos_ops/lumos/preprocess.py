"""Turn stamps and catalogue values into normalised network inputs (see :class:`Normalization`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from lumos_ops.exceptions import LumosValueError
from lumos_ops.lumos.config import N_SCALARS, STAMP_BACKGROUNDS, Normalization

__all__ = ["NetInputs", "stamp_background", "pixel_flux_estimate", "stamp_sky", "sky_background", "fill_with_sky", "prepare_inputs", "estimate_normalization",
           "with_stamp_background", "with_imag_range"]


@dataclasses.dataclass(frozen=True)
class NetInputs:
    """Normalised inputs of n targets.

    Attributes
    ----------
    images : ndarray, shape (n, 2, S, S), float32
        Channel 0: ``pixel_soft * asinh((cutout - b) / (pixel_scale * pixel_soft))`` with b the
        stamp background by ``Normalization.stamp_background`` (NaN pixels -> 0, i.e. padded
        with b); channel 1: model image x
        ``model_scale``.
    scalars : ndarray, shape (n, 4), float32
        Standardised i_auto, CCD x and y in [-1, 1], standardised background (``SCALAR_NAMES``).
    band_epoch : ndarray, shape (n,), int64
        Row of the band x epoch embedding.
    n_padded : ndarray, shape (n,), int64
        Number of NaN pixels that were padded in each cutout.
    """

    images: np.ndarray
    scalars: np.ndarray
    band_epoch: np.ndarray
    n_padded: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


def stamp_background(cutouts: np.ndarray, method: str = "median", *, source_mask: np.ndarray | None = None) -> np.ndarray:
    """Background of every stamp (e-/s per pixel); 0 for stamps without a usable pixel.

    Parameters
    ----------
    cutouts : ndarray, shape (n, S, S)
        Stamps centred on their targets, NaN where masked.
    method : {"median", "masked_annulus"}
        ``"median"``: the median of the finite pixels. It sits above the sky wherever faint
        sources crowd the stamp (+0.05 to +0.085 pixel sigma on the real frames of
        ``reports/lumos/background-input``, −0.006 on the simulator's), so a network trained on
        one reads the other's fluxes low or high. ``"masked_annulus"``: the classical baselines'
        estimator (:func:`lumos_ops.photometry.background.annulus_background`, ``"masked_mean"``:
        sources detected in the annulus left out, then a mean-centred clip) in the annulus from
        ``S / 4`` to ``S / 2 - 1`` px, which keeps the target's core out; it estimates the mean
        sky, whatever the source density.
    source_mask : ndarray of bool, shape (n, S, S), keyword-only
        ``"masked_annulus"`` only: the pixels of sources detected once on the whole frame
        (:func:`lumos_ops.photometry.frame_sources.frame_sources`, cut like the stamps), left out
        instead of detecting sources in every stamp; None detects them per stamp.

    Returns
    -------
    ndarray, shape (n,), float64
    """
    if method == "masked_annulus":
        return sky_background(stamp_sky(cutouts, source_mask=source_mask), cutouts)
    if method != "median":
        raise LumosValueError(f"stamp background must be one of {STAMP_BACKGROUNDS}, got {method!r}")
    flat = cutouts.reshape(cutouts.shape[0], int(np.prod(cutouts.shape[1:])))
    return _median_background(flat, np.isnan(flat).any(axis=1))


def pixel_flux_estimate(cutouts: np.ndarray, models: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Matched-filter flux of every stamp (e-/s): ``sum(m (d - b)) / sum(m^2)`` over the finite pixels.

    Parameters
    ----------
    cutouts : ndarray, shape (n, S, S)
        Stamps ``d`` (e-/s per pixel), NaN where masked.
    models : ndarray, shape (n, S, S)
        Unit-flux PSF-convolved models ``m`` of the targets.
    background : ndarray, shape (n,)
        Each stamp's background ``b`` (e-/s per pixel), e.g. :func:`stamp_background`.

    Returns
    -------
    ndarray, shape (n,), float64
        0 for a stamp whose model has no finite pixel.
    """
    d = np.asarray(cutouts, dtype=np.float64) - np.asarray(background, dtype=np.float64)[:, None, None]
    m = np.asarray(models, dtype=np.float64)
    finite = np.isfinite(d) & np.isfinite(m)
    m = np.where(finite, m, 0.0)
    power = (m * m).sum(axis=(1, 2))
    weighted = (m * np.where(finite, d, 0.0)).sum(axis=(1, 2))
    return np.divide(weighted, power, out=np.zeros_like(weighted), where=power > 0)


def stamp_sky(cutouts: np.ndarray, *, source_mask: np.ndarray | None = None):
    """The sky of every stamp in the ring from ``S / 4`` to ``S / 2 - 1`` px about its centre: the
    classical baselines' masked annulus estimator
    (:func:`lumos_ops.photometry.background.annulus_background`, ``"masked_mean"``), its ``mean``
    (e-/s per pixel, NaN without a usable pixel) and pixel-noise ``variance`` ((e-/s)^2).

    ``cutouts``: shape (n, S, S), NaN where masked; ``source_mask``: bool (n, S, S), the frame's
    detections cut like the stamps (None detects sources in every stamp).
    """
    from lumos_ops.photometry.background import annulus_background

    n, size = cutouts.shape[0], cutouts.shape[-1]
    zero = np.zeros(n)
    return annulus_background(cutouts, zero, zero, r_in=size / 4.0, r_out=size / 2.0 - 1.0, source_mask=source_mask)


def sky_background(sky, cutouts: np.ndarray) -> np.ndarray:
    """The ``"masked_annulus"`` stamp background from a :func:`stamp_sky` result ``sky`` of
    ``cutouts``: its mean (e-/s per pixel), the stamp median where no ring pixel was usable."""
    mean = np.array(sky.mean, dtype=np.float64, copy=True)
    empty = ~np.isfinite(mean)
    if empty.any():
        mean[empty] = stamp_background(cutouts[empty], "median")
    return mean


def fill_with_sky(cutouts: np.ndarray, fill: np.ndarray, level: np.ndarray, sigma: np.ndarray,
                  seeds: np.ndarray) -> np.ndarray:
    """``cutouts`` with the ``fill`` pixels replaced by sky: ``level`` plus Gaussian noise of ``sigma``.

    What a noise replacer does for the other sources of a frame while one source is measured
    (docs/background.md, "Other sources under a large footprint"; ``reports/lumos/stamp-holes``):
    the network sees sky where another source was, as in its training stamps, instead of a hole it
    never saw.

    Parameters
    ----------
    cutouts : ndarray, shape (n, S, S)
        Stamps (e-/s per pixel).
    fill : ndarray of bool, shape (n, S, S)
        Pixels to replace.
    level, sigma : ndarray, shape (n,)
        Sky level (e-/s per pixel) and pixel noise (e-/s) of each stamp; a stamp whose ``level`` or
        ``sigma`` is not finite gets NaN there (padded by :func:`prepare_inputs`).
    seeds : ndarray of int, shape (n,) or (n, k)
        One seed (or seed sequence) per stamp: the same target gets the same noise whatever the
        chunk it is measured in.

    Returns
    -------
    ndarray, shape (n, S, S), the dtype of ``cutouts``
    """
    out = np.array(cutouts, copy=True)
    level = np.asarray(level, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    for i in np.flatnonzero(np.asarray(fill).any(axis=(1, 2))):
        where = fill[i]
        if not (np.isfinite(level[i]) and np.isfinite(sigma[i])):
            out[i][where] = np.nan
            continue
        noise = np.random.default_rng(np.asarray(seeds[i]).tolist()).standard_normal(int(where.sum()))
        out[i][where] = level[i] + sigma[i] * noise
    return out


_FAST_MEDIAN_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_CHUNK_STAMPS = 32
"""Stamps per block of :func:`prepare_inputs`' image pass: a block's channel 0 stays in the L2 cache
through its four elementwise steps (32 stamps of 60 x 60 float32 = 0.46 MB)."""


def _row_medians(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``np.median(values[rows], axis=1)`` bit for bit, for NaN-free rows.

    One single-index partition (numpy's SIMD selection) of a copy of the rows and, for an even row
    length, the minimum of the upper part, where ``np.median`` partitions a copy at three indices.
    A row whose middle value is zero goes through ``np.median`` itself (+0 and -0 compare equal,
    so which one a partition puts there depends on the algorithm). Other dtypes than float32 and
    float64 (whose mean ``np.median`` computes in another precision) go through ``np.median``.

    Parameters
    ----------
    values : ndarray, shape (N, m)
        Values (any unit); the selected rows hold no NaN (infinities allowed).
    rows : ndarray of int, shape (n,)
        The rows of ``values`` to take the median of.

    Returns
    -------
    ndarray, shape (n,)
        Same dtype and values as ``np.median(values[rows], axis=1)``.
    """
    m = values.shape[1]
    if values.dtype not in _FAST_MEDIAN_DTYPES or m < 2 or rows.size == 0:
        return np.median(values[rows], axis=1)
    half = (m - 1) // 2
    part = values[rows]
    part.partition(half, axis=1)
    low = part[:, half]
    if m % 2:
        middle = low.copy()
        ambiguous = low == 0
    else:
        high = part[:, half + 1:].min(axis=1)
        middle = (low + high) / values.dtype.type(2)
        ambiguous = (low == 0) | (high == 0)
    if ambiguous.any():
        middle[ambiguous] = np.median(values[rows[ambiguous]], axis=1)
    return middle


def _median_background(flat: np.ndarray, nan_rows: np.ndarray) -> np.ndarray:
    """The ``"median"`` stamp background (e-/s per pixel, float64, shape (n,)) of stamps ``flat``
    (n, S*S; NaN where masked), ``nan_rows`` (n,) marking the stamps that hold a NaN: the median of
    the finite pixels, 0 for a stamp without one."""
    out = np.zeros(flat.shape[0], dtype=np.float64)
    if not nan_rows.all():
        out[~nan_rows] = _row_medians(flat, np.flatnonzero(~nan_rows))
    for i in np.flatnonzero(nan_rows):
        finite = flat[i][np.isfinite(flat[i])]
        out[i] = float(_row_medians(finite[None], np.zeros(1, dtype=np.intp))[0]) if finite.size else 0.0
    return out


def prepare_inputs(
    cutouts: np.ndarray,
    models: np.ndarray,
    i_auto: np.ndarray,
    ccd_x: np.ndarray,
    ccd_y: np.ndarray,
    band_epoch: np.ndarray,
    norm: Normalization,
    *,
    background: np.ndarray | None = None,
) -> NetInputs:
    """Normalise a batch of targets.

    Parameters
    ----------
    cutouts : ndarray, shape (n, S, S)
        Stamps in e-/s per pixel, NaN where masked or off the CCD.
    models : ndarray, shape (n, S, S)
        Unit-flux PSF-convolved models.
    i_auto : ndarray, shape (n,)
        Catalogue i-band magnitudes (AB); clipped into ``norm.imag_range`` when it is set.
    ccd_x, ccd_y : ndarray, shape (n,)
        Target position on the CCD (pixels, x = column).
    band_epoch : ndarray of int, shape (n,)
        Band x epoch rows (``lumos_ops.constants.band_epoch_index``).
    norm : Normalization
    background : ndarray, shape (n,), keyword-only
        The stamps' backgrounds (e-/s per pixel) by ``norm.stamp_background``, when they are already
        known (:func:`stamp_background` of these cutouts, e.g. computed once per training stamp);
        None computes them.

    Returns
    -------
    NetInputs
    """
    cutouts = np.asarray(cutouts, dtype=np.float32)
    models = np.asarray(models, dtype=np.float32)
    n = cutouts.shape[0]
    if cutouts.ndim != 3 or models.shape != cutouts.shape:
        raise LumosValueError(f"cutouts and models must both have shape (n, S, S); got {cutouts.shape} and {models.shape}")
    values = {"i_auto": i_auto, "ccd_x": ccd_x, "ccd_y": ccd_y, "band_epoch": band_epoch}
    for name, value in values.items():
        if np.shape(value) != (n,):
            raise LumosValueError(f"{name} must have shape ({n},), got {np.shape(value)}")
    flat = cutouts.reshape(n, int(np.prod(cutouts.shape[1:])))
    nan_rows = np.isnan(flat).any(axis=1)
    if background is not None:
        background = np.asarray(background, dtype=np.float64)
        if background.shape != (n,):
            raise LumosValueError(f"background must have shape ({n},), got {background.shape}")
    elif norm.stamp_background == "median":
        background = _median_background(flat, nan_rows)
    else:
        background = stamp_background(cutouts, norm.stamp_background)
    nan_index = np.flatnonzero(nan_rows)
    nan_masks = np.isnan(cutouts[nan_index])
    n_padded = np.zeros(n, dtype=np.int64)
    n_padded[nan_index] = np.count_nonzero(nan_masks.reshape(nan_index.size, flat.shape[1]), axis=1)
    images = np.empty((n, 2) + cutouts.shape[1:], dtype=np.float32)
    offset = background.astype(np.float32)[:, None, None]
    scale = np.float32(1.0 / (norm.pixel_scale * norm.pixel_soft))
    soft = np.float32(norm.pixel_soft)
    for start in range(0, n, _CHUNK_STAMPS):
        stop = min(start + _CHUNK_STAMPS, n)
        block = images[start:stop, 0]
        np.subtract(cutouts[start:stop], offset[start:stop], out=block)
        first, last = np.searchsorted(nan_index, (start, stop))
        for k in range(first, last):
            np.copyto(block[nan_index[k] - start], 0.0, where=nan_masks[k])
        np.multiply(block, scale, out=block)
        np.arcsinh(block, out=block)
        np.multiply(block, soft, out=block)
    np.multiply(models, np.float32(norm.model_scale), out=images[:, 1])
    ny, nx = norm.ccd_shape
    scalars = np.empty((n, N_SCALARS), dtype=np.float32)
    imag = np.asarray(i_auto, dtype=np.float64)
    if norm.imag_range is not None:
        imag = np.clip(imag, *norm.imag_range)
    scalars[:, 0] = (imag - norm.imag_mean) / norm.imag_std
    scalars[:, 1] = 2.0 * np.asarray(ccd_x, dtype=np.float64) / (nx - 1) - 1.0
    scalars[:, 2] = 2.0 * np.asarray(ccd_y, dtype=np.float64) / (ny - 1) - 1.0
    scalars[:, 3] = (background - norm.background_mean) / norm.background_std
    scalars[~np.isfinite(scalars)] = 0.0
    return NetInputs(
        images=images,
        scalars=scalars,
        band_epoch=np.array(band_epoch, dtype=np.int64),
        n_padded=n_padded,
    )


def estimate_normalization(
    cutouts: np.ndarray,
    models: np.ndarray,
    i_auto: np.ndarray,
    flux: np.ndarray,
    *,
    ccd_shape: tuple[int, int],
    stamp_background_method: str = "median",
) -> Normalization:
    """Normalisation constants from a sample of training stamps.

    ``pixel_scale`` = 1.4826 x MAD of the background-subtracted pixels (the typical pixel noise),
    ``model_scale`` = 1 / median of the model peaks, ``flux_scale`` = median of the true fluxes
    (at least 1 e-/s), i_auto and background standardised with their mean and standard deviation.

    Parameters
    ----------
    cutouts, models : ndarray, shape (n, S, S)
    i_auto, flux : ndarray, shape (n,)
        Magnitudes (AB) and true fluxes (e-/s); ``imag_range`` is the range of ``i_auto`` (pass every
        training stamp's magnitude through :func:`with_imag_range` to widen it to the whole set).
    ccd_shape : (int, int), keyword-only
        (ny, nx) of the CCDs the stamps come from.
    stamp_background_method : str, keyword-only
        :data:`~lumos_ops.lumos.config.STAMP_BACKGROUNDS` entry the network will be trained with.
    """
    background = stamp_background(cutouts, stamp_background_method)
    residual = cutouts - background[:, None, None]
    residual = residual[np.isfinite(residual)]
    mad = float(np.median(np.abs(residual - np.median(residual)))) * 1.4826
    peaks = models.reshape(models.shape[0], -1).max(axis=1)
    peak = float(np.median(peaks[peaks > 0])) if (peaks > 0).any() else 1.0
    return Normalization(
        pixel_scale=max(mad, 1e-6),
        model_scale=1.0 / max(peak, 1e-12),
        flux_scale=max(float(np.median(flux)), 1.0),
        imag_mean=float(np.mean(i_auto)),
        imag_std=max(float(np.std(i_auto)), 1e-3),
        background_mean=float(np.mean(background)),
        background_std=max(float(np.std(background)), 1e-6),
        ccd_shape=tuple(int(v) for v in ccd_shape),
        stamp_background=stamp_background_method,
        imag_range=_finite_range(i_auto),
    )


def _finite_range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite ``values``, or None when there are fewer than two distinct ones."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        return None
    return float(values.min()), float(values.max())


def with_imag_range(norm: Normalization, i_auto: np.ndarray) -> Normalization:
    """``norm`` clipping ``i_auto`` (AB mag) into the range of the training stamps' magnitudes
    ``i_auto`` (every stamp the network is trained on, not a sample); every other constant kept."""
    return dataclasses.replace(norm, imag_range=_finite_range(i_auto))


def with_stamp_background(norm: Normalization, cutouts: np.ndarray, method: str) -> Normalization:
    """``norm`` subtracting the stamp background ``method``, the background input's mean and
    standard deviation measured on ``cutouts`` (n, S, S; e-/s per pixel) with it; every other
    constant kept (fine-tuning a network to another background estimate)."""
    background = stamp_background(cutouts, method)
    return dataclasses.replace(norm, stamp_background=method, background_mean=float(np.mean(background)),
                               background_std=max(float(np.std(background)), 1e-6))
