"""Binary dilation of a 2-D mask by a symmetric shape made of horizontal runs, 64 pixels to a word.

A disc or an octagon of integer offsets is, row offset by row offset, a run of columns
``-w(dy) .. +w(dy)``. The mask is dilated by each run width along its rows, then those rows are
shifted up and down by ``dy`` and OR-ed together. Every row is packed into 64-bit words (one bit
per pixel, :func:`pack_rows`), so a shift along the row moves 64 pixels per operation; a shift
across rows moves whole rows of words. Boolean logic only: the result is exactly that of the same
dilation on a ``bool`` array (``scipy.ndimage.binary_dilation`` with zeros beyond the edges).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pack_rows", "unpack_rows", "dilate_by_runs"]

_BITS = 64


def pack_rows(mask: np.ndarray) -> np.ndarray:
    """The rows of a 2-D ``mask`` packed into uint64 words, column ``c`` at bit ``63 - c % 64`` of
    word ``c // 64`` (the padding bits beyond the last column are 0); shape (ny, ceil(nx / 64))."""
    ny, nx = mask.shape
    n_words = -(-nx // _BITS)
    packed = np.zeros((ny, n_words * 8), dtype=np.uint8)
    packed[:, : -(-nx // 8)] = np.packbits(mask, axis=1)
    return packed.view(">u8").astype(np.uint64)


def unpack_rows(words: np.ndarray, nx: int) -> np.ndarray:
    """The ``bool`` mask (ny, nx) of :func:`pack_rows`'s ``words``."""
    return np.unpackbits(words.astype(">u8").view(np.uint8), axis=1, count=nx).view(bool)


def _shifted(words: np.ndarray, shift: int) -> np.ndarray:
    """Packed rows moved by ``shift`` columns (> 0 towards larger columns), zeros shifted in."""
    out = np.zeros_like(words)
    whole, bits = divmod(abs(shift), _BITS)
    n = words.shape[1]
    if whole >= n:
        return out
    if shift > 0:
        source = words[:, : n - whole]
        out[:, whole:] = source >> np.uint64(bits)
        if bits:
            out[:, whole + 1 :] |= source[:, :-1] << np.uint64(_BITS - bits)
    else:
        source = words[:, whole:]
        out[:, : n - whole] = source << np.uint64(bits)
        if bits:
            out[:, : n - whole - 1] |= source[:, 1:] >> np.uint64(_BITS - bits)
    return out


def dilate_by_runs(mask: np.ndarray, half_widths: Sequence[int]) -> np.ndarray:
    """``mask`` (ny, nx) dilated by the shape holding, at row offsets ``+-dy``, the columns
    ``-half_widths[dy] .. +half_widths[dy]`` (a negative width: no pixel at that offset).

    Parameters
    ----------
    mask : ndarray of bool, shape (ny, nx)
    half_widths : sequence of int
        Half-width (pixels) of the run at each row offset ``dy = 0, 1, ...``.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
        Pixels whose shape, centred on them, holds a True pixel of ``mask``; nothing beyond the image.
    """
    mask = np.asarray(mask, dtype=bool)
    ny, nx = mask.shape
    widths = [int(w) for w in half_widths]
    if not widths or max(widths) < 0:
        return np.zeros((ny, nx), dtype=bool)
    words = pack_rows(mask)
    runs: dict[int, np.ndarray] = {}
    run = words.copy()
    top = max(widths)
    for w in range(top + 1):  # run: the rows dilated by +-w columns
        if w:
            run |= _shifted(words, w)
            run |= _shifted(words, -w)
        if w in widths:
            runs[w] = run.copy() if w < top else run
    out = runs[widths[0]].copy() if widths[0] >= 0 else np.zeros_like(words)
    for dy in range(1, min(len(widths), ny)):
        w = widths[dy]
        if w < 0:
            continue
        out[dy:] |= runs[w][:-dy]
        out[:-dy] |= runs[w][dy:]
    return unpack_rows(out, nx)
