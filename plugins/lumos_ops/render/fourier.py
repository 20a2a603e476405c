"""Batched Fourier-space rendering on numpy or torch (the engine behind :mod:`lumos_ops.render.draw`).

For a batch of profiles sharing one grid side ``G`` the pixel values are the inverse real FFT of

    H(k) = flux * F_gal(|A k| r50) * F_psf(|k| s) * sinc(kx / 2 pi) * sinc(ky / 2 pi) * exp(-i k.x0)

(``A`` the area-preserving shear matrix, ``s`` the PSF scale radius, ``x0`` the profile centre on
the grid), folded over the nearest aliases ``k - 2 pi`` in x and ``k - 2 pi sign(ky)`` in y, so the
samples are exact pixel integrals up to the negligible far aliases. Aliases are computed only on the
rows and columns where the largest PSF transform of the batch times the pixel sinc still
exceeds ``1e-5`` there. One implementation serves both array libraries through
:mod:`lumos_ops.render.backend`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from lumos_ops.render.backend import Backend
from lumos_ops.render.psf import PsfKind, moffat_table
from lumos_ops.render.sersic import sersic_table
from lumos_ops.render.tables import LN_K_MIN, LN_K_STEP

__all__ = ["ProfileBatch", "render_batch"]

_ALIAS_THRESHOLD = 1e-5

_CACHED_GRID_MAX = 512
"""Grids up to this side keep their profile-independent arrays cached (at most ~100 MB in all)."""


@dataclasses.dataclass(frozen=True)
class ProfileBatch:
    """Per-profile parameters of one chunk, all in pixel units, numpy float64 of shape (B,).

    ``r50_px``, ``sersic_n``, ``q`` and ``pa_rad`` are None for point sources. ``psf_scale_px`` is
    the Moffat ``a`` or Gaussian ``sigma``; ``psf_beta`` is ignored for the Gaussian.
    """

    psf_kind: PsfKind
    psf_scale_px: np.ndarray
    psf_beta: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    r50_px: np.ndarray | None = None
    sersic_n: np.ndarray | None = None
    q: np.ndarray | None = None
    pa_rad: np.ndarray | None = None


def _packed_rows(name: str, param: np.ndarray, xp: Backend) -> Any:
    """Per-profile rows with their slopes packed as float32 pairs in one float64 (B, L) array.

    One gather on the packed array then fetches the value and the slope together.
    """
    table = {"sersic": sersic_table, "moffat": moffat_table}[name]()
    rows = table.rows(param)
    pairs = np.empty((*rows.shape, 2), dtype=np.float32)  # each float64 rounded to float32 on writing
    pairs[..., 0] = rows
    np.subtract(rows[:, 1:], rows[:, :-1], out=pairs[:, :-1, 1])  # np.diff's slopes
    pairs[:, -1, 1] = rows[:, -1] - rows[:, -1]  # np.diff's appended last value: 0 for finite values
    return xp.words(pairs.view(np.float64)[..., 0])


def _lookup(packed: Any, u: Any, xp: Backend) -> Any:
    """Linear interpolation of per-profile rows at fractional column ``u`` (shape (B, ...), overwritten).

    ``u = (ln k - LN_K_MIN) / LN_K_STEP``; it is clamped to the table.
    """
    return xp.lookup(packed, u)


@dataclasses.dataclass(frozen=True)
class _Term:
    """One alias term restricted to a block of the half-plane spectrum (frequencies in rad / pixel)."""

    rows: slice
    cols: slice
    kx: np.ndarray  # (C,) float64
    ky: np.ndarray  # (R,) float64
    x_alias: bool  # kx is the grid frequency minus 2 pi


def _alias_block(bound: np.ndarray) -> slice | None:
    keep = np.nonzero(bound > _ALIAS_THRESHOLD)[0]
    return slice(int(keep[0]), int(keep[-1]) + 1) if keep.size else None


def _terms(grid: int, psf_bound: Callable[[np.ndarray], np.ndarray]) -> list[_Term]:
    """The direct term and the nearest-alias terms worth computing for this batch.

    ``psf_bound`` maps radial frequencies (rad / pixel, 1-d) to the largest PSF transform of the batch.
    """
    kx = 2.0 * np.pi * np.arange(grid // 2 + 1) / grid
    ky = 2.0 * np.pi * np.fft.fftfreq(grid)
    alias_x = kx - 2.0 * np.pi
    alias_y = ky - 2.0 * np.pi * np.where(ky >= 0.0, 1.0, -1.0)
    # |transform| <= PSF(|k_alias|) * |sinc(k_alias / 2 pi)| (the galaxy and the other sinc are <= 1)
    cols = _alias_block(psf_bound(np.abs(alias_x)) * np.abs(np.sinc(alias_x / (2 * np.pi))))
    rows = _alias_block(psf_bound(np.abs(alias_y)) * np.abs(np.sinc(alias_y / (2 * np.pi))))
    all_rows, all_cols = slice(0, grid), slice(0, grid // 2 + 1)
    terms = [_Term(all_rows, all_cols, kx, ky, False)]
    if cols is not None:
        terms.append(_Term(all_rows, cols, alias_x[cols], ky, True))
    if rows is not None:
        terms.append(_Term(rows, all_cols, kx, alias_y[rows], False))
        if cols is not None:
            terms.append(_Term(rows, cols, alias_x[cols], alias_y[rows], True))
    return terms


@functools.lru_cache(maxsize=32)
def _term_constants(kx_bytes: bytes, ky_bytes: bytes, xp: Backend) -> tuple[Any, Any, Any]:
    """Profile-independent arrays of one term block (cached: the same grids recur chunk after chunk).

    Returns the pixel sinc product (R, C), ``ln|k| / LN_K_STEP`` (R, C) and the basis
    ``[kx**2, ky**2, kx ky]`` of the galaxy quadratic form, shape (3, R * C), float32.
    """
    kx = np.frombuffer(kx_bytes, dtype=np.float64)
    ky = np.frombuffer(ky_bytes, dtype=np.float64)
    kx2, ky2 = np.meshgrid(kx, ky)
    sinc = np.sinc(ky / (2 * np.pi))[:, None] * np.sinc(kx / (2 * np.pi))[None, :]
    with np.errstate(divide="ignore"):
        ln_k = 0.5 * np.log(kx2**2 + ky2**2) / LN_K_STEP
    basis = np.stack([kx2**2, ky2**2, kx2 * ky2]).reshape(3, -1)
    return xp.float32(sinc), xp.float32(ln_k), xp.float32(basis)


def render_batch(batch: ProfileBatch, *, grid: int, size: int, xp: Backend) -> Any:
    """Render unit-flux profiles on a ``grid x grid`` periodic grid and crop ``size x size`` stamps.

    Parameters
    ----------
    batch : ProfileBatch
        B profiles in pixel units.
    grid : int
        Even FFT grid side (pixels), at least ``size``.
    size : int
        Stamp side (pixels); the profile centre lands at stamp ``(size//2 + dx, size//2 + dy)``.
    xp : NumpyBackend or TorchBackend
        The array library (and torch device) to compute with.

    Returns
    -------
    ndarray or torch.Tensor, shape (B, size, size), float32
        Pixel-integrated unit-flux images, ``[y, x]``.
    """
    kind = batch.psf_kind
    scale = batch.psf_scale_px
    n_prof = scale.size
    galaxy = batch.r50_px is not None
    if galaxy:
        gal_rows = _packed_rows("sersic", batch.sersic_n, xp)
        cos, sin, q = np.cos(batch.pa_rad), np.sin(batch.pa_rad), batch.q
        # |A k|^2 r50^2 = qxx kx^2 + qyy ky^2 + qxy kx ky, pre-multiplied by exp(-2 LN_K_MIN) so that
        # the table column is simply ln(quad) / (2 LN_K_STEP)
        r2 = batch.r50_px**2 * np.exp(-2.0 * LN_K_MIN)
        quad_coeffs = xp.float32(
            np.stack([r2 * (cos**2 / q + q * sin**2), r2 * (sin**2 / q + q * cos**2), r2 * 2.0 * cos * sin * (1.0 / q - q)], 1)
        )
    # profiles from one exposure share their PSF: compute each distinct PSF transform once
    psf_keys, psf_of_profile = np.unique(np.stack([scale, batch.psf_beta], axis=1), axis=0, return_inverse=True)
    psf_scale, psf_beta, spread = scale, batch.psf_beta, None
    if psf_keys.shape[0] < n_prof:
        psf_scale, psf_beta = psf_keys[:, 0], psf_keys[:, 1]
        if psf_keys.shape[0] > 1:  # a single PSF broadcasts over the batch
            spread = xp.index(psf_of_profile.reshape(-1))
    if kind is PsfKind.MOFFAT:
        psf_rows = _packed_rows("moffat", psf_beta, xp)
        ln_scale = xp.float32((np.log(psf_scale) - LN_K_MIN) / LN_K_STEP)[:, None, None]

    def psf_bound(k: np.ndarray) -> np.ndarray:
        if kind is PsfKind.GAUSSIAN:
            return np.exp(-0.5 * (k * psf_scale.min()) ** 2)
        u = xp.float32(np.log(np.maximum(k, 1e-30)) / LN_K_STEP)[None, :] + ln_scale[:, :, 0]
        return xp.max_over_rows(_lookup(psf_rows, u, xp))

    terms = _terms(grid, psf_bound)
    centre_x = (grid // 2 + batch.dx)[:, None]
    centre_y = (grid // 2 + batch.dy)[:, None]
    spectrum = xp.empty((n_prof, grid, grid // 2 + 1), complex_=True)
    parts = xp.real_parts(spectrum)
    for number, term in enumerate(terms):
        constants = _term_constants if grid <= _CACHED_GRID_MAX else _term_constants.__wrapped__
        sinc, ln_k, basis = constants(term.kx.tobytes(), term.ky.tobytes(), xp)
        if kind is PsfKind.MOFFAT:
            value = _lookup(psf_rows, ln_k[None] + ln_scale, xp)
        else:
            gauss_x = xp.float32(np.exp(-0.5 * (psf_scale[:, None] * term.kx[None, :]) ** 2))
            gauss_y = xp.float32(np.exp(-0.5 * (psf_scale[:, None] * term.ky[None, :]) ** 2))
            value = gauss_y[:, :, None] * gauss_x[:, None, :]
        value *= sinc
        if spread is not None:
            value = value[spread]
        if galaxy:
            quad = (quad_coeffs @ basis).reshape(n_prof, term.ky.size, term.kx.size)
            # the clamp guards against float32 cancellation for extreme axis ratios (q << 0.01)
            column = xp.log_(xp.clamp_min_(quad, 1e-30))
            column *= 0.5 / LN_K_STEP
            galaxy_value = _lookup(gal_rows, column, xp)
            galaxy_value *= value
            value = galaxy_value
        # exp(-i k.x0) = exp(-i kx x0) exp(-i ky y0): the y factor (with the x alias's extra
        # exp(2 pi i dx)) is applied here, the x factor after the FFT along y, on the stamp rows only
        angle = term.ky[None, :] * centre_y - (2.0 * np.pi * batch.dx[:, None] if term.x_alias else 0.0)
        phase_real = xp.float32(np.cos(angle))[:, :, None]
        phase_imag = xp.float32(-np.sin(angle))[:, :, None]
        real, imag = parts[:, term.rows, term.cols, 0], parts[:, term.rows, term.cols, 1]
        if number == 0:
            xp.mul_out(value, phase_real, real)
            xp.mul_out(value, phase_imag, imag)
        else:
            xp.addcmul_(real, value, phase_real)
            xp.addcmul_(imag, value, phase_imag)
    start = grid // 2 - size // 2
    rows = xp.ifft(spectrum, 1)[:, start : start + size]
    kx = 2.0 * np.pi * np.arange(grid // 2 + 1) / grid
    rows = rows * xp.unit_phase(-kx[None, :] * centre_x)[:, None, :]
    return xp.irfft(rows, grid, 2)[:, :, start : start + size]
