"""Forced elliptical aperture photometry as in PAUS (paper §3.2, eq. 4).

The aperture has the catalogue shape (axis ratio ``q``, position angle ``pa``): semi-axes
``R / sqrt(q)`` and ``R * sqrt(q)``, with the circularised radius ``R`` chosen so that the aperture
holds ``light_fraction`` (62.5 %) of the target's PSF-convolved model light. The model is the same
pixel-integrated image the pixels are compared with, so the fraction is exact for the pixelised
light (no sub-pixel approximation). Pixel/ellipse overlaps are exact areas
(:func:`lumos_ops.photometry.overlap.ellipse_pixel_overlap`).

Flux: ``f = sum_i w_i (d_i - b) / sum_i w_i m_i`` over the usable (finite) pixels, with ``w_i`` the
covered fraction of pixel ``i``, ``b`` the sigma-clipped annulus mean and ``m`` the unit-flux model.
With every pixel usable ``sum w m = light_fraction``, i.e. the PAUS scaling by 1/0.625; a target cut
by the CCD edge or by masks is corrected by the model light that remains (and flagged).

Error (documented choice): the pixel noise ``s^2`` is the clipped annulus variance, so
``var = s^2 A + A^2 s^2 / N_b + max(sum w (d - b), 0) / t``, i.e. background noise over the aperture
area ``A = sum w``, plus the uncertainty of the background mean from ``N_b`` annulus pixels, plus the
source shot noise (``t`` the exposure time; omitted when unknown); ``flux_err = sqrt(var) / sum w m``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from lumos_ops.constants import APERTURE_LIGHT_FRACTION
from lumos_ops.cutouts import cut_stamps
from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.photometry.inputs import PhotometryInputs
from lumos_ops.photometry.overlap import _CORNERS, _segment_circle_area, ellipse_pixel_overlap
from lumos_ops.photometry.quality import footprint_flags

if TYPE_CHECKING:
    from lumos_ops.target_context import TargetContext

__all__ = ["aperture_radius", "enclosed_light", "elliptical_aperture_photometry", "ellipse_sums", "AperturePhotometry"]

_MIN_RADIUS = 0.02
"""Smallest circularised aperture radius searched (pixels)."""

_GROUP = 128
"""Models solved together (grouped by extent so that each group works on a small central box)."""

_FIRST_STEP = 0.25
"""Width (pixels) of the first bracket of the radius solve, from the pixel-centre guess."""

_BIN = 0.25
"""Width (pixels of circularised radius) of the bins of the pixel-centre guess."""

_SUB_RADIUS = 6.0
"""Guess (pixels) that the first, smaller sub-box of each model is sized for (:func:`_ring_setup`);
a target whose guess or ring turns out not to fit is worked out on its whole box."""

_SUB_HALF = (8, 10, 12, 14, 16, 19, 22, 26)
"""Half-sides (pixels) of the sub-boxes :func:`_ring_setup` chooses from."""


def _axes(radius: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    root = np.sqrt(q)
    return radius / root, radius * root


def enclosed_light(
    model: np.ndarray, dx: np.ndarray, dy: np.ndarray, q: np.ndarray, pa: np.ndarray, radius: np.ndarray
) -> np.ndarray:
    """Model light inside the catalogue-shaped ellipse of circularised radius ``radius``.

    Parameters
    ----------
    model : ndarray, shape (n, S, S)
        Unit-flux model images centred at ``(S//2 + dx, S//2 + dy)``.
    dx, dy, q, pa, radius : ndarray, shape (n,)
        Offsets (pixels), axis ratio, position angle (degrees) and circularised radius (pixels).

    Returns
    -------
    ndarray, shape (n,)
        Enclosed fraction of the unit total flux.
    """
    return _enclosed(np.nan_to_num(model, nan=0.0), dx, dy, q, pa, radius)


def _enclosed(model: np.ndarray, dx: np.ndarray, dy: np.ndarray, q: np.ndarray, pa: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """:func:`enclosed_light` for finite models."""
    centre = model.shape[-1] // 2
    a, b = _axes(radius, q)
    weights = ellipse_pixel_overlap(model.shape[1:], centre + dx, centre + dy, a, b, pa)
    return np.einsum("nij,nij->n", weights, model)


def _corner_reach(q: np.ndarray, pa: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel corner offsets in the area-preserving frame of each target (``U``, ``V``; (n, 4) each) and
    the farthest corner's distance (n,) (:class:`_RingLight`)."""
    theta = np.deg2rad(pa)
    cos_t, sin_t, root = np.cos(theta), np.sin(theta), np.sqrt(q)
    corner_u = (cos_t[:, None] * _CORNERS[None, :, 0] + sin_t[:, None] * _CORNERS[None, :, 1]) * root[:, None]
    corner_v = (-sin_t[:, None] * _CORNERS[None, :, 0] + cos_t[:, None] * _CORNERS[None, :, 1]) / root[:, None]
    return corner_u, corner_v, np.sqrt(corner_u**2 + corner_v**2).max(axis=1)


def _ring_pixels(m: np.ndarray, rotated: tuple[np.ndarray, np.ndarray], rho: np.ndarray, q: np.ndarray, reach: np.ndarray,
                 r_lo: np.ndarray, r_hi: np.ndarray, size: int, first: int = 0) -> tuple[np.ndarray, ...]:
    """The ring of :class:`_RingLight` on boxes ``m`` (k, s, s) cut from the models' ``size`` px boxes
    from row and column ``first`` on.

    Returns the light of the pixels covered for every radius of ``[r_lo, r_hi]`` (summed over the
    whole ``size`` px box, zeros beyond ``m``, as on the whole box) and, for the other pixels whose
    ring may reach them, their target (k,), ``rho``, ``U``, ``V`` and light, in the boxes' pixel order.
    """
    k, s = m.shape[0], m.shape[-1]
    root = np.sqrt(q)
    inner = rho + reach[:, None, None] <= r_lo[:, None, None]
    covered = np.where(inner, m, 0.0)
    if s < size:
        whole = np.zeros((k, size, size))
        whole[:, first : first + s, first : first + s] = covered
        covered = whole
    inner_light = covered.sum(axis=(1, 2))
    keep = ~inner & (rho - reach[:, None, None] < r_hi[:, None, None])
    target, pixel = np.nonzero(keep.reshape(k, -1))
    return (inner_light, target, rho.reshape(k, -1)[target, pixel], rotated[0].reshape(k, -1)[target, pixel] * root[target],
            rotated[1].reshape(k, -1)[target, pixel] / root[target], m.reshape(k, -1)[target, pixel])


class _RingLight:
    """Enclosed model light of catalogue-shaped ellipses of any radius in ``[r_lo, r_hi]``, per target.

    In the frame ``U = sqrt(q) (x cos pa + y sin pa)``, ``V = (-x sin pa + y cos pa) / sqrt(q)``
    (area-preserving) the ellipse of circularised radius ``R`` is the disc of radius ``R`` and every
    pixel a parallelogram. A pixel whose centre lies within ``R - reach`` (``reach`` its farthest
    corner) is covered, one beyond ``R + reach`` is not, the others get the exact overlap area
    (as :func:`lumos_ops.photometry.overlap.ellipse_pixel_overlap`). Pixels covered for every ``R``
    of the range are summed once (``inner_light``); only the ring of the others is kept (the
    per-pixel arrays of :func:`_ring_pixels`, ``target`` ascending), so each evaluation works on a
    few hundred pixels per target instead of the whole box. Radii outside the range fall back to
    the whole box ``m``.
    """

    def __init__(self, m: np.ndarray, dx: np.ndarray, dy: np.ndarray, q: np.ndarray, pa: np.ndarray,
                 r_lo: np.ndarray, r_hi: np.ndarray, inner_light: np.ndarray,
                 ring: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        """``ring``: target, rho, U, V and light of the ring pixels (:func:`_ring_pixels`), by target."""
        self.m, self.dx, self.dy, self.q, self.pa = m, dx, dy, q, pa
        self.r_lo, self.r_hi = r_lo.copy(), r_hi.copy()
        self.corner_u, self.corner_v, self.reach = _corner_reach(q, pa)
        self.inner_light = inner_light
        n = m.shape[0]
        target = ring[0]
        counts = np.bincount(target, minlength=n)
        k = max(int(counts.max(initial=0)), 1)
        column = np.arange(target.size) - np.repeat(np.cumsum(counts) - counts, counts)
        self.rho = np.full((n, k), np.inf)
        self.light = np.zeros((n, k))
        self.rho[target, column] = ring[1]
        self.light[target, column] = ring[4]
        # the ring pixels' corners (U, V) in ring order (pixel c of target t at first[t] + c), the last
        # corner also first, so that corners j and j + 1 of the five are an edge
        wrap = [3, 0, 1, 2, 3]
        self.first = np.cumsum(counts) - counts
        self.corners = np.stack([ring[2] + np.take(self.corner_u.T[wrap], target, axis=1),
                                 ring[3] + np.take(self.corner_v.T[wrap], target, axis=1)])

    @classmethod
    def whole_box(cls, m: np.ndarray, dx: np.ndarray, dy: np.ndarray, q: np.ndarray, pa: np.ndarray, r_lo: np.ndarray,
                  r_hi: np.ndarray, rotated: tuple[np.ndarray, np.ndarray], rho: np.ndarray) -> _RingLight:
        """The ring found on the whole boxes ``m`` (``rotated``: :func:`_rotated_grid`; ``rho``: its radius)."""
        reach = _corner_reach(q, pa)[2]
        inner_light, *ring = _ring_pixels(m, rotated, rho, q, reach, r_lo, r_hi, m.shape[-1])
        return cls(m, dx, dy, q, pa, r_lo, r_hi, inner_light, tuple(ring))

    def enclosed(self, idx: np.ndarray, radius: np.ndarray) -> np.ndarray:
        """Model light inside radius ``radius`` (n_idx,) for targets ``idx``."""
        out = np.empty(idx.size)
        inside = (radius >= self.r_lo[idx]) & (radius <= self.r_hi[idx])
        far = np.flatnonzero(~inside)
        if far.size:
            t = idx[far]
            out[far] = _enclosed(self.m[t], self.dx[t], self.dy[t], self.q[t], self.pa[t], radius[far])
        near = np.flatnonzero(inside)
        if near.size == 0:
            return out
        t, r = idx[near], radius[near]
        rho, reach, light = self.rho[t], self.reach[t][:, None], self.light[t]
        full = rho + reach <= r[:, None]
        total = self.inner_light[t] + np.where(full, light, 0.0).sum(axis=1)
        row, col = np.nonzero(~full & (rho - reach < r[:, None]))
        if row.size:
            scale = 1.0 / r[row]
            k = self.rho.shape[1]
            corners = np.take(self.corners, self.first[t[row]] + col, axis=2)
            corners *= scale
            pu, pv = corners
            # the four edges 3 -> 0, 0 -> 1, 1 -> 2, 2 -> 3, summed in that order
            edges = _segment_circle_area(pu[:4], pv[:4], pu[1:], pv[1:])
            area = edges[0] + edges[1]
            area += edges[2]
            area += edges[3]
            weight = np.clip(np.abs(area) * r[row] * r[row], 0.0, 1.0)
            total += np.bincount(row, weights=weight * np.take(light.ravel(), row * k + col), minlength=near.size)
        out[near] = total
        return out


def _rotated_grid(size: int, dx: np.ndarray, dy: np.ndarray, pa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres relative to each target along its major (``u``) and minor (``v``) axes, (n, S, S)."""
    centre = size // 2
    grid = np.arange(size, dtype=np.float64) - centre
    gx = grid[None, None, :] - dx[:, None, None]
    gy = grid[None, :, None] - dy[:, None, None]
    theta = np.deg2rad(pa)[:, None, None]
    u = np.cos(theta) * gx + np.sin(theta) * gy
    v = -np.sin(theta) * gx + np.cos(theta) * gy
    return u, v


def _n_bins(size: int, q: np.ndarray) -> int:
    """Bins of :data:`_BIN` px of circularised radius that reach every pixel of a ``size`` px box."""
    return int(np.ceil(size / _BIN / np.sqrt(q.min()))) + 2


def _centre_cumulative(model: np.ndarray, rotated: tuple[np.ndarray, np.ndarray], q: np.ndarray,
                       n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative model light (n, n_bins) of the pixel centres in bins of circularised radius, and that
    radius of every pixel centre (n, s, s); the last bin takes every pixel beyond it."""
    n = model.shape[0]
    u, v = rotated
    qq = q[:, None, None]
    radius = np.multiply(qq, u)
    radius *= u
    scratch = np.multiply(v, v)
    scratch /= qq
    radius += scratch
    np.sqrt(radius, out=radius)
    np.divide(radius, _BIN, out=scratch)
    bins = scratch.astype(np.int64)
    np.minimum(bins, n_bins - 1, out=bins)
    bins += (np.arange(n) * n_bins)[:, None, None]
    light = np.bincount(bins.ravel(), weights=model.ravel(), minlength=n * n_bins).reshape(n, n_bins)
    return np.cumsum(light, axis=1), radius


def _pixel_centre_radius(model: np.ndarray, dx: np.ndarray, dy: np.ndarray, q: np.ndarray, pa: np.ndarray, fraction: float,
                         rotated: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First guess: accumulate the model light of pixel centres in bins of elliptical radius.

    Returns the guess (n,) and the circularised elliptical radius of every pixel centre (n, S, S).
    """
    size = model.shape[-1]
    rotated = _rotated_grid(size, dx, dy, pa) if rotated is None else rotated
    cum, radius = _centre_cumulative(model, rotated, q, _n_bins(size, q))
    return ((cum < fraction).sum(axis=1) + 1) * _BIN, radius


def _ring_setup(m: np.ndarray, dx: np.ndarray, dy: np.ndarray, q: np.ndarray, pa: np.ndarray,
                fraction: float) -> tuple[np.ndarray, _RingLight]:
    """The pixel-centre guess (:func:`_pixel_centre_radius`) and the :class:`_RingLight` of ``guess +- 1`` px
    of boxes ``m`` (n, S, S), each worked out on the smallest central sub-box that gives the same numbers.

    A target first takes the smallest half-side of :data:`_SUB_HALF` whose outside pixels lie beyond
    the ring of a guess up to :data:`_SUB_RADIUS` px (every pixel beyond half-side ``h`` lies at
    least ``sqrt(q) (h + 1 - max(|dx|, |dy|))`` px of circularised radius from the target). The
    sub-box is kept where it provably gives the whole box's guess and ring: the ring's outer edge
    (``guess + 1`` plus the pixel reach) lies within that distance, and so do the radius bins up to
    one where the cumulative light exceeds ``fraction`` by more than all the negative light the
    target's box could hold (its most negative pixel times the pixel count: only negative light
    could bring a later bin back below ``fraction``). The bins and ring pixels
    are then those of the whole box in the same order and the covered light is summed over the
    whole box's layout (zeros outside), so every number is the whole box's, bit for bit. Other
    targets are worked out on the whole box.
    """
    n, size = m.shape[0], m.shape[-1]
    centre = size // 2
    n_bins = _n_bins(size, q)
    r_max = 0.5 * size * np.sqrt(2.0) / np.sqrt(q)
    reach = _corner_reach(q, pa)[2]
    root = np.sqrt(q)
    edge = 1.0 - np.maximum(np.abs(dx), np.abs(dy))
    need = (_SUB_RADIUS + 1.0 + reach) / root - edge
    half = np.full(n, centre)
    for h in _SUB_HALF[::-1]:
        half[(need <= h) & (h < centre)] = h
    negative = np.minimum(m.min(axis=(1, 2)), 0.0) * (size * size) if (half < centre).any() else None
    guess, inner_light = np.empty(n), np.empty(n)
    pieces: list[tuple[np.ndarray, ...]] = []
    boxes = [(h, np.flatnonzero(half == h)) for h in np.unique(half)]
    while boxes:
        retry = []
        for h, t in boxes:
            sub = m[t] if h == centre else m[t, centre - h : centre + h + 1, centre - h : centre + h + 1]
            rotated = _rotated_grid(sub.shape[-1], dx[t], dy[t], pa[t])
            cum, rho = _centre_cumulative(sub, rotated, q[t], n_bins)
            g = ((cum < fraction).sum(axis=1) + 1) * _BIN
            r_hi = np.minimum(g + 1.0, r_max[t])
            if h < centre:
                outside = root[t] * (h + edge[t]) * (1.0 - 1e-9)
                complete = np.floor(outside / _BIN).astype(np.int64) - 1
                last = cum[np.arange(t.size), np.clip(complete, 0, n_bins - 1)]
                ok = (edge[t] > 0) & (complete >= 0) & (complete < n_bins - 1) & (r_hi + reach[t] + 1e-9 <= outside)
                ok &= last - fraction >= 1.01 * np.abs(negative[t]) + 1e-12
                if not ok.all():
                    retry.append(t[~ok])
                    t, sub, cum, rho, g, r_hi = t[ok], sub[ok], cum[ok], rho[ok], g[ok], r_hi[ok]
                    rotated = (rotated[0][ok], rotated[1][ok])
                    if t.size == 0:
                        continue
            guess[t] = g
            r_lo = np.maximum(g - 1.0, _MIN_RADIUS)
            inner_light[t], target, *ring = _ring_pixels(sub, rotated, rho, q[t], reach[t], r_lo, r_hi, size,
                                                         0 if h == centre else centre - h)
            pieces.append((t[target], *ring))
        boxes = [(centre, np.concatenate(retry))] if retry else []
    joined = [np.concatenate(column) for column in zip(*pieces)]
    order = np.argsort(joined[0], kind="stable")
    lo = np.maximum(guess - 1.0, _MIN_RADIUS)
    hi = np.minimum(guess + 1.0, r_max)
    return guess, _RingLight(m, dx, dy, q, pa, lo, hi, inner_light, tuple(column[order] for column in joined))


def _light_half_size(model: np.ndarray, *, tail: float = 1e-7) -> np.ndarray:
    """Per model, the smallest half-side ``h`` of the central box outside which less than ``tail`` light lies."""
    size = model.shape[-1]
    centre = size // 2
    rows, cols = model.sum(axis=2), model.sum(axis=1)
    half = np.full(model.shape[0], centre, dtype=np.int64)
    pending = np.ones(model.shape[0], dtype=bool)
    for h in range(1, centre):
        lo, hi = centre - h, centre + h + 1
        outside = rows[:, :lo].sum(axis=1) + rows[:, hi:].sum(axis=1) + cols[:, :lo].sum(axis=1) + cols[:, hi:].sum(axis=1)
        now = pending & (outside < tail)
        half[now] = h
        pending &= ~now
        if not pending.any():
            break
    return half


def aperture_radius(
    model: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    q: np.ndarray,
    pa: np.ndarray,
    *,
    light_fraction: float = APERTURE_LIGHT_FRACTION,
    tol: float = 1e-5,
    max_iter: int = 60,
) -> np.ndarray:
    """Circularised radius (pixels) of the catalogue-shaped ellipse holding ``light_fraction``.

    Parameters
    ----------
    model : ndarray, shape (n, S, S)
        Unit-flux PSF-convolved model images centred at ``(S//2 + dx, S//2 + dy)``.
    dx, dy, q, pa : ndarray, shape (n,)
        Offsets (pixels), axis ratio b/a and position angle (degrees).
    light_fraction : float, keyword-only
        Target enclosed fraction of the total (unit) flux, 0.625 in PAUS.
    tol : float, keyword-only
        Tolerance on the enclosed fraction.
    max_iter : int, keyword-only
        Bracketing and root-finding (Illinois) iterations.

    Returns
    -------
    ndarray, shape (n,)
        Radius ``R`` (semi-axes ``R/sqrt(q)``, ``R*sqrt(q)``); NaN where the model holds less than
        ``light_fraction`` inside the grid.
    """
    if not 0 < light_fraction < 1:
        raise LumosValueError(f"light_fraction must be in (0, 1), got {light_fraction}")
    n = model.shape[0]
    dx, dy, q, pa = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for v in (dx, dy, q, pa))
    out = np.full(n, np.nan)
    # Every non-zero pixel lies in the central box of half-side ``reach``: the zero padding around
    # rendered models is never converted (the light half-sizes are at most ``reach``).
    centre = model.shape[-1] // 2
    occupied = np.argwhere((model != 0).any(axis=0))
    reach = int(np.abs(occupied - centre).max(initial=0))
    clean = np.asarray(model[:, centre - reach : centre + reach + 1, centre - reach : centre + reach + 1], dtype=np.float64)
    if not np.isfinite(clean).all():  # finite (rendered) models are used as they are
        clean = np.nan_to_num(clean, nan=0.0)
    centre = reach
    total = clean.sum(axis=(1, 2))
    ok = np.flatnonzero(total > light_fraction)
    if ok.size == 0:
        return out
    half = np.zeros(n, dtype=np.int64)
    half[ok] = _light_half_size(clean[ok])
    order = ok[np.argsort(half[ok], kind="stable")]
    # Models grouped by extent, each group solved on the central box holding its light.
    for lo in range(0, order.size, _GROUP):
        group = order[lo : lo + _GROUP]
        h = int(half[group].max())
        box = clean[group, centre - h : centre + h + 1, centre - h : centre + h + 1]
        out[group] = _solve_radius(box, dx[group], dy[group], q[group], pa[group], light_fraction, tol, max_iter)
    return out


def _solve_radius(
    m: np.ndarray, dx: np.ndarray, dy: np.ndarray, q: np.ndarray, pa: np.ndarray, light_fraction: float, tol: float, max_iter: int
) -> np.ndarray:
    """Bracket the radius around the pixel-centre guess, then Illinois (regula falsi) iterations.

    The enclosed light is evaluated exactly (:class:`_RingLight`) at the guess and a quarter pixel
    from it towards the root; rows whose root is not between the two start from the guess +- 1 px,
    widened until it is bracketed. Every row stops within ``tol`` of ``light_fraction``.
    """
    r_max = 0.5 * m.shape[-1] * np.sqrt(2.0) / np.sqrt(q)
    guess, ring = _ring_setup(m, dx, dy, q, pa, light_fraction)
    lo, hi = ring.r_lo.copy(), ring.r_hi.copy()

    def g(idx: np.ndarray, radius: np.ndarray) -> np.ndarray:
        return ring.enclosed(idx, radius) - light_fraction

    all_idx = np.arange(m.shape[0])
    # A quarter-pixel first bracket: the guess and a step from it towards the root (most roots lie
    # within it); the others start from the guess +- 1 px as before.
    x0 = np.clip(guess, lo, hi)
    g0 = g(all_idx, x0)
    x1 = np.clip(x0 + np.where(g0 > 0, -_FIRST_STEP, _FIRST_STEP), lo, hi)
    g1 = g(all_idx, x1)
    crossed = (g0 > 0) != (g1 > 0)
    down = g0 > 0
    g_lo, g_hi = np.empty(m.shape[0]), np.empty(m.shape[0])
    lo = np.where(crossed, np.where(down, x1, x0), lo)
    hi = np.where(crossed, np.where(down, x0, x1), hi)
    g_lo[crossed] = np.where(down, g1, g0)[crossed]
    g_hi[crossed] = np.where(down, g0, g1)[crossed]
    rest = np.flatnonzero(~crossed)
    if rest.size:
        g_lo[rest], g_hi[rest] = g(rest, lo[rest]), g(rest, hi[rest])
    for _ in range(max_iter):
        low_bad = np.flatnonzero((g_lo > 0) & (lo > _MIN_RADIUS))
        high_bad = np.flatnonzero((g_hi < 0) & (hi < r_max))
        if low_bad.size == 0 and high_bad.size == 0:
            break
        if low_bad.size:
            lo[low_bad] = np.maximum(lo[low_bad] * 0.5, _MIN_RADIUS)
            g_lo[low_bad] = g(low_bad, lo[low_bad])
        if high_bad.size:
            hi[high_bad] = np.minimum(hi[high_bad] * 1.5, r_max[high_bad])
            g_hi[high_bad] = g(high_bad, hi[high_bad])
    root = np.where(g_lo >= 0, lo, hi)
    active = np.flatnonzero((g_lo < 0) & (g_hi > 0))
    side = np.zeros(m.shape[0], dtype=np.int8)
    for _ in range(max_iter):
        if active.size == 0:
            break
        fl, fh = g_lo[active], g_hi[active]
        x = (lo[active] * fh - hi[active] * fl) / (fh - fl)
        fx = g(active, x)
        root[active] = x
        done = np.abs(fx) <= tol
        upper = fx > 0
        # Illinois modification: halve the stale end's value when the same side is kept twice.
        hi[active[upper]] = x[upper]
        g_hi[active[upper]] = fx[upper]
        keep_lo = active[upper & (side[active] == 1)]
        g_lo[keep_lo] *= 0.5
        lo[active[~upper]] = x[~upper]
        g_lo[active[~upper]] = fx[~upper]
        keep_hi = active[~upper & (side[active] == -1)]
        g_hi[keep_hi] *= 0.5
        side[active] = np.where(upper, 1, -1)
        active = active[~done]
    return root


def _usable(weights: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights and data with NaN pixels at 0 (``np.where(np.isfinite(data), ..., 0.0)``; as given
    when every pixel is finite)."""
    finite = np.isfinite(data)
    if finite.all():
        return weights, data
    return np.where(finite, weights, 0.0), np.where(finite, data, 0.0)


def elliptical_aperture_photometry(
    inputs: PhotometryInputs,
    *,
    light_fraction: float = APERTURE_LIGHT_FRACTION,
) -> pd.DataFrame:
    """PAUS forced elliptical aperture photometry of every target of ``inputs``.

    Parameters
    ----------
    inputs : PhotometryInputs
        Data and model cutouts (>= 92 px for a complete 30-45 px background annulus).
    light_fraction : float, keyword-only
        Model light held by the aperture (0.625 in PAUS).

    Returns
    -------
    DataFrame, one row per target
        ``flux``, ``flux_err`` (e-/s), ``flag``, ``aperture_a``, ``aperture_b`` (semi-axes, pixels),
        ``aperture_area`` (usable pixels), ``aperture_light`` (model light on usable aperture pixels,
        ``light_fraction`` when complete), ``background`` (e-/s per pixel), ``background_rms``
        (e-/s per pixel).
    """
    n, size = inputs.n, inputs.size
    centre = size // 2
    background = inputs.background
    radius = np.full(n, np.nan)
    measurable = np.flatnonzero(inputs.measurable)
    if measurable.size:
        radius[measurable] = aperture_radius(
            inputs.model if measurable.size == n else inputs.model[measurable],
            inputs.dx[measurable],
            inputs.dy[measurable],
            inputs.q[measurable],
            inputs.pa[measurable],
            light_fraction=light_fraction,
        )
    a, b = _axes(radius, inputs.q)
    has_aperture = np.isfinite(radius)
    idx = np.flatnonzero(has_aperture)
    area, raw_sum, light = np.zeros(n), np.zeros(n), np.zeros(n)
    footprint = np.zeros(inputs.data.shape, dtype=bool)
    # Apertures in groups of similar size, each group on the central box holding its apertures.
    order = idx[np.argsort(a[idx], kind="stable")]
    for start in range(0, order.size, _GROUP):
        group = order[start : start + _GROUP]
        reach = int(np.ceil(np.max(a[group]))) + 2
        lo, hi = max(centre - reach, 0), min(centre + reach + 1, size)
        box_data = inputs.data[group, lo:hi, lo:hi]
        weights = ellipse_pixel_overlap(box_data.shape[1:], centre - lo + inputs.dx[group], centre - lo + inputs.dy[group],
                                        a[group], b[group], inputs.pa[group])
        usable, data = _usable(weights, box_data)
        model = inputs.model[group, lo:hi, lo:hi]
        if not np.isfinite(model).all():
            model = np.nan_to_num(model, nan=0.0)
        area[group] = usable.sum(axis=(1, 2))
        raw_sum[group] = np.einsum("nij,nij->n", usable, data)
        light[group] = np.einsum("nij,nij->n", usable, model)
        footprint[group, lo:hi, lo:hi] = weights > 0
    signal = raw_sum - background.mean * area
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = np.where(light > 0, signal / light, np.nan)
        variance = background.variance * area + area**2 * background.mean_variance + np.maximum(signal, 0.0) / inputs.exptime
        flux_err = np.where(light > 0, np.sqrt(variance) / light, np.nan)
    flags = footprint_flags(inputs, footprint)
    flags[~has_aperture & inputs.measurable] |= Flag.FIT_FAILED
    flags[~np.isfinite(flux) & inputs.measurable] |= Flag.FIT_FAILED
    flags[flux < 0] |= Flag.NEGATIVE_MODEL
    off = ~inputs.measurable
    flux[off] = np.nan
    flux_err[off] = np.nan
    return pd.DataFrame(
        {
            "flux": flux,
            "flux_err": flux_err,
            "flag": flags,
            "aperture_a": a,
            "aperture_b": b,
            "aperture_area": area,
            "aperture_light": light,
            "background": background.mean,
            "background_rms": np.sqrt(background.variance),
        }
    )


def ellipse_sums(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, pa: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sums of an image over ellipses with exact pixel overlaps (``sep.sum_ellipse(..., subpix=0)``'s job).

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        NaN pixels (and pixels off the image) are left out.
    x, y : ndarray, shape (n,)
        Ellipse centres (0-based pixels, x = column).
    a, b, pa : ndarray, shape (n,)
        Semi-axes (pixels, > 0) and position angle of ``a`` (degrees, counter-clockwise from +x).

    Returns
    -------
    sums, areas : ndarray, shape (n,)
        ``sum w d`` and ``sum w`` over the usable pixels, ``w`` the covered fraction of each pixel.
    """
    x, y, a, b, pa = (np.asarray(v, dtype=np.float64) for v in (x, y, a, b, pa))
    sums, areas = np.zeros(x.size), np.zeros(x.size)
    order = np.argsort(a, kind="stable")
    # ellipses of similar size together, each group on cutouts just holding its ellipses
    for start in range(0, order.size, _GROUP):
        group = order[start : start + _GROUP]
        reach = int(np.ceil(np.max(a[group]))) + 2
        size = 2 * reach + 1
        stamps = cut_stamps(image, x[group], y[group], size=size)
        weights = ellipse_pixel_overlap((size, size), reach + stamps.dx, reach + stamps.dy, a[group], b[group], pa[group])
        usable, data = _usable(weights, stamps.data)
        sums[group] = np.einsum("nij,nij->n", usable, data)
        areas[group] = usable.sum(axis=(1, 2))
    return sums, areas


@dataclasses.dataclass(frozen=True, kw_only=True)
class AperturePhotometry:
    """Registry method ``aperture``: PAUS forced elliptical aperture photometry (§3.2).

    Parameters
    ----------
    light_fraction : float
        Model light held by the aperture (0.625 in PAUS).
    """

    light_fraction: float = APERTURE_LIGHT_FRACTION
    name: ClassVar[str] = "aperture"

    def __post_init__(self) -> None:
        if not 0 < self.light_fraction < 1:
            raise LumosValueError(f"light_fraction must be in (0, 1), got {self.light_fraction}")

    def measure(self, ctx: TargetContext) -> pd.DataFrame:
        """One row per target of ``ctx`` (see :func:`elliptical_aperture_photometry`)."""
        frame = elliptical_aperture_photometry(ctx.photometry_inputs, light_fraction=self.light_fraction)
        frame["flag"] = frame["flag"].to_numpy(np.int64) | ctx.base_flags
        return frame
