"""TEAHUPOO galaxies drawn with each exposure's own PSF, built from its stars.

A TEAHUPOO stamp's model channel carries the measurement's PSF model: a Moffat of the exposure's
FWHM and β. By default the pasted galaxy is exactly that model, so the network never meets a
galaxy whose PSF differs from its model's, and a survey's real galaxies do: on the SDSS frames the
stars hold 0.78-0.81 of their light within 1 px where the fitted Moffat holds 0.79-0.82 and a
Kolmogorov 0.88-0.89 (``reports/adapt/stars-psf``). With ``TeahupooConfig.truth_psf = "stars"``
every galaxy of an exposure (target and neighbour) is drawn by GalSim with that exposure's
effective PSF (:func:`lumos_ops.evaluation.star_psf.star_psf`, the pixel response included, so the
galaxy is sampled at pixel centres), while its model channel keeps the measurement's Moffat: the
network learns to read galaxies that carry the survey's real PSF through the model the nightly
run gives it. An exposure with too few stars for an ePSF keeps the model's PSF (a warning names
it; ``meta.parquet``'s ``star_psf`` column says which stamps got the ePSF).

GalSim draws one galaxy at a time: 19 ms per Sérsic galaxy of r50 0.2-2 arcsec on a 60 px stamp
with an SDSS ePSF oversampled 4x, on one core. The 60,000-stamp SDSS training set of
``reports/adapt/stars-training`` took 7 min with it, 1 min without.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from lumos_ops.exceptions import LumosValueError

__all__ = ["TRUTH_PSFS", "GALSIM_SERSIC_N_MAX", "exposure_star_psf", "draw_with_star_psf"]

log = logging.getLogger(__name__)

TRUTH_PSFS: tuple[str, ...] = ("model", "stars")
"""``TeahupooConfig.truth_psf`` values: the model channel's Moffat, or the exposure's own ePSF."""

GALSIM_SERSIC_N_MAX: float = 6.2
"""Largest Sérsic index GalSim draws; a larger catalogue index is drawn at this one."""


def exposure_star_psf(data: np.ndarray, path: str | os.PathLike[str],
                      exclude: tuple[np.ndarray, np.ndarray] | None = None):
    """The exposure's effective PSF (:class:`lumos_ops.evaluation.star_psf.StarPsfImage`) from its
    stars, none within 3 px of the galaxies at ``exclude`` (pixel x, y), or None with a warning naming
    ``path`` where it has too few for one."""
    from lumos_ops.evaluation.star_psf import star_psf

    try:
        return star_psf(data, label=path, exclude=exclude)
    except LumosValueError as exc:
        log.warning("TEAHUPOO: %s; its galaxies are drawn with the model's PSF", exc)
        return None


def draw_with_star_psf(psf, *, r50: np.ndarray, sersic_n: np.ndarray, q: np.ndarray, pa: np.ndarray,
                       dx: np.ndarray, dy: np.ndarray, size: int, pixel_scale: float,
                       flux: np.ndarray | float = 1.0) -> np.ndarray:
    """Sérsic galaxies convolved with an effective PSF, shape (n, size, size), float64.

    ``psf``: a :class:`~lumos_ops.evaluation.star_psf.StarPsfImage`. The galaxies' parameters follow
    :func:`lumos_ops.render.render_galaxies`: ``r50`` half-light radius (arcsec), ``sersic_n``
    (drawn at most at :data:`GALSIM_SERSIC_N_MAX`), axis ratio ``q``, position angle ``pa``
    (degrees), centre ``(size // 2 + dx, size // 2 + dy)`` pixels, ``flux`` (any unit; the image
    sums to it where the stamp holds the whole galaxy); ``pixel_scale`` arcsec / pixel.
    """
    import galsim

    from lumos_ops.render.galsim_reference import galsim_offset

    n = len(np.atleast_1d(r50))
    values = {name: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))
              for name, v in (("r50", r50), ("sersic_n", sersic_n), ("q", q), ("pa", pa), ("dx", dx), ("dy", dy),
                              ("flux", flux))}
    kernel = psf if isinstance(psf, galsim.GSObject) else psf.galsim()
    out = np.empty((n, size, size))
    for j in range(n):
        galaxy = galsim.Sersic(n=min(float(values["sersic_n"][j]), GALSIM_SERSIC_N_MAX),
                               half_light_radius=float(values["r50"][j]) / pixel_scale, flux=float(values["flux"][j]))
        galaxy = galaxy.shear(q=float(values["q"][j]), beta=float(values["pa"][j]) * galsim.degrees)
        image = galsim.Convolve([galaxy, kernel]).drawImage(
            nx=size, ny=size, scale=1.0, offset=galsim_offset(size, float(values["dx"][j]), float(values["dy"][j])),
            method="no_pixel",
        )
        out[j] = image.array
    return out
