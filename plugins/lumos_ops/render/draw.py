"""Public entry points: batched rendering of PSF-convolved, pixel-integrated galaxies and stars."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from lumos_ops.constants import PIXEL_SCALE, STAMP_SIZE
from lumos_ops.exceptions import LumosValueError
from lumos_ops.render.backend import Backend, get_backend
from lumos_ops.render.fourier import ProfileBatch, render_batch
from lumos_ops.render.grid import DEFAULT_WRAP_TOLERANCE, GRID_SIZES, choose_grid_sizes
from lumos_ops.render.psf import (
    DEFAULT_MOFFAT_BETA,
    MOFFAT_BETA_MAX,
    MOFFAT_BETA_MIN,
    PsfKind,
    psf_scale_radius,
)
from lumos_ops.render.sersic import SERSIC_N_MAX, SERSIC_N_MIN

__all__ = ["RenderResult", "render_galaxies", "render_point_sources"]

_ELEMENT_BUDGET = 1 << 21
"""Largest number of half-plane Fourier pixels (profiles x G x (G/2 + 1)) processed at once on a GPU."""

_CPU_ELEMENT_BUDGET = 1 << 19
""":data:`_ELEMENT_BUDGET` on the CPU (numpy, or torch on the CPU).

A 4 MB complex64 spectrum: its passes stay in the CPU caches, and 2,500 60 px models render in
about 20 % less CPU time than with 4x larger chunks on one thread (``benchmarks/bench_ccd.py``'s
CCD: 0.82 against 1.05 s with torch, 0.97 against 1.22 s with numpy, medians). Like any change of
the chunks (``batch_size``), this moves a few models by float32 rounding (the BLAS product of the
galaxies' quadratic forms rounds differently for some chunk sizes, e.g. a chunk of one profile):
0 to 3 of 3,000 models, by at most 9e-8 of their peak, on six synthetic catalogues."""

ArrayLike = Any
"""A scalar, a sequence, a numpy array or a torch tensor (0-d or 1-d)."""


@dataclasses.dataclass(frozen=True)
class RenderResult:
    """Rendered stamps.

    Attributes
    ----------
    images : ndarray or torch.Tensor, shape (n, size, size), float32
        Pixel-integrated, PSF-convolved profiles (flux per pixel, ``[y, x]``); over the whole
        plane they sum to ``flux``. A numpy array, or a torch tensor on the requested device when
        rendered with ``as_numpy=False``.
    flux_outside : ndarray, shape (n,), float64, or None
        Fraction of the total flux falling outside the stamp (numpy in both cases); None when
        :func:`render_galaxies` was asked not to compute it.
    grid_sizes : ndarray, shape (n,), int64
        Side (pixels) of the periodic Fourier grid each profile was rendered on (diagnostic).
    """

    images: Any
    flux_outside: np.ndarray | None
    grid_sizes: np.ndarray

    def __len__(self) -> int:
        return int(self.grid_sizes.shape[0])


def _as_1d(name: str, value: ArrayLike) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor (torch need not be imported)
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise LumosValueError(f"{name} must be a number or a 1-d array of numbers, got {type(value).__name__}") from None
    if array.ndim > 1:
        raise LumosValueError(f"{name} must be a scalar or a 1-d array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise LumosValueError(f"{name} contains NaN or infinite values")
    return array


def _broadcast(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    lengths = {name: a.size for name, a in arrays.items() if a.ndim == 1 and a.size != 1}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise LumosValueError(f"array arguments must share one length (or be scalars); got {detail}")
    n = next(iter(lengths.values()), 1)
    return {name: np.broadcast_to(a.reshape(-1), (n,)).copy() for name, a in arrays.items()}


def _check_range(name: str, array: np.ndarray, lo: float, hi: float, *, lo_open: bool = False, fix: str = "") -> None:
    bad = (array <= lo if lo_open else array < lo) | (array > hi)
    if np.any(bad):
        i = int(np.argmax(bad))
        bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise LumosValueError(f"{name}[{i}] = {array[i]!r} is outside {bound}{fix}")


def _resolve_common(
    psf: str, size: int, pixel_scale: float, batch_size: int, device: Any, wrap_tolerance: float, as_numpy: bool
) -> tuple[PsfKind, Backend]:
    try:
        kind = PsfKind(psf)
    except ValueError:
        raise LumosValueError(f"psf must be 'moffat' or 'gaussian', got {psf!r}") from None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise LumosValueError(f"size must be a positive integer number of pixels, got {size!r}")
    if size + 8 > GRID_SIZES[-1]:
        raise LumosValueError(f"size = {size} is too large; the largest supported stamp is {GRID_SIZES[-1] - 8} pixels")
    try:
        valid_scale = bool(np.isfinite(pixel_scale) and pixel_scale > 0)
    except TypeError:
        valid_scale = False
    if not valid_scale:
        raise LumosValueError(f"pixel_scale must be a positive number of arcsec per pixel, got {pixel_scale!r}")
    if not (isinstance(wrap_tolerance, (int, float, np.floating)) and 0 < wrap_tolerance < 1):
        raise LumosValueError(f"wrap_tolerance must be a fraction of the flux in (0, 1), got {wrap_tolerance!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise LumosValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return kind, get_backend(device, tensor=not as_numpy)


def _render(
    params: dict[str, np.ndarray],
    *,
    galaxy: bool,
    kind: PsfKind,
    size: int,
    pixel_scale: float,
    xp: Backend,
    as_numpy: bool,
    batch_size: int,
    wrap_tolerance: float,
    outside: bool = True,
) -> RenderResult:
    n = params["flux"].size
    fwhm_px = params["psf_fwhm"] / pixel_scale
    beta = params["psf_beta"]
    scale_px = psf_scale_radius(kind, fwhm_px, beta)
    r50_px = params["r50"] / pixel_scale if galaxy else None
    grids = choose_grid_sizes(
        size=size,
        r50_px=r50_px,
        sersic_n=params["sersic_n"] if galaxy else None,
        q=params["q"] if galaxy else None,
        psf_kind=kind,
        psf_scale_px=scale_px,
        psf_beta=beta,
        max_offset=np.maximum(np.abs(params["dx"]), np.abs(params["dy"])),
        tolerance=wrap_tolerance,
    )
    images = xp.empty((n, size, size))
    on_cpu = xp.name == "numpy" or xp.device.type == "cpu"
    budget = _CPU_ELEMENT_BUDGET if on_cpu else _ELEMENT_BUDGET
    for grid in np.unique(grids):
        members = np.nonzero(grids == grid)[0]
        members = members[np.argsort(scale_px[members], kind="stable")]  # similar PSFs share alias work
        chunk = max(1, min(batch_size, budget // (int(grid) * (int(grid) // 2 + 1))))
        for start in range(0, members.size, chunk):
            idx = members[start : start + chunk]
            batch = ProfileBatch(
                psf_kind=kind,
                psf_scale_px=scale_px[idx],
                psf_beta=beta[idx],
                dx=params["dx"][idx],
                dy=params["dy"][idx],
                r50_px=r50_px[idx] if galaxy else None,
                sersic_n=params["sersic_n"][idx] if galaxy else None,
                q=params["q"][idx] if galaxy else None,
                pa_rad=np.deg2rad(params["pa"][idx]) if galaxy else None,
            )
            with xp.no_grad():
                stamps = render_batch(batch, grid=int(grid), size=size, xp=xp)
            images[xp.index(idx)] = stamps
    flux_outside = 1.0 - xp.sum_f64(images, (1, 2)) if outside else None
    if not np.all(params["flux"] == 1.0):  # times 1 leaves every float32 value as it is
        images *= xp.float32(params["flux"])[:, None, None]
    out = xp.numpy(images) if as_numpy else images
    return RenderResult(images=out, flux_outside=flux_outside, grid_sizes=grids)


def render_galaxies(
    *,
    r50: ArrayLike,
    sersic_n: ArrayLike,
    q: ArrayLike,
    pa: ArrayLike,
    psf_fwhm: ArrayLike,
    psf_beta: ArrayLike = DEFAULT_MOFFAT_BETA,
    psf: str = "moffat",
    dx: ArrayLike = 0.0,
    dy: ArrayLike = 0.0,
    flux: ArrayLike = 1.0,
    size: int = STAMP_SIZE,
    pixel_scale: float = PIXEL_SCALE,
    device: Any = None,
    as_numpy: bool = True,
    batch_size: int = 2048,
    wrap_tolerance: float = DEFAULT_WRAP_TOLERANCE,
    flux_outside: bool = True,
) -> RenderResult:
    """Render Sérsic galaxies convolved with a PSF and integrated over square pixels.

    The profile is eq. (1) of Cabayol et al. (2021) with the exact ``b_n``, sheared with area
    preserved (semi-axes ``r50 / sqrt(q)`` and ``r50 * sqrt(q)``, major axis at ``pa``), exactly as
    ``galsim.Sersic(n, half_light_radius=r50).shear(q=q, beta=pa * galsim.degrees)``. It is
    rendered in Fourier space (see :mod:`lumos_ops.render.fourier`); each array argument is a
    scalar or has shape (n,), and all broadcast together.

    Parameters
    ----------
    r50 : array_like
        Circularised half-light radius (arcsec), > 0.
    sersic_n : array_like
        Sérsic index, in [0.3, 6.5].
    q : array_like
        Axis ratio b/a, in (0, 1].
    pa : array_like
        Position angle of the major axis (degrees, counter-clockwise from +x towards +y).
    psf_fwhm : array_like
        PSF full width at half maximum (arcsec), > 0.
    psf_beta : array_like
        Moffat ``beta`` in [1.5, 10]; ignored when ``psf="gaussian"``.
    psf : {"moffat", "gaussian"}
        PSF family.
    dx, dy : array_like
        Profile centre offset (pixels): the centre lies at stamp coordinates
        ``(size // 2 + dx, size // 2 + dy)`` (x = column, y = row, pixel centres at integers).
    flux : array_like
        Total flux over the whole plane (any unit, e-/s in practice).
    size : int
        Stamp side (pixels).
    pixel_scale : float
        Arcsec per pixel.
    device : str or torch.device, optional
        Torch device for the computation. None (default) with ``as_numpy=True``: numpy and
        ``scipy.fft`` on the CPU, without importing torch (the same images to ~1e-6 of the peak);
        None with ``as_numpy=False``: torch on the CPU.
    as_numpy : bool
        Return ``images`` as a numpy array (default) or as a torch tensor on ``device``.
    batch_size : int
        Largest number of profiles rendered at once (memory bound; large grids use fewer).
    wrap_tolerance : float
        Bound on the flux wrapped around by the periodic FFT grid into the stamp, relative to
        the total flux; larger grids are used for profiles with wide wings.
    flux_outside : bool
        Sum each stamp for ``RenderResult.flux_outside`` (False: skip the sum, None there).

    Returns
    -------
    RenderResult
        ``images`` (n, size, size) float32 and ``flux_outside`` (n,) float64 (or None).

    Raises
    ------
    LumosValueError
        A parameter is outside its range or the array lengths differ; the message names it.
    """
    kind, xp = _resolve_common(psf, size, pixel_scale, batch_size, device, wrap_tolerance, as_numpy)
    raw = {
        "r50": r50,
        "sersic_n": sersic_n,
        "q": q,
        "pa": pa,
        "psf_fwhm": psf_fwhm,
        "psf_beta": psf_beta,
        "dx": dx,
        "dy": dy,
        "flux": flux,
    }
    params = _broadcast({name: _as_1d(name, value) for name, value in raw.items()})
    _check_range("r50", params["r50"], 0.0, np.inf, lo_open=True, fix=" (arcsec)")
    _check_range("sersic_n", params["sersic_n"], SERSIC_N_MIN, SERSIC_N_MAX)
    _check_range("q", params["q"], 0.0, 1.0, lo_open=True)
    _check_range("psf_fwhm", params["psf_fwhm"], 0.0, np.inf, lo_open=True, fix=" (arcsec)")
    if kind is PsfKind.MOFFAT:
        _check_range("psf_beta", params["psf_beta"], MOFFAT_BETA_MIN, MOFFAT_BETA_MAX, fix="; use psf='gaussian' for larger beta")
    return _render(
        params,
        galaxy=True,
        kind=kind,
        size=size,
        pixel_scale=pixel_scale,
        xp=xp,
        as_numpy=as_numpy,
        batch_size=batch_size,
        wrap_tolerance=wrap_tolerance,
        outside=flux_outside,
    )


def render_point_sources(
    *,
    psf_fwhm: ArrayLike,
    psf_beta: ArrayLike = DEFAULT_MOFFAT_BETA,
    psf: str = "moffat",
    dx: ArrayLike = 0.0,
    dy: ArrayLike = 0.0,
    flux: ArrayLike = 1.0,
    size: int = STAMP_SIZE,
    pixel_scale: float = PIXEL_SCALE,
    device: Any = None,
    as_numpy: bool = True,
    batch_size: int = 2048,
    wrap_tolerance: float = DEFAULT_WRAP_TOLERANCE,
) -> RenderResult:
    """Render point sources (stars): the PSF integrated over pixels.

    Same conventions, parameters, result and errors as :func:`render_galaxies` without the
    galaxy shape parameters.
    """
    kind, xp = _resolve_common(psf, size, pixel_scale, batch_size, device, wrap_tolerance, as_numpy)
    raw = {"psf_fwhm": psf_fwhm, "psf_beta": psf_beta, "dx": dx, "dy": dy, "flux": flux}
    params = _broadcast({name: _as_1d(name, value) for name, value in raw.items()})
    _check_range("psf_fwhm", params["psf_fwhm"], 0.0, np.inf, lo_open=True, fix=" (arcsec)")
    if kind is PsfKind.MOFFAT:
        _check_range("psf_beta", params["psf_beta"], MOFFAT_BETA_MIN, MOFFAT_BETA_MAX, fix="; use psf='gaussian' for larger beta")
    return _render(
        params,
        galaxy=False,
        kind=kind,
        size=size,
        pixel_scale=pixel_scale,
        xp=xp,
        as_numpy=as_numpy,
        batch_size=batch_size,
        wrap_tolerance=wrap_tolerance,
    )
