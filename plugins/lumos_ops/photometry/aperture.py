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
from lumos_ops.exceptions import LumosValueError
from lumos_ops.flags import Flag
from lumos_ops.photometry.inputs import PhotometryInputs
from lumos_ops.photometry.overlap import ellipse_pixel_overlap
from lumos_ops.photometry.quality import footprint_flags

if TYPE_CHECKING:
    from lumos_ops.measure import TargetContext

__all__ = ["aperture_radius", "enclosed_light", "elliptical_aperture_photometry", "AperturePhotometry"]

_MIN_RADIUS = 0.02
"""Smallest circularised aperture radius searched (pixels)."""

_GROUP = 128
"""Models solved together (grouped by extent so that each group works on a small central box)."""


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


def _pixel_centre_radius(model: np.ndarray, dx: np.ndarray, dy: np.ndarray, q: np.ndarray, pa: np.ndarray, fraction: float) -> np.ndarray:
    """First guess: accumulate the model light of pixel centres in bins of elliptical radius."""
    n, size = model.shape[0], model.shape[-1]
    centre = size // 2
    grid = np.arange(size, dtype=np.float64) - centre
    gx = grid[None, None, :] - dx[:, None, None]
    gy = grid[None, :, None] - dy[:, None, None]
    theta = np.deg2rad(pa)[:, None, None]
    u = np.cos(theta) * gx + np.sin(theta) * gy
    v = -np.sin(theta) * gx + np.cos(theta) * gy
    qq = q[:, None, None]
    step = 0.25
    n_bins = int(np.ceil(size / step / np.sqrt(q.min()))) + 2
    bins = np.minimum((np.sqrt(qq * u * u + v * v / qq) / step).astype(np.int64), n_bins - 1)
    bins += (np.arange(n) * n_bins)[:, None, None]
    light = np.bincount(bins.ravel(), weights=model.ravel(), minlength=n * n_bins).reshape(n, n_bins)
    cum = np.cumsum(light, axis=1)
    idx = (cum < fraction).sum(axis=1)
    return (idx + 1) * step


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
    clean = np.nan_to_num(np.asarray(model, dtype=np.float64), nan=0.0)
    total = clean.sum(axis=(1, 2))
    ok = np.flatnonzero(total > light_fraction)
    if ok.size == 0:
        return out
    half = np.zeros(n, dtype=np.int64)
    half[ok] = _light_half_size(clean[ok])
    centre = model.shape[-1] // 2
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
    """Bracket the radius around the pixel-centre guess, then Illinois (regula falsi) iterations."""
    r_max = 0.5 * m.shape[-1] * np.sqrt(2.0) / np.sqrt(q)

    def g(idx: np.ndarray, radius: np.ndarray) -> np.ndarray:
        return _enclosed(m[idx], dx[idx], dy[idx], q[idx], pa[idx], radius) - light_fraction

    guess = _pixel_centre_radius(m, dx, dy, q, pa, light_fraction)
    lo = np.maximum(guess - 1.0, _MIN_RADIUS)
    hi = np.minimum(guess + 1.0, r_max)
    all_idx = np.arange(m.shape[0])
    g_lo, g_hi = g(all_idx, lo), g(all_idx, hi)
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
            inputs.model[measurable],
            inputs.dx[measurable],
            inputs.dy[measurable],
            inputs.q[measurable],
            inputs.pa[measurable],
            light_fraction=light_fraction,
        )
    a, b = _axes(radius, inputs.q)
    has_aperture = np.isfinite(radius)
    idx = np.flatnonzero(has_aperture)
    # Work on the central box that holds every aperture of the batch.
    reach = int(np.ceil(np.nanmax(a[idx]))) + 2 if idx.size else 0
    lo, hi = max(centre - reach, 0), min(centre + reach + 1, size)
    box_data = inputs.data[:, lo:hi, lo:hi]
    weights = np.zeros(box_data.shape, dtype=np.float64)
    if idx.size:
        weights[idx] = ellipse_pixel_overlap(
            box_data.shape[1:], centre - lo + inputs.dx[idx], centre - lo + inputs.dy[idx], a[idx], b[idx], inputs.pa[idx]
        )
    finite = np.isfinite(box_data)
    usable = np.where(finite, weights, 0.0)
    data = np.where(finite, box_data, 0.0)
    model = np.nan_to_num(inputs.model[:, lo:hi, lo:hi], nan=0.0)
    area = usable.sum(axis=(1, 2))
    raw_sum = np.einsum("nij,nij->n", usable, data)
    signal = raw_sum - background.mean * area
    light = np.einsum("nij,nij->n", usable, model)
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = np.where(light > 0, signal / light, np.nan)
        variance = background.variance * area + area**2 * background.mean_variance + np.maximum(signal, 0.0) / inputs.exptime
        flux_err = np.where(light > 0, np.sqrt(variance) / light, np.nan)
    footprint = np.zeros(inputs.data.shape, dtype=bool)
    footprint[:, lo:hi, lo:hi] = weights > 0
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
