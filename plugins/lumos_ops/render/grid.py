"""Choice of the periodic Fourier grid (side ``G`` pixels) on which each profile is rendered.

An inverse FFT renders the profile periodically with period ``G``: copies centred ``G`` pixels
away leak their wings into the stamp. For each profile we take the smallest ``G`` from
:data:`GRID_SIZES` (at least ``size + 8``) for which a rigorous upper bound on that leak is below
``tolerance`` (relative to the total flux). The bound uses

* ``Sigma_conv(d) <= Sigma_gal((1 - alpha) d) + Sigma_psf(alpha d)`` for monotone radial profiles
  (minimised over ``alpha``), ``Sigma_gal`` taken along the major axis;
* the 4 side copies are at least ``d1 = G - size/2 - |offset| - 1`` pixels from the stamp, the 4
  diagonal ones at least ``d2 = sqrt(2) (G - size/2 - |offset|) - 1`` and the 16 of the next ring
  at least ``d3 = 2 G - size/2 - |offset| - 1``; each contributes at most ``size**2 * Sigma_conv(d)``
  (farther copies are neglected).
"""

from __future__ import annotations

import numpy as np

from lumos_ops.render.psf import PsfKind, psf_log_surface_brightness
from lumos_ops.render.sersic import sersic_log_surface_brightness

__all__ = ["GRID_SIZES", "DEFAULT_WRAP_TOLERANCE", "choose_grid_sizes"]

GRID_SIZES: tuple[int, ...] = tuple(
    sorted({g for g in (2**a * 3**b * 5**c for a in range(1, 12) for b in range(3) for c in range(2)) if 16 <= g <= 2048})
)
"""FFT-friendly even grid sides (pixels) the renderer may use."""

DEFAULT_WRAP_TOLERANCE: float = 1e-3
"""Default bound on the wrapped-around flux inside the stamp, as a fraction of the total flux."""

_ALPHAS = np.linspace(0.05, 1.0, 20)


def _log_sigma_bound(
    distance: np.ndarray,
    r50_px: np.ndarray | None,
    sersic_n: np.ndarray | None,
    q: np.ndarray | None,
    psf_kind: PsfKind,
    psf_scale_px: np.ndarray,
    psf_beta: np.ndarray,
) -> np.ndarray:
    """ln of an upper bound of the convolved surface brightness at ``distance`` (B, nG) pixels."""
    d = distance[..., None]
    psf_part = psf_log_surface_brightness(
        psf_kind, _ALPHAS * d, np.asarray(psf_scale_px)[:, None, None], np.asarray(psf_beta)[:, None, None]
    )
    if r50_px is None:
        return psf_part[..., -1]
    r50 = np.asarray(r50_px)[:, None, None]
    major_radius = (1.0 - _ALPHAS) * d * np.sqrt(np.asarray(q))[:, None, None] / r50
    gal_part = sersic_log_surface_brightness(major_radius, np.asarray(sersic_n)[:, None, None]) - 2.0 * np.log(r50)
    return np.min(np.logaddexp(gal_part, psf_part), axis=-1)


def choose_grid_sizes(
    *,
    size: int,
    r50_px: np.ndarray | None,
    sersic_n: np.ndarray | None,
    q: np.ndarray | None,
    psf_kind: PsfKind,
    psf_scale_px: np.ndarray,
    psf_beta: np.ndarray,
    max_offset: np.ndarray,
    tolerance: float = DEFAULT_WRAP_TOLERANCE,
) -> np.ndarray:
    """Smallest adequate grid side for each profile.

    Parameters
    ----------
    size : int
        Stamp side (pixels).
    r50_px, sersic_n, q : ndarray, shape (B,), or None
        Galaxy half-light radius (pixels), index and axis ratio; None for point sources.
    psf_kind : PsfKind
    psf_scale_px : ndarray, shape (B,)
        PSF scale radius (pixels): Moffat ``a`` or Gaussian ``sigma``.
    psf_beta : ndarray, shape (B,)
        Moffat ``beta`` (ignored for the Gaussian).
    max_offset : ndarray, shape (B,)
        ``max(|dx|, |dy|)`` (pixels).
    tolerance : float
        Bound on the leaked flux fraction.

    Returns
    -------
    ndarray of int64, shape (B,)
        Grid side per profile; the largest of :data:`GRID_SIZES` where none meets the tolerance.
    """
    candidates = np.array([g for g in GRID_SIZES if g >= size + 8], dtype=np.float64)
    if candidates.size == 0:
        raise ValueError(f"stamp size {size} exceeds the largest Fourier grid {GRID_SIZES[-1]}")
    profile = (r50_px, sersic_n, q, psf_scale_px, psf_beta, max_offset)
    # The leak decreases with G: most profiles are settled by the few smallest grids, and only
    # the rest are tested against the larger ones.
    small = candidates[candidates <= 3 * candidates[0]]
    ok = _leak(small, size, *profile, psf_kind) <= tolerance
    grids = np.where(ok.any(axis=1), small[np.argmax(ok, axis=1)], 0.0)
    rest = np.flatnonzero(grids == 0.0)
    if rest.size and small.size < candidates.size:
        large = candidates[small.size :]
        sub = tuple(None if v is None else np.asarray(v)[rest] for v in profile)
        ok = _leak(large, size, *sub, psf_kind) <= tolerance
        grids[rest] = np.where(ok.any(axis=1), large[np.argmax(ok, axis=1)], large[-1])
    grids[grids == 0.0] = candidates[-1]
    return grids.astype(np.int64)


_LEAK_BLOCK = 256
"""Profiles whose leak bounds are worked out together (their (B, G, 20) temporaries stay in cache)."""


def _leak(candidates, size, r50_px, sersic_n, q, psf_scale_px, psf_beta, max_offset, psf_kind) -> np.ndarray:
    """Bound on the wrapped-around flux fraction, shape (B, len(candidates)); each profile's own numbers."""
    max_offset = np.asarray(max_offset, dtype=np.float64)
    out = np.empty((max_offset.size, candidates.size))
    for lo in range(0, max_offset.size, _LEAK_BLOCK):
        block = slice(lo, lo + _LEAK_BLOCK)
        part = [None if v is None else np.asarray(v)[block] for v in (r50_px, sersic_n, q, psf_scale_px, psf_beta)]
        out[block] = _leak_block(candidates, size, *part, max_offset[block], psf_kind)
    return out


def _leak_block(candidates, size, r50_px, sersic_n, q, psf_scale_px, psf_beta, max_offset, psf_kind) -> np.ndarray:
    """:func:`_leak` of one block of profiles."""
    clear = candidates[None, :] - size / 2.0 - np.asarray(max_offset, dtype=np.float64)[:, None]
    rings = ((4.0, clear - 1.0), (4.0, np.sqrt(2.0) * clear - 1.0), (16.0, clear + candidates[None, :] - 1.0))
    leak = np.zeros(clear.shape)
    for copies, distance in rings:
        leak += copies * size**2 * np.exp(_log_sigma_bound(np.maximum(distance, 1e-3), r50_px, sersic_n, q, psf_kind,
                                                           np.asarray(psf_scale_px), np.asarray(psf_beta)))
    return leak
