"""A frame's own PSF built from its stars, for injecting galaxies as that frame shows them.

An injection tests the photometry on galaxies that look like the survey's: they should carry the
PSF of the frame they are put in. A parametric profile chosen by the test (a Kolmogorov at the
frame's FWHM) may not be that PSF; the measurement's own model (its Moffat) takes the PSF model's
error out of the test. :func:`star_psf` builds the frame's effective PSF from its own stars, as
the PSF models of survey pipelines (PSFEx, Piff) and the injections that use them (Balrog,
SynPipe, Rubin's ``source_injection``) do, independently of the measurement's model:

1. the stars are the frame's stellar locus (:func:`lumos_ops.photometry.psf_stars.fit_stars` and
   :func:`~lumos_ops.photometry.psf_stars.stellar_locus`: bright, isolated, unsaturated peaks of the
   most compact width), on the frame less its coarse sky
   (:func:`lumos_ops.noise_calibration.subtract_sky`);
2. photutils' ``EPSFBuilder`` stacks them on a grid :data:`OVERSAMPLING` times finer than the
   pixels (4 for undersampled stars, 2 for the others; sub-pixel centres, sigma-clipped), which
   recovers an undersampled PSF from stars at many pixel phases; without its smoothing kernel, which widens the PSF (the light within 2.5 px
   of an undersampled Kolmogorov-like PSF of 1.3 px FWHM: 0.946 smoothed, 0.955 not, 0.962 true);
   the pixels of other sources in a star's box (:data:`SOURCE_SIGMA`) get no weight, and each star's
   own sky (a ring of :data:`SKY_RING_PX` px beyond the kept radius) is subtracted: a stack of stars
   on a sky a frame-wide estimate left a little off grows a ring of negative or positive light;
3. the stack is kept within :data:`CORE_FWHM` FWHM (at least :data:`MIN_CORE_PX` pixels) of its
   centre, where it holds the stars' light rather than their neighbours' and the sky's noise, and
   normalised to unit flux there; a stack whose light beyond half that radius is negative (below
   :data:`MAX_NEGATIVE_WINGS`) is refused, so the injection falls back for that frame.

It is an *effective* PSF: the pixel response is in it, so a galaxy convolved with it is sampled
at pixel centres (GalSim ``method="no_pixel"``), not integrated over the pixels again.

Accuracy (``reports/adapt/stars-psf/epsf_accuracy.py``): on synthetic frames of 45 GalSim stars
among 30 galaxies (Moffat β 2.5 of 0.7 and 1.3 px FWHM, β 3.5 of 3 px, Kolmogorov with a jitter
of 1.3 px; three seeds each), Sérsic galaxies drawn with the ePSF read their flux through the
true PSF to 0.0 % on average, 0.6 % in absolute value, 2.1 % at worst.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from lumos_ops.exceptions import LumosValueError

__all__ = ["StarPsfImage", "star_psf", "OVERSAMPLING", "CORE_FWHM", "MIN_CORE_PX", "MIN_PSF_STARS", "SOURCE_SIGMA"]

OVERSAMPLING: tuple[tuple[float, int], ...] = ((2.0, 2), (0.0, 4))
"""ePSF grid points per pixel side, by the stars' FWHM (px) they serve from: 4 for undersampled
stars, 2 for the others (4 there spreads 30-50 stars too thinly over the grid of a wide box)."""

CORE_FWHM: float = 5.0
"""Radius of the kept ePSF, in FWHM (a Moffat of β 2.4 holds 99 % of its light within it)."""

MIN_CORE_PX: float = 5.0
"""Least radius of the kept ePSF, pixels."""

MIN_PSF_STARS: int = 10
"""Fewest locus stars an ePSF is built from."""

EXCLUDE_RADIUS_PX: float = 3.0
"""Distance (px) from a known galaxy within which no peak is taken for a star (``star_psf(exclude=)``)."""

SKY_RING_PX: float = 3.0
"""Width (px) of the ring beyond the kept radius where each star's own sky is measured."""

MAX_NEGATIVE_WINGS: float = 0.01
"""An ePSF whose light beyond half its radius sums below minus this fraction is refused."""

SOURCE_SIGMA: float = 5.0
"""Pixels this many robust sigmas above the sky (grown by 2 px) belong to a source; those of other
sources than the star get no weight in its box."""


@dataclasses.dataclass(frozen=True)
class StarPsfImage:
    """A frame's effective PSF.

    Attributes
    ----------
    image : ndarray, shape (m, m)
        Unit-sum ePSF on a grid of ``1 / oversampling`` px, centred on its central grid point.
    oversampling : int
    fwhm_px : float
        The stellar locus FWHM (Moffat fit), pixels.
    n_stars : int
        Stars on the locus it is built from.
    """

    image: np.ndarray
    oversampling: int
    fwhm_px: float
    n_stars: int

    def galsim(self):
        """The ePSF as a GalSim profile of unit flux, in pixel units (draw with ``method="no_pixel"``)."""
        import galsim

        return galsim.InterpolatedImage(galsim.Image(self.image), scale=1.0 / self.oversampling, flux=1.0)

    def encircled(self, radius_px: float) -> float:
        """Fraction of the ePSF's light within ``radius_px`` pixels of its centre."""
        grid = self.image.shape[0]
        yy, xx = (np.indices(self.image.shape) - (grid - 1) / 2.0) / self.oversampling
        return float(self.image[np.hypot(xx, yy) <= radius_px].sum())


def star_psf(data: np.ndarray, *, label: str | os.PathLike[str] = "frame", min_stars: int = MIN_PSF_STARS,
             oversampling: int | None = None, exclude: tuple[np.ndarray, np.ndarray] | None = None,
             exclude_radius: float = EXCLUDE_RADIUS_PX) -> StarPsfImage:
    """The effective PSF of a frame (counts, any sky) built from its stars (module notes);
    ``oversampling`` None picks it by the stars' FWHM (:data:`OVERSAMPLING`). ``exclude``: pixel
    positions (x, y) of known galaxies (a catalogue's targets); no peak within ``exclude_radius`` px
    of one is taken for a star: on an undersampled frame a compact galaxy sits on the stellar locus.

    Raises
    ------
    LumosValueError
        Fewer than ``min_stars`` stars on the frame's locus; the message names ``label``.
    """
    from photutils.psf import EPSFBuilder, EPSFStars

    from lumos_ops.photometry.psf_stars import fit_stars, flatten_frame, stellar_locus

    flat, sigma = flatten_frame(np.nan_to_num(np.asarray(data, dtype=np.float64)))
    fits = fit_stars(data, flat=(flat, sigma))
    if exclude is not None and len(fits):
        from scipy.spatial import cKDTree

        ex, ey = (np.asarray(v, dtype=np.float64) for v in exclude)
        keep = np.isfinite(ex) & np.isfinite(ey)
        if keep.any():
            near = cKDTree(np.column_stack([ex[keep], ey[keep]])).query(
                np.column_stack([fits["x"].to_numpy(), fits["y"].to_numpy()]), distance_upper_bound=exclude_radius)[0]
            fits = fits[~np.isfinite(near)].reset_index(drop=True)
    fwhm, on = stellar_locus(fits["fwhm_px"].to_numpy()) if len(fits) else (float("nan"), np.zeros(0, bool))
    n_stars = int(np.count_nonzero(on))
    if n_stars < min_stars or not np.isfinite(fwhm):
        raise LumosValueError(f"{os.fspath(label)}: {n_stars} stars on its stellar locus, fewer than the {min_stars} "
                              "an empirical PSF needs; inject with psf_profile 'kolmogorov' or 'moffat' there")
    if oversampling is None:
        oversampling = next(n for least, n in OVERSAMPLING if fwhm >= least)
    radius = max(MIN_CORE_PX, CORE_FWHM * fwhm)
    stars = fits[on]
    cutouts = _star_cutouts(flat, sigma, stars["x"].to_numpy(), stars["y"].to_numpy(), radius=radius)
    if len(cutouts) < min_stars:
        raise LumosValueError(f"{os.fspath(label)}: {len(cutouts)} of its {n_stars} locus stars lie a PSF box inside "
                              f"the frame, fewer than the {min_stars} an empirical PSF needs; inject with psf_profile "
                              "'kolmogorov' or 'moffat' there")
    builder = EPSFBuilder(oversampling=oversampling, maxiters=10, smoothing_kernel=None, progress_bar=False)
    epsf, _ = builder.build_epsf(EPSFStars(cutouts))
    image = np.asarray(epsf.data, dtype=np.float64)
    grid = image.shape[0]
    yy, xx = (np.indices(image.shape) - (grid - 1) / 2.0) / oversampling
    r = np.hypot(xx, yy)
    image = np.where(r <= radius, image, 0.0)
    total = image.sum()
    if not (np.isfinite(total) and total > 0):
        raise LumosValueError(f"{os.fspath(label)}: the stack of its {n_stars} stars holds no light; inject with "
                              "psf_profile 'kolmogorov' or 'moffat' there")
    wings = float(image[r > 0.5 * radius].sum() / total)
    if wings < -MAX_NEGATIVE_WINGS:
        raise LumosValueError(f"{os.fspath(label)}: the stack of its {n_stars} stars has {wings:.1%} of its light "
                              f"beyond {0.5 * radius:.1f} px (a PSF has none below 0); inject with psf_profile "
                              "'kolmogorov' or 'moffat' there")
    return StarPsfImage(image=image / total, oversampling=oversampling, fwhm_px=float(fwhm), n_stars=n_stars)


def _star_cutouts(flat: np.ndarray, sigma: float, x: np.ndarray, y: np.ndarray, *, radius: float) -> list:
    """photutils ``EPSFStar`` boxes around each star (0-based pixel centres) inside the frame, with
    zero weight on the pixels of every other source in the box (the connected regions
    :data:`SOURCE_SIGMA` ``sigma`` (the frame's pixel noise) above the sky, grown by 2 px, that do
    not hold the star) and less the star's own sky: the median of its box's weighted pixels
    :data:`SKY_RING_PX` px beyond ``radius`` (pixels)."""
    from photutils.psf import EPSFStar
    from scipy import ndimage

    bright = np.nan_to_num(flat, nan=0.0) >= SOURCE_SIGMA * sigma
    labels, _ = ndimage.label(ndimage.binary_dilation(bright, iterations=2))
    out = []
    ny, nx = flat.shape
    half = int(np.ceil(radius + SKY_RING_PX))
    yy, xx = np.indices((2 * half + 1, 2 * half + 1)) - half
    for xc, yc in zip(x, y):
        ix, iy = int(round(xc)), int(round(yc))
        if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
            continue
        box = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
        cut, lab = flat[box], labels[box]
        own = lab[half, half]
        weights = (((lab == 0) | (lab == own)) & np.isfinite(cut)).astype(np.float64)
        cx, cy = xc - (ix - half), yc - (iy - half)
        ring = (np.hypot(xx - (cx - half), yy - (cy - half)) > radius) & (weights > 0)
        if ring.sum() < 8:
            continue
        sky = float(np.median(cut[ring]))
        out.append(EPSFStar(np.nan_to_num(cut - sky), weights=weights, cutout_center=(cx, cy),
                            origin=(ix - half, iy - half)))
    return out
