"""Small synthetic CCD exposures with known fluxes, for tests and quick photometry checks.

Galaxies from a catalogue (``x``, ``y``, ``r50``, ``sersic_n``, ``q``, ``pa``) are rendered with
:func:`lumos_ops.render.render_galaxies`, added to a flat sky and Poisson-noised. The survey
simulator (``lumos_ops.sim``) is the realistic alternative; this module only needs the renderer.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
from astropy.io import fits

from lumos_ops.constants import PIXEL_SCALE
from lumos_ops.exceptions import LumosValueError

__all__ = ["SyntheticExposure", "synthetic_exposure", "random_catalog"]


@dataclasses.dataclass(frozen=True)
class SyntheticExposure:
    """A simulated CCD image and its truth.

    Attributes
    ----------
    adu : ndarray, shape (ny, nx), float32
        Pixel values in ADU (``counts / gain``).
    header : dict
        Header keywords of the exposure contract (EXPTIME, FILTER, PSFFWHM, GAIN, ...).
    flux : ndarray, shape (n,)
        True total flux of each catalogue row (e-/s).
    """

    adu: np.ndarray
    header: dict[str, object]
    flux: np.ndarray

    def write(self, path: str | os.PathLike[str]) -> str:
        """Write the image as a primary-HDU FITS file; returns the path."""
        header = fits.Header()
        for key, value in self.header.items():
            header[key] = value
        fits.PrimaryHDU(self.adu, header=header).writeto(path, overwrite=True)
        return os.fspath(path)


def random_catalog(n: int, *, shape: tuple[int, int], margin: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A catalogue of ``n`` galaxies with PAUS-like shapes at random pixel positions.

    Parameters
    ----------
    n : int
        Number of rows.
    shape : (ny, nx), keyword-only
        Image shape (pixels); positions are drawn ``margin`` pixels inside it.
    margin : float, keyword-only
        Distance (pixels) kept from the image edges.
    seed : int, keyword-only
        Random seed.

    Returns
    -------
    DataFrame
        ``ref_id``, ``x``, ``y`` (pixels), ``r50`` (arcsec), ``sersic_n``, ``q``, ``pa`` (deg),
        ``i_auto`` (AB mag).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    return pd.DataFrame(
        {
            "ref_id": np.arange(1, n + 1, dtype=np.int64),
            "x": rng.uniform(margin, nx - 1 - margin, n),
            "y": rng.uniform(margin, ny - 1 - margin, n),
            "r50": np.exp(rng.normal(np.log(0.57), 0.4, n)).clip(0.15, 2.2),
            "sersic_n": np.exp(rng.normal(np.log(1.1), 0.4, n)).clip(0.3, 6.0),
            "q": rng.uniform(0.3, 1.0, n),
            "pa": rng.uniform(0.0, 180.0, n),
            "i_auto": rng.uniform(18.0, 22.5, n),
        }
    )


def synthetic_exposure(
    catalog: pd.DataFrame,
    flux: np.ndarray,
    *,
    shape: tuple[int, int],
    band: str = "NB685",
    psf_fwhm: float = 1.0,
    exptime: float = 90.0,
    gain: float = 2.0,
    sky: float = 6.0,
    stamp_size: int = 96,
    pixel_scale: float = PIXEL_SCALE,
    seed: int = 0,
    extra_header: dict[str, object] | None = None,
) -> SyntheticExposure:
    """Render the catalogue galaxies with the given fluxes on a flat sky and add Poisson noise.

    Parameters
    ----------
    catalog : DataFrame
        Rows with ``x``, ``y`` (0-based pixels), ``r50`` (arcsec), ``sersic_n``, ``q``, ``pa`` (deg).
    flux : array_like, shape (n,)
        Total flux of each galaxy (e-/s).
    shape : (ny, nx), keyword-only
        Image shape (pixels).
    band, psf_fwhm, exptime, gain : keyword-only
        Header values: filter, Moffat PSF FWHM (arcsec, beta 3.5), exposure time (s), e-/ADU.
    sky : float, keyword-only
        Flat sky level (e-/s per pixel).
    stamp_size : int, keyword-only
        Side of the stamp each galaxy is rendered on (pixels); light beyond it is dropped.
    pixel_scale : float, keyword-only
        Arcsec per pixel.
    seed : int, keyword-only
        Random seed of the Poisson noise.
    extra_header : dict, keyword-only
        More header keywords (e.g. ``SATURATE``, ``EPOCH``).

    Returns
    -------
    SyntheticExposure
    """
    from lumos_ops.render import render_galaxies

    flux = np.asarray(flux, dtype=np.float64)
    if flux.shape != (len(catalog),):
        raise LumosValueError(f"flux must have shape ({len(catalog)},), got {flux.shape}")
    if exptime <= 0 or gain <= 0 or sky < 0:
        raise LumosValueError("exptime and gain must be > 0 and sky >= 0")
    ny, nx = shape
    model = np.full((ny, nx), sky, dtype=np.float64)
    if len(catalog):
        x = catalog["x"].to_numpy(np.float64)
        y = catalog["y"].to_numpy(np.float64)
        ix, iy = np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64)
        images = render_galaxies(
            r50=catalog["r50"].to_numpy(np.float64),
            sersic_n=catalog["sersic_n"].to_numpy(np.float64),
            q=catalog["q"].to_numpy(np.float64),
            pa=catalog["pa"].to_numpy(np.float64),
            psf_fwhm=psf_fwhm,
            dx=x - ix,
            dy=y - iy,
            flux=flux,
            size=stamp_size,
            pixel_scale=pixel_scale,
        ).images
        half = stamp_size // 2
        for k in range(len(catalog)):
            r0, c0 = iy[k] - half, ix[k] - half
            rs, cs = max(r0, 0), max(c0, 0)
            re, ce = min(r0 + stamp_size, ny), min(c0 + stamp_size, nx)
            if re > rs and ce > cs:
                model[rs:re, cs:ce] += images[k, rs - r0 : re - r0, cs - c0 : ce - c0]
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.clip(model, 0.0, None) * exptime).astype(np.float64)
    header: dict[str, object] = {"EXPTIME": exptime, "FILTER": band, "PSFFWHM": psf_fwhm, "GAIN": gain}
    header.update(extra_header or {})
    return SyntheticExposure(adu=(counts / gain).astype(np.float32), header=header, flux=flux)
