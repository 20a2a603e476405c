"""Cut fixed-size stamps around targets, padding (never dropping) targets near CCD edges."""

from __future__ import annotations

import dataclasses

import numpy as np

from lumos_ops.constants import STAMP_SIZE

__all__ = ["Stamps", "cut_mask", "cut_stamps"]


@dataclasses.dataclass(frozen=True)
class Stamps:
    """A batch of square cutouts.

    Attributes
    ----------
    data : ndarray, shape (n, size, size), float32
        Pixel values (same unit as the image); pixels outside the image are NaN.
    x0, y0 : ndarray of int64, shape (n,)
        Image pixel (column, row) of stamp pixel [0, 0].
    dx, dy : ndarray of float64, shape (n,)
        Sub-pixel offset of the target from the stamp centre pixel ``(size // 2, size // 2)``,
        in [-0.5, 0.5) pixels: the target sits at stamp coordinates ``(size//2 + dx, size//2 + dy)``.
    off_chip_fraction : ndarray of float64, shape (n,)
        Fraction of stamp pixels outside the image (0 for interior targets).
    on_image : ndarray of bool, shape (n,)
        Whether the target centre itself is on the image.
    """

    data: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    off_chip_fraction: np.ndarray
    on_image: np.ndarray

    @property
    def size(self) -> int:
        """Stamp side (pixels)."""
        return int(self.data.shape[-1])


def cut_stamps(image: np.ndarray, x: np.ndarray, y: np.ndarray, *, size: int = STAMP_SIZE) -> Stamps:
    """Cut ``size x size`` stamps centred on the pixels nearest to (x, y).

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        The CCD image (any unit); NaN marks masked pixels.
    x, y : array_like, shape (n,)
        0-based target positions (pixels; x = column).
    size : int, keyword-only
        Stamp side in pixels (even or odd).

    Returns
    -------
    Stamps
        Off-image pixels are NaN and reported in ``off_chip_fraction``.
    """
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of the same length, got {x.shape} and {y.shape}")
    ny, nx = image.shape
    finite = np.isfinite(x) & np.isfinite(y)
    ix = np.floor(np.where(finite, x, 0.0) + 0.5).astype(np.int64)
    iy = np.floor(np.where(finite, y, 0.0) + 0.5).astype(np.int64)
    half = size // 2
    x0 = ix - half
    y0 = iy - half
    offsets = np.arange(size)
    rows = y0[:, None] + offsets[None, :]
    cols = x0[:, None] + offsets[None, :]
    row_ok = (rows >= 0) & (rows < ny)
    col_ok = (cols >= 0) & (cols < nx)
    data = np.empty((x.size, size, size), dtype=np.float32)
    interior = finite & (x0 >= 0) & (y0 >= 0) & (x0 + size <= nx) & (y0 + size <= ny)
    whole = np.flatnonzero(interior)
    if whole.size:
        # stamps inside the image: one gather of (size x size) windows, no per-pixel indices
        windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))
        data[whole] = windows[y0[whole], x0[whole]]
    cut = np.flatnonzero(~interior)
    if cut.size:
        r, c = rows[cut], cols[cut]
        part = image[np.clip(r, 0, ny - 1)[:, :, None], np.clip(c, 0, nx - 1)[:, None, :]].astype(np.float32)
        inside = row_ok[cut, :, None] & col_ok[cut, None, :] & finite[cut, None, None]
        part[~inside] = np.nan
        data[cut] = part
    on_chip = np.where(finite, row_ok.sum(axis=1) * col_ok.sum(axis=1), 0)
    on_image = finite & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    return Stamps(
        data=data,
        x0=x0,
        y0=y0,
        dx=np.where(finite, x - ix, 0.0),
        dy=np.where(finite, y - iy, 0.0),
        off_chip_fraction=1.0 - on_chip / float(size * size),
        on_image=on_image,
    )


def cut_mask(mask: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` windows of a boolean image whose pixel [0, 0] is at (``x0``, ``y0``).

    Parameters
    ----------
    mask : ndarray of bool, shape (ny, nx)
        The image (e.g. a frame's source pixels).
    x0, y0 : ndarray of int, shape (n,)
        Image column and row of each window's pixel [0, 0] (``Stamps.x0``, ``Stamps.y0``).
    size : int
        Window side (pixels).

    Returns
    -------
    ndarray of bool, shape (n, size, size)
        False beyond the image.
    """
    ny, nx = mask.shape
    padded = np.zeros((ny + 2 * size, nx + 2 * size), dtype=bool)
    padded[size : size + ny, size : size + nx] = mask
    x0 = np.clip(np.asarray(x0, dtype=np.int64), -size, nx) + size
    y0 = np.clip(np.asarray(y0, dtype=np.int64), -size, ny) + size
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    return windows[y0, x0]
