"""Batched Fourier-space rendering with torch (the engine behind :mod:`lumos_ops.render.draw`).

For a batch of profiles sharing one grid side ``G`` the pixel values are the inverse real FFT of

    H(k) = flux * F_gal(|A k| r50) * F_psf(|k| s) * sinc(kx / 2 pi) * sinc(ky / 2 pi) * exp(-i k.x0)

(``A`` the area-preserving shear matrix, ``s`` the PSF scale radius, ``x0`` the profile centre on
the grid), folded over the nearest aliases ``k - 2 pi`` in x and ``k - 2 pi sign(ky)`` in y, so the
samples are exact pixel integrals up to the negligible far aliases. Aliases are computed only on the
rows and columns where the narrowest PSF of the batch still exceeds ``1e-7`` there.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from lumos_ops.render.psf import PsfKind, moffat_fourier, moffat_table
from lumos_ops.render.sersic import sersic_table
from lumos_ops.render.tables import LN_K_MIN, LN_K_STEP, ln_k_grid

__all__ = ["ProfileBatch", "render_batch"]

_ALIAS_THRESHOLD = 1e-7


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


def _rows_with_slopes(name: str, param: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    table = {"sersic": sersic_table, "moffat": moffat_table}[name]()
    rows = torch.as_tensor(table.rows(param), dtype=torch.float32, device=device)
    slopes = torch.diff(rows, dim=1, append=rows[:, -1:])
    return rows, slopes


def _lookup(rows: torch.Tensor, slopes: torch.Tensor, ln_k: torch.Tensor) -> torch.Tensor:
    """Interpolate per-profile rows (B, L) at ``ln_k`` of shape (B, ...)."""
    u = ((ln_k - LN_K_MIN) * (1.0 / LN_K_STEP)).clamp_(0.0, rows.shape[1] - 1.0)
    i = u.floor()
    t = u.sub_(i)
    index = i.long().reshape(rows.shape[0], -1)
    value = torch.gather(rows, 1, index).reshape(t.shape)
    slope = torch.gather(slopes, 1, index).reshape(t.shape)
    return value.addcmul_(slope, t)


def _psf_radial_bound(kind: PsfKind, k: np.ndarray, scale_min: float, beta_min: float) -> np.ndarray:
    """Upper bound of the PSF transform at radial frequency ``k`` over the batch (numpy)."""
    if kind is PsfKind.GAUSSIAN:
        return np.exp(-0.5 * (k * scale_min) ** 2)
    return moffat_fourier(k * scale_min, beta_min)


@dataclasses.dataclass(frozen=True)
class _Term:
    """One alias term restricted to a block of the half-plane spectrum."""

    rows: slice
    cols: slice
    kx: torch.Tensor  # (C,) float64 frequencies (rad / pixel) of the term
    ky: torch.Tensor  # (R,)


def _terms(grid: int, kind: PsfKind, scale_min: float, beta_min: float, device: torch.device) -> list[_Term]:
    kx = 2.0 * np.pi * np.arange(grid // 2 + 1) / grid
    ky = 2.0 * np.pi * np.fft.fftfreq(grid)
    alias_x = kx - 2.0 * np.pi
    sign_y = np.where(ky >= 0.0, 1.0, -1.0)
    alias_y = ky - 2.0 * np.pi * sign_y
    cols = np.nonzero(_psf_radial_bound(kind, np.abs(alias_x), scale_min, beta_min) > _ALIAS_THRESHOLD)[0]
    rows = np.nonzero(_psf_radial_bound(kind, np.abs(alias_y), scale_min, beta_min) > _ALIAS_THRESHOLD)[0]

    def as_t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float64, device=device)

    all_rows, all_cols = slice(0, grid), slice(0, grid // 2 + 1)
    terms = [_Term(all_rows, all_cols, as_t(kx), as_t(ky))]
    col_block = slice(int(cols[0]), int(cols[-1]) + 1) if cols.size else None
    row_block = slice(int(rows[0]), int(rows[-1]) + 1) if rows.size else None
    if col_block is not None:
        terms.append(_Term(all_rows, col_block, as_t(alias_x[col_block]), as_t(ky)))
    if row_block is not None:
        terms.append(_Term(row_block, all_cols, as_t(kx), as_t(alias_y[row_block])))
        if col_block is not None:
            terms.append(_Term(row_block, col_block, as_t(alias_x[col_block]), as_t(alias_y[row_block])))
    return terms


def _sinc(k: torch.Tensor) -> torch.Tensor:
    return torch.sinc(k / (2.0 * np.pi))


def render_batch(batch: ProfileBatch, *, grid: int, size: int, device: torch.device) -> torch.Tensor:
    """Render unit-flux profiles on a ``grid x grid`` periodic grid and crop ``size x size`` stamps.

    Parameters
    ----------
    batch : ProfileBatch
        B profiles in pixel units.
    grid : int
        Even FFT grid side (pixels), at least ``size``.
    size : int
        Stamp side (pixels); the profile centre lands at stamp ``(size//2 + dx, size//2 + dy)``.
    device : torch.device

    Returns
    -------
    torch.Tensor, shape (B, size, size), float32
        Pixel-integrated unit-flux images, ``[y, x]``.
    """
    n_prof = batch.psf_scale_px.size
    kind = batch.psf_kind
    scale = batch.psf_scale_px
    beta = batch.psf_beta
    terms = _terms(grid, kind, float(scale.min()), float(beta.min()) if kind is PsfKind.MOFFAT else 0.0, device)

    if batch.r50_px is not None:
        gal_rows, gal_slopes = _rows_with_slopes("sersic", batch.sersic_n, device)
        cos, sin = np.cos(batch.pa_rad), np.sin(batch.pa_rad)
        q = batch.q
        r2 = batch.r50_px**2
        qxx = torch.as_tensor(r2 * (cos**2 / q + q * sin**2), dtype=torch.float32, device=device)[:, None, None]
        qyy = torch.as_tensor(r2 * (sin**2 / q + q * cos**2), dtype=torch.float32, device=device)[:, None, None]
        qxy = torch.as_tensor(r2 * 2.0 * cos * sin * (1.0 / q - q), dtype=torch.float32, device=device)[:, None, None]
    if kind is PsfKind.MOFFAT:
        psf_rows, psf_slopes = _rows_with_slopes("moffat", beta, device)
        ln_scale = torch.as_tensor(np.log(scale), dtype=torch.float32, device=device)[:, None, None]
    else:
        half_var = torch.as_tensor(-0.5 * scale**2, dtype=torch.float32, device=device)[:, None, None]

    centre_x = torch.as_tensor(grid // 2 + batch.dx, dtype=torch.float64, device=device)[:, None]
    centre_y = torch.as_tensor(grid // 2 + batch.dy, dtype=torch.float64, device=device)[:, None]
    spectrum = torch.zeros((n_prof, grid, grid // 2 + 1), dtype=torch.complex64, device=device)
    for term in terms:
        kx = term.kx.float()
        ky = term.ky.float()
        kx2, ky2 = kx * kx, ky * ky
        k2 = ky2[:, None] + kx2[None, :]
        if kind is PsfKind.MOFFAT:
            ln_k = 0.5 * torch.log(k2)
            value = _lookup(psf_rows, psf_slopes, ln_k[None] + ln_scale)
        else:
            value = torch.exp(half_var * k2[None])
        value = value * (_sinc(ky)[:, None] * _sinc(kx)[None, :])
        if batch.r50_px is not None:
            quad = qxx * kx2[None, None, :] + qyy * ky2[None, :, None] + qxy * (ky[:, None] * kx[None, :])[None]
            ln_gal = 0.5 * torch.log(quad)
            value = value * _lookup(gal_rows, gal_slopes, ln_gal)
        phase_x = torch.polar(torch.ones_like(centre_x), -term.kx[None, :] * centre_x).to(torch.complex64)
        phase_y = torch.polar(torch.ones_like(centre_y), -term.ky[None, :] * centre_y).to(torch.complex64)
        block = value * phase_y[:, :, None] * phase_x[:, None, :]
        spectrum[:, term.rows, term.cols] += block
    image = torch.fft.irfft2(spectrum, s=(grid, grid))
    start = grid // 2 - size // 2
    return image[:, start : start + size, start : start + size]
