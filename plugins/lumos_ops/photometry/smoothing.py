"""Gaussian smoothing of a whole frame, bit for bit ``scipy.ndimage.gaussian_filter``'s, faster.

``scipy.ndimage.gaussian_filter(image, sigma, mode="constant", truncate=t)`` filters a 2-D image
along the columns (axis 0), then along the rows (axis 1), each pass accumulating in float64 and
rounding to the image's dtype. Along the rows scipy reads contiguous lines; along the columns it
gathers strided lines, which costs four times the row pass on a 4096 x 2048 float32 frame (0.18
against 0.05 CPU s). :func:`gaussian_smooth` does the column pass with numpy on blocks of
:data:`_BLOCK_ROWS` rows (shifted row slices of a float64 copy of the block and the rows around
it, zeros beyond the image, kept in cache) in
scipy's own order of operations for a symmetric kernel,

    out[i] = x[i] w[0] + sum_{j = r .. 1} (x[i - j] + x[i + j]) w[j],

and leaves the row pass to scipy, so the result is the same array bit for bit
(``tests/photometry/test_smoothing.py`` compares them).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["gaussian_smooth", "gaussian_weights"]

_BLOCK_ROWS = 32
"""Output rows of the column pass computed at once (32 x 4096 float64 = 1 MiB per buffer)."""


def gaussian_weights(sigma: float, truncate: float) -> np.ndarray:
    """The float64 kernel ``scipy.ndimage.gaussian_filter1d`` correlates with: length ``2 r + 1``,
    ``r = int(truncate * sigma + 0.5)`` pixels (its response to a unit impulse, which is exact)."""
    radius = int(truncate * float(sigma) + 0.5)
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    return ndimage.gaussian_filter1d(impulse, sigma, mode="constant", truncate=truncate)


def gaussian_smooth(image: np.ndarray, sigma: float, *, truncate: float = 3.0) -> np.ndarray:
    """``ndimage.gaussian_filter(image, sigma, mode="constant", truncate=truncate)`` of a 2-D float32 image.

    Parameters
    ----------
    image : ndarray, shape (ny, nx), float32
        Finite pixel values (the caller zeroes NaN pixels, as for scipy).
    sigma : float
        Standard deviation of the Gaussian (pixels), the same along both axes.
    truncate : float, keyword-only
        Kernel half-width in units of ``sigma``.

    Returns
    -------
    ndarray, shape (ny, nx), float32
        The smoothed image (zeros beyond the edges), identical to scipy's.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.float32:
        raise ValueError(f"image must be a 2-D float32 array, got {image.dtype} {image.shape}")
    weights = gaussian_weights(sigma, truncate)
    r = weights.size // 2
    ny, nx = image.shape
    out = np.empty((ny, nx), dtype=np.float32)
    if r == 0 or ny == 0 or nx == 0:
        np.multiply(image, weights[0], out=out, casting="unsafe")
    else:
        rows = min(_BLOCK_ROWS, ny)
        lines = np.empty((rows + 2 * r, nx))
        total, pair = np.empty((rows, nx)), np.empty((rows, nx))
        for lo in range(0, ny, rows):
            m = min(rows, ny - lo)
            block = lines[: m + 2 * r]
            # image rows lo - r .. lo + m + r, zeros beyond the image
            first, stop = max(lo - r, 0), min(lo + m + r, ny)
            block[: first - (lo - r)] = 0.0
            block[first - (lo - r) : stop - (lo - r)] = image[first:stop]
            block[stop - (lo - r) :] = 0.0
            acc, tmp = total[:m], pair[:m]
            np.multiply(block[r : r + m], weights[r], out=acc)
            for j in range(r, 0, -1):
                np.add(block[r - j : r - j + m], block[r + j : r + j + m], out=tmp)
                tmp *= weights[r - j]
                acc += tmp
            out[lo : lo + m] = acc
    return ndimage.gaussian_filter1d(out, sigma, axis=1, mode="constant", truncate=truncate, output=out)
