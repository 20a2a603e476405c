"""GalSim reference drawings with the renderer's conventions (GalSim is a test-only dependency)."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from lumos_ops.constants import PIXEL_SCALE, STAMP_SIZE
from lumos_ops.exceptions import LumosError
from lumos_ops.render.psf import DEFAULT_MOFFAT_BETA, PsfKind

__all__ = ["GalSimMissingError", "import_galsim", "galsim_offset", "draw_galsim_galaxy"]


class GalSimMissingError(LumosError, ImportError):
    """GalSim, needed only to validate and benchmark the renderer, is not installed."""


def import_galsim() -> ModuleType:
    """Import GalSim or raise :class:`GalSimMissingError` saying how to install it."""
    try:
        return importlib.import_module("galsim")
    except ImportError:
        raise GalSimMissingError(
            "GalSim is required for the renderer benchmark and validation; install the test extras "
            "(pip install 'lumos-ops[test]' or pip install galsim)"
        ) from None


def galsim_offset(size: int, dx: float, dy: float) -> tuple[float, float]:
    """GalSim ``drawImage`` offset (pixels) placing the profile at stamp ``(size//2 + dx, size//2 + dy)``.

    GalSim draws at the image's true centre, 0-based ``(size - 1) / 2``, plus the offset.
    """
    centre = (size - 1) / 2.0
    return (size // 2 + dx - centre, size // 2 + dy - centre)


def draw_galsim_galaxy(
    *,
    r50: float,
    sersic_n: float,
    q: float,
    pa: float,
    psf_fwhm: float,
    psf_beta: float = DEFAULT_MOFFAT_BETA,
    psf: str = "moffat",
    dx: float = 0.0,
    dy: float = 0.0,
    flux: float = 1.0,
    size: int = STAMP_SIZE,
    pixel_scale: float = PIXEL_SCALE,
) -> np.ndarray:
    """One galaxy drawn by GalSim (``method="auto"``), with :func:`render_galaxies` conventions.

    Parameters are scalars with the units of :func:`lumos_ops.render.render_galaxies`
    (GalSim supports ``sersic_n <= 6.2``).

    Returns
    -------
    ndarray, shape (size, size), float64
    """
    galsim = import_galsim()
    gal = galsim.Sersic(n=sersic_n, half_light_radius=r50, flux=flux).shear(q=q, beta=pa * galsim.degrees)
    if PsfKind(psf) is PsfKind.GAUSSIAN:
        psf_obj = galsim.Gaussian(fwhm=psf_fwhm)
    else:
        psf_obj = galsim.Moffat(beta=psf_beta, fwhm=psf_fwhm)
    image = galsim.Convolve(gal, psf_obj).drawImage(
        nx=size, ny=size, scale=pixel_scale, offset=galsim_offset(size, dx, dy), method="auto"
    )
    return image.array.astype(np.float64)
