"""Noise-texture augmentation of background cutouts: spatially correlated noise at unchanged sigma.

Real frames are not white-noise images: a reprojected (resampled) frame has pixel noise
correlated over a few pixels, and seeing-matched or smoothed products more so. A background
cutout ``b`` (e-/s per pixel) is re-textured as

    b' = K * (b + c sigma e),    c = sqrt(1 / ||K||_2^2 - 1),

with ``K`` a separable kernel of unit sum (a Gaussian of ``sigma_kernel`` pixels convolved with a
resampling kernel at a sub-pixel shift, which is what reprojection applies), ``sigma`` the robust
per-pixel noise of ``b`` (1.4826 x the median absolute deviation, e-/s) and ``e`` fresh standard
normal noise. For a white-noise background the result has the same mean and the same per-pixel
standard deviation as ``b`` and the autocorrelation of ``K``; sky gradients, stars and
neighbours (structures broader than ``K``) keep their flux, since ``K`` has unit sum. (Convolving
the noise alone with a unit-L2 kernel would keep sigma too, but would multiply the flux of every
extended structure in the cutout by ``sum(K) / ||K||_2``, up to ~5 for a 1.5-pixel Gaussian.)
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import convolve1d

from lumos_ops.exceptions import LumosValueError

__all__ = ["RESAMPLE_KERNELS", "MAD_TO_SIGMA", "texture_kernel_1d", "kernel_padding", "retexture"]

RESAMPLE_KERNELS: tuple[str, ...] = ("none", "bilinear", "lanczos3")
"""Resampling kernels a re-textured cutout may get: none (identity), bilinear (2 taps) and
Lanczos-3 (6 taps), each evaluated at a sub-pixel shift in [0, 1)."""

MAD_TO_SIGMA: float = 1.4826
"""Median absolute deviation -> standard deviation of a Gaussian."""


def _gaussian_1d(sigma: float) -> np.ndarray:
    if sigma <= 0.0:
        return np.ones(1)
    half = int(math.ceil(4.0 * sigma))
    x = np.arange(-half, half + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _resample_1d(kind: str, shift: float) -> np.ndarray:
    if kind == "none":
        return np.ones(1)
    if kind == "bilinear":
        return np.array([1.0 - shift, shift])
    if kind == "lanczos3":
        x = np.arange(-2, 4, dtype=np.float64) - shift
        kernel = np.sinc(x) * np.sinc(x / 3.0)
        return kernel / kernel.sum()
    raise LumosValueError(f"unknown resampling kernel {kind!r}; choose one of {RESAMPLE_KERNELS}")


def texture_kernel_1d(sigma: float, kind: str, shift: float) -> np.ndarray:
    """One axis of the texture kernel ``K``: unit sum, odd length, centred.

    Parameters
    ----------
    sigma : float
        Gaussian sigma (pixels); 0 = no Gaussian.
    kind : str
        One of :data:`RESAMPLE_KERNELS`.
    shift : float
        Sub-pixel shift of the resampling kernel (pixels, in [0, 1)).
    """
    if not (math.isfinite(sigma) and sigma >= 0.0):
        raise LumosValueError(f"kernel sigma must be >= 0 pixels, got {sigma!r}")
    if not 0.0 <= shift < 1.0:
        raise LumosValueError(f"resampling shift must be in [0, 1) pixels, got {shift!r}")
    kernel = np.convolve(_gaussian_1d(sigma), _resample_1d(kind, shift))
    if kernel.size % 2 == 0:
        kernel = np.append(kernel, 0.0)
    return kernel / kernel.sum()


def kernel_padding(max_sigma: float) -> int:
    """Pixels a cutout needs on each side so that the largest kernel sees real pixels (not an edge)."""
    return int(math.ceil(4.0 * max_sigma)) + 3


def retexture(background: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray, pad: int,
              rng: np.random.Generator) -> np.ndarray:
    """``K * (b + c sigma e)`` of one padded cutout, cropped by ``pad`` on every side.

    Parameters
    ----------
    background : ndarray, shape (S + 2 pad, S + 2 pad)
        Background cutout (e-/s per pixel); NaN = masked (kept NaN, filled with the median while
        convolving).
    kernel_x, kernel_y : ndarray
        The two axes of ``K`` (:func:`texture_kernel_1d`), each at most ``2 pad + 1`` long.
    pad : int
        Padding (pixels) on each side.
    rng : numpy.random.Generator
        Source of the fresh noise ``e``.

    Returns
    -------
    ndarray, shape (S, S)
    """
    if max(kernel_x.size, kernel_y.size) > 2 * pad + 1:
        raise LumosValueError(f"texture kernel of {max(kernel_x.size, kernel_y.size)} taps needs pad >= "
                              f"{(max(kernel_x.size, kernel_y.size) - 1) // 2}, got {pad}")
    masked = np.isnan(background)
    finite = background[~masked]
    if finite.size == 0:
        return background[pad:-pad or None, pad:-pad or None].copy()
    median = float(np.median(finite))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(finite - median)))
    filled = np.where(masked, median, background).astype(np.float64)
    l2_squared = float(np.sum(kernel_x**2) * np.sum(kernel_y**2))
    fresh = math.sqrt(max(1.0 / l2_squared - 1.0, 0.0)) * sigma
    noise = rng.standard_normal(filled.shape)
    if fresh > 0.0:
        filled = filled + fresh * noise
    out = convolve1d(convolve1d(filled, kernel_y, axis=0, mode="nearest"), kernel_x, axis=1, mode="nearest")
    crop = (slice(pad, out.shape[0] - pad), slice(pad, out.shape[1] - pad))
    return np.where(masked[crop], np.nan, out[crop])
