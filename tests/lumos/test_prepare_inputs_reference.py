"""``prepare_inputs`` and ``stamp_background`` give the bits of a plain reference implementation
(full-array passes, ``np.median`` per stamp) on awkward stamps: NaN and infinite pixels, empty stamps,
signed zeros at the median, odd sizes, float64 input, batches that straddle the image-pass blocks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lumos_ops.lumos.config import N_SCALARS, Normalization
from lumos_ops.lumos.preprocess import _CHUNK_STAMPS, NetInputs, _row_medians, prepare_inputs, stamp_background
from lumos_ops.photometry.background import annulus_background

from lumos_helpers import NORM


def _reference_median(cutouts: np.ndarray) -> np.ndarray:
    """Median of the finite pixels of every stamp (float64), 0 without one: ``np.median`` row by row."""
    flat = cutouts.reshape(cutouts.shape[0], -1)
    out = np.zeros(flat.shape[0], dtype=np.float64)
    for i, row in enumerate(flat):
        values = row if not np.isnan(row).any() else row[np.isfinite(row)]
        out[i] = float(np.median(values)) if values.size else 0.0
    return out


def _reference_background(cutouts: np.ndarray, method: str) -> np.ndarray:
    if method == "median":
        return _reference_median(cutouts)
    n, size = cutouts.shape[0], cutouts.shape[-1]
    zero = np.zeros(n)
    mean = annulus_background(cutouts, zero, zero, r_in=size / 4.0, r_out=size / 2.0 - 1.0).mean
    empty = ~np.isfinite(mean)
    mean[empty] = _reference_median(cutouts[empty])
    return mean


def _reference_inputs(cutouts, models, i_auto, ccd_x, ccd_y, band_epoch, norm: Normalization) -> NetInputs:
    """The normalisation of :func:`prepare_inputs`, one whole-array step at a time."""
    cutouts = np.asarray(cutouts, dtype=np.float32)
    models = np.asarray(models, dtype=np.float32)
    n = cutouts.shape[0]
    background = _reference_background(cutouts, norm.stamp_background)
    nan = np.isnan(cutouts)
    images = np.empty((n, 2) + cutouts.shape[1:], dtype=np.float32)
    np.subtract(cutouts, background[:, None, None].astype(np.float32), out=images[:, 0])
    images[:, 0][nan] = 0.0
    images[:, 0] *= np.float32(1.0 / (norm.pixel_scale * norm.pixel_soft))
    np.arcsinh(images[:, 0], out=images[:, 0])
    images[:, 0] *= np.float32(norm.pixel_soft)
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
    return NetInputs(images=images, scalars=scalars, band_epoch=np.array(band_epoch, dtype=np.int64),
                     n_padded=nan.reshape(n, -1).sum(axis=1).astype(np.int64))


def _awkward_stamps(n: int, size: int, seed: int, dtype=np.float32) -> np.ndarray:
    """Sky 5 e-/s, unit noise, a central source; NaN borders, NaN holes, an empty stamp, infinite
    pixels, stamps whose median is +0 or -0 (half the pixels zero of either sign), a constant stamp."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    stamps = 5.0 + rng.normal(0.0, 1.0, (n, size, size))
    stamps += 40.0 * np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / 8.0)
    stamps[1, :, : size // 3] = np.nan  # off the CCD edge
    stamps[2, rng.random((size, size)) < 0.1] = np.nan  # masked pixels
    stamps[3] = np.nan  # off the CCD
    stamps[4, 0, :3] = np.inf
    stamps[4, 1, :2] = -np.inf
    stamps[5, :, :] = 0.0
    stamps[5, ::2] = -0.0
    stamps[5, : size // 4] = 1.0
    stamps[5, -size // 4:] = -1.0
    stamps[6] = 0.0
    stamps[6, :, ::2] = -0.0
    stamps[7] = 3.25
    stamps[8, 2, 2] = np.nan
    stamps[8, 3, 3] = np.inf
    stamps[-1, :, -2:] = np.nan  # NaN rows in the last, partial block too
    stamps[n // 2, size // 2:] = np.nan
    return stamps.astype(dtype)


def _assert_same_bits(got: NetInputs, want: NetInputs) -> None:
    for name in ("images", "scalars", "band_epoch", "n_padded"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name


@pytest.mark.parametrize("size", [8, 9, 60])
@pytest.mark.parametrize("method", ["median", "masked_annulus"])
def test_prepare_inputs_gives_the_reference_bits(size, method):
    n = 2 * _CHUNK_STAMPS + 7
    stamps = _awkward_stamps(n, size, seed=size)
    rng = np.random.default_rng(size + 1)
    models = rng.random((n, size, size)).astype(np.float32)
    args = (models, rng.uniform(16.0, 26.0, n), rng.uniform(0, 300, n), rng.uniform(0, 200, n), np.arange(n) % 3)
    for norm in (dataclasses.replace(NORM, stamp_background=method),
                 dataclasses.replace(NORM, stamp_background=method, imag_range=(18.0, 24.0), pixel_soft=2.5)):
        _assert_same_bits(prepare_inputs(stamps, *args, norm), _reference_inputs(stamps, *args, norm))
        wide = stamps.astype(np.float64)  # converted to float32 first, as before
        _assert_same_bits(prepare_inputs(wide, *args, norm), _reference_inputs(wide, *args, norm))


def test_prepare_inputs_of_nan_free_and_empty_batches():
    rng = np.random.default_rng(3)
    stamps = rng.normal(5.0, 1.0, (5, 12, 12)).astype(np.float32)
    args = (np.zeros_like(stamps), np.full(5, 21.0), np.full(5, 10.0), np.full(5, 10.0), np.zeros(5, int))
    _assert_same_bits(prepare_inputs(stamps, *args, NORM), _reference_inputs(stamps, *args, NORM))
    empty = prepare_inputs(stamps[:0], np.zeros((0, 12, 12)), *(a[:0] for a in args[1:]), NORM)
    assert empty.images.shape == (0, 2, 12, 12) and empty.n_padded.shape == (0,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["median", "masked_annulus"])
def test_stamp_background_gives_the_reference_bits(dtype, method):
    for size in (7, 10, 60):
        stamps = _awkward_stamps(40, size, seed=size, dtype=dtype)
        got = stamp_background(stamps, method)
        want = _reference_background(stamps, method)
        assert got.dtype == want.dtype == np.float64
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.float16])
@pytest.mark.parametrize("m", [1, 2, 3, 16, 17, 3600])
def test_row_medians_are_numpy_medians(dtype, m):
    rng = np.random.default_rng(m)
    values = rng.normal(0.0, 3.0, (50, m))
    values[1] = 0.0
    values[2, ::2] = 0.0
    values[3] = np.round(values[3])  # ties
    if not np.issubdtype(dtype, np.floating):
        values = np.round(values * 1e3).astype(dtype)
    else:
        values[4, : max(m // 2, 1)] = np.inf
        values[5, :] = -np.inf
        values = values.astype(dtype)
        values[1, ::3] = -0.0  # +0 and -0 at the median
        values[2, 1::4] = -0.0
    rows = np.flatnonzero(np.arange(50) % 7 != 6)
    got = _row_medians(values, rows)
    want = np.median(values[rows], axis=1)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert _row_medians(values, rows[:0]).shape == (0,)
